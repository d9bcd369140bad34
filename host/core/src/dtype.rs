use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, TimeUnit};

use crate::Error;

/// The logical type of a feature or transform column.
///
/// Each dtype has exactly one Arrow representation ([`DType::arrow_type`]); every batch a
/// transform sees or returns uses it, so a value has the same bits online and offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// A boolean.
    Bool,
    /// A signed 64-bit integer.
    Int64,
    /// An IEEE 754 binary64 float.
    Float64,
    /// A UTF-8 string.
    String,
    /// An instant, as microseconds since the Unix epoch, UTC.
    Timestamp,
    /// A variable-length list of binary32 floats, such as an embedding.
    Float32List,
}

/// The timezone every Skewless timestamp carries in Arrow.
pub const UTC: &str = "UTC";

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 6] = [
        DType::Bool,
        DType::Int64,
        DType::Float64,
        DType::String,
        DType::Timestamp,
        DType::Float32List,
    ];

    /// The names accepted by [`DType::from_str`], in the order of [`DType::ALL`].
    pub const NAMES: [&'static str; 6] = [
        "bool",
        "int64",
        "float64",
        "string",
        "timestamp",
        "float32_list",
    ];

    /// The canonical name of this dtype, as written in definitions.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The one Arrow type that holds values of this dtype.
    pub fn arrow_type(self) -> DataType {
        match self {
            DType::Bool => DataType::Boolean,
            DType::Int64 => DataType::Int64,
            DType::Float64 => DataType::Float64,
            DType::String => DataType::Utf8,
            DType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            DType::Float32List => {
                DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))
            }
        }
    }

    /// The dtype whose canonical Arrow type is exactly `data_type`, if any.
    ///
    /// Types that only *convert* to a dtype (say `Int32`, or a millisecond timestamp) are
    /// not matched here; see [`DType::accepts`].
    pub fn from_arrow(data_type: &DataType) -> Option<DType> {
        DType::ALL
            .into_iter()
            .find(|dtype| dtype.arrow_type() == *data_type)
    }

    /// Whether an Arrow column of `data_type` converts losslessly to this dtype.
    ///
    /// Accepted: the canonical type; narrower integers and floats widening to
    /// `int64`/`float64`; large and view strings; timestamps of any unit and of UTC or no
    /// timezone (taken as UTC); large, fixed-size and differently-named float32 lists.
    pub fn accepts(self, data_type: &DataType) -> bool {
        use DataType as D;
        match self {
            DType::Bool => matches!(data_type, D::Boolean),
            DType::Int64 => matches!(
                data_type,
                D::Int64 | D::Int32 | D::Int16 | D::Int8 | D::UInt32 | D::UInt16 | D::UInt8
            ),
            DType::Float64 => matches!(data_type, D::Float64 | D::Float32 | D::Float16),
            DType::String => matches!(data_type, D::Utf8 | D::LargeUtf8 | D::Utf8View),
            DType::Timestamp => match data_type {
                // Arrow stores every zoned timestamp as an instant since the epoch in UTC;
                // the zone only says how to display it. Naive ones are taken as UTC.
                D::Timestamp(_, _) => true,
                _ => false,
            },
            DType::Float32List => match data_type {
                D::List(item) | D::LargeList(item) | D::FixedSizeList(item, _) => {
                    *item.data_type() == D::Float32
                }
                _ => false,
            },
        }
    }
}

