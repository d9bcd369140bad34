//! Durations as written in definitions (`7d`, `1h30m`, `90s`) and the one TTL rule.

use std::fmt;
use std::str::FromStr;

/// Microseconds per unit suffix accepted in a duration.
const UNITS: [(&str, i64); 6] = [
    ("ms", 1_000),
    ("s", 1_000_000),
    ("m", 60_000_000),
    ("h", 3_600_000_000),
    ("d", 86_400_000_000),
    ("w", 604_800_000_000),
];

/// How old a stored value may be and still count, in microseconds; `None` is "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ttl(Option<i64>);

impl Ttl {
    /// No limit: a value of any age counts.
    pub const UNLIMITED: Ttl = Ttl(None);

    /// A TTL of `micros` microseconds; zero or less means no limit, as in Feast.
    pub fn from_micros(micros: i64) -> Self {
        Ttl((micros > 0).then_some(micros))
    }

    /// The limit in microseconds, or `None` for no limit.
    pub fn micros(self) -> Option<i64> {
        self.0
    }

    /// The one rule, shared by the online store and the point-in-time join: a value with
    /// event time `value_ts` counts at time `at` when `at - ttl <= value_ts <= at` (both
    /// ends inclusive). A value from the future of `at` never counts.
    #[inline]
    pub fn admits(self, value_ts: i64, at: i64) -> bool {
        value_ts <= at
            && match self.0 {
                None => true,
                Some(ttl) => value_ts >= at.saturating_sub(ttl),
            }
    }
}

impl FromStr for Ttl {
    type Err = String;

    /// Parses `0`, or one or more `<integer><unit>` parts with units `w d h m s ms`,
    /// largest first: `7d`, `1h30m`, `500ms`.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(Ttl::UNLIMITED);
        }
        let bad = || {
            format!(
                "invalid duration `{text}`: expected parts like `7d`, `1h30m`, `90s`, `500ms` (units w d h m s ms)"
            )
        };
        let mut rest = text;
        let mut total: i64 = 0;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let number: i64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..letters];
            rest = &rest[letters..];
            let (_, scale) = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .ok_or_else(bad)?;
            total = number
                .checked_mul(*scale)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(|| format!("duration `{text}` is too large"))?;
        }
        Ok(Ttl::from_micros(total))
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(mut micros) = self.0 else {
            return f.write_str("0");
        };
        for (unit, scale) in UNITS.iter().rev() {
            if micros >= *scale {
                write!(f, "{}{unit}", micros / scale)?;
                micros %= scale;
            }
        }
        if micros > 0 {
            write!(f, "{micros}us")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Ttl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ttl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(i64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(seconds) => seconds
                .checked_mul(1_000_000)
                .map(Ttl::from_micros)
                .ok_or_else(|| serde::de::Error::custom("ttl is too large")),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration as written in definitions (`5m`, `7d`, `0`), in microseconds: a window, a
/// hop, an allowed lateness. Unlike [`Ttl`], `0` is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Interval(i64);

impl Interval {
    /// A duration of `micros` microseconds.
    pub fn from_micros(micros: i64) -> Self {
        Interval(micros)
    }

    /// The duration in microseconds.
    pub fn micros(self) -> i64 {
        self.0
    }
}

impl FromStr for Interval {
    type Err = String;

    /// The syntax of [`Ttl`]: `0`, or parts like `7d`, `1h30m`, `500ms`.
    fn from_str(text: &str) -> Result<Self, String> {
        Ok(Interval(text.parse::<Ttl>()?.micros().unwrap_or(0)))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ttl::from_micros(self.0).fmt(f)
    }
}

impl serde::Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let day = 86_400_000_000;
        assert_eq!("7d".parse::<Ttl>().unwrap().micros(), Some(7 * day));
        assert_eq!(
            "1h30m".parse::<Ttl>().unwrap().micros(),
            Some(5_400_000_000)
        );
        assert_eq!("500ms".parse::<Ttl>().unwrap().micros(), Some(500_000));
        assert_eq!("0".parse::<Ttl>().unwrap(), Ttl::UNLIMITED);
        assert_eq!("1w2d".parse::<Ttl>().unwrap().to_string(), "1w2d");
        for bad in ["", "7", "d", "7y", "1.5h", "-1d", "99999999999999999w"] {
            assert!(bad.parse::<Ttl>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn both_ends_inclusive() {
        let ttl = Ttl::from_micros(10);
        assert!(ttl.admits(100, 100));
        assert!(ttl.admits(90, 100));
        assert!(!ttl.admits(89, 100));
        assert!(
            !ttl.admits(101, 100),
            "a value from the future never counts"
        );
        assert!(Ttl::UNLIMITED.admits(i64::MIN, 0));
        assert!(!Ttl::UNLIMITED.admits(1, 0));
    }
}