impl DType {
    /// Converts an array of a type this dtype [`accepts`](DType::accepts) to the canonical
    /// type. Overflow is an error, never a silent null. Timestamps are instants: the zone
    /// (any zone, or none) is dropped without shifting values, the unit changed, and the
    /// result labelled UTC (casting with the zone in place would need a timezone
    /// database to parse "UTC").
    pub fn to_canonical(
        self,
        array: &arrow_array::ArrayRef,
    ) -> Result<arrow_array::ArrayRef, arrow_schema::ArrowError> {
        use arrow_array::Array;
        use arrow_array::cast::AsArray;
        use arrow_array::types::TimestampMicrosecondType;
        if *array.data_type() == self.arrow_type() {
            return Ok(Arc::clone(array));
        }
        let strict = arrow_cast::CastOptions {
            safe: false,
            ..arrow_cast::CastOptions::default()
        };
        let DataType::Timestamp(unit, _) = array.data_type() else {
            return arrow_cast::cast_with_options(array, &self.arrow_type(), &strict);
        };
        if self != DType::Timestamp {
            return arrow_cast::cast_with_options(array, &self.arrow_type(), &strict);
        }
        let naive = arrow_array::make_array(
            array
                .to_data()
                .into_builder()
                .data_type(DataType::Timestamp(*unit, None))
                .build()?,
        );
        let micros = arrow_cast::cast_with_options(
            &naive,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
            &strict,
        )?;
        Ok(Arc::new(
            micros
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
                .with_timezone(UTC),
        ))
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::NAMES
            .iter()
            .position(|name| *name == s)
            .map(|i| DType::ALL[i])
            .ok_or_else(|| Error::UnknownDType(s.to_owned()))
    }
}

/// The one float64 NaN Skewless stores, serves, trains on and hands to transforms: the
/// quiet NaN `0x7ff8000000000000`, what JSON's `"NaN"` reads as (ADR 0008).
pub const CANONICAL_NAN_F64: u64 = 0x7ff8_0000_0000_0000;
/// The one float32 NaN, `0x7fc00000`.
pub const CANONICAL_NAN_F32: u32 = 0x7fc0_0000;

/// `v`, with any NaN (of any sign or payload) made the canonical one.
#[inline]
pub fn canonical_f64(v: f64) -> f64 {
    if v.is_nan() {
        f64::from_bits(CANONICAL_NAN_F64)
    } else {
        v
    }
}

/// `v`, with any NaN made the canonical float32 one.
#[inline]
pub fn canonical_f32(v: f32) -> f32 {
    if v.is_nan() {
        f32::from_bits(CANONICAL_NAN_F32)
    } else {
        v
    }
}

/// Whether `values` holds a NaN that is not the canonical one.
pub fn has_other_nan_f64(values: &[f64]) -> bool {
    values
        .iter()
        .any(|v| v.is_nan() && v.to_bits() != CANONICAL_NAN_F64)
}

/// Whether `values` holds a NaN that is not the canonical float32 one.
pub fn has_other_nan_f32(values: &[f32]) -> bool {
    values
        .iter()
        .any(|v| v.is_nan() && v.to_bits() != CANONICAL_NAN_F32)
}

/// Now, as microseconds since the Unix epoch (0 for a clock before it).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Formats microseconds since the epoch as RFC 3339 UTC with microseconds (the integer
/// itself when chrono cannot write the instant).
pub fn format_timestamp(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        None => micros.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for dtype in DType::ALL {
            assert_eq!(dtype.name().parse::<DType>(), Ok(dtype));
            assert_eq!(DType::from_arrow(&dtype.arrow_type()), Some(dtype));
            assert!(dtype.accepts(&dtype.arrow_type()));
        }
    }

    #[test]
    fn unknown_name_lists_known_ones() {
        let err = "float128".parse::<DType>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown dtype `float128` (expected one of: bool, int64, float64, string, timestamp, float32_list)"
        );
    }

    #[test]
    fn accepts_lossless_widenings_only() {
        assert!(DType::Int64.accepts(&DataType::Int32));
        assert!(!DType::Int64.accepts(&DataType::UInt64));
        assert!(!DType::Int64.accepts(&DataType::Float64));
        assert!(DType::Float64.accepts(&DataType::Float32));
        assert!(DType::Timestamp.accepts(&DataType::Timestamp(TimeUnit::Nanosecond, None)));
        assert!(DType::Timestamp.accepts(&DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("Europe/Paris".into())
        )));
        assert!(DType::String.accepts(&DataType::LargeUtf8));
        assert!(
            !DType::Float32List.accepts(&DataType::List(Arc::new(Field::new_list_field(
                DataType::Float64,
                true
            ))))
        );
    }
}
