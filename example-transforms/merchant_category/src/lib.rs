//! `merchant_category`: features of the free-text merchant name on a transaction.
//!
//! Normalizes the name (lowercase, punctuation dropped, whitespace collapsed), derives a
//! coarse category from keywords, its length in characters, and a stable hash bucket
//! (FNV-1a, 64-bit) for use as a categorical feature. The hash is defined on the bytes of
//! the normalized name, so it is the same in every language and on every host.

use skewless_sdk::{
    DType, Input, Output, Result, Signature, StringColumn, Transform, ValuesColumn, export,
};

/// The number of hash buckets.
pub const BUCKETS: u64 = 1024;

/// Keywords of each category, checked in order; the first match wins.
const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "grocery",
        &["grocery", "market", "supermarket", "foods", "bakery"],
    ),
    (
        "travel",
        &[
            "airline", "airways", "hotel", "rail", "taxi", "uber", "lyft",
        ],
    ),
    ("fuel", &["fuel", "gas", "petrol", "shell", "esso"]),
    (
        "restaurant",
        &[
            "cafe",
            "café",
            "coffee",
            "pizza",
            "restaurant",
            "grill",
            "burger",
        ],
    ),
    (
        "digital",
        &["steam", "app", "store", "games", "netflix", "spotify"],
    ),
    ("gambling", &["casino", "bet", "poker", "lottery"]),
];

/// Lowercases, turns every non-alphanumeric character into a space, and collapses spaces.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// The category of a normalized name, or `other`.
pub fn category(normalized: &str) -> &'static str {
    CATEGORIES
        .iter()
        .find(|(_, keywords)| normalized.split(' ').any(|w| keywords.contains(&w)))
        .map_or("other", |(name, _)| name)
}

/// FNV-1a 64-bit of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The transform.
#[derive(Debug)]
pub struct MerchantCategory;

impl Transform for MerchantCategory {
    fn signature() -> Signature {
        Signature::new()
            .input("merchant_name", DType::String)
            .output("merchant_normalized", DType::String)
            .output("merchant_category", DType::String)
            .output("merchant_name_length", DType::Int64)
            .output("merchant_hash_bucket", DType::Int64)
    }

    fn transform(input: &Input) -> Result<Output> {
        let names = input.string("merchant_name")?;
        let rows = input.rows();
        let mut normalized = StringColumn::with_capacity(rows, rows * 16);
        let mut categories = StringColumn::with_capacity(rows, rows * 8);
        let mut lengths = Vec::with_capacity(rows);
        let mut buckets = Vec::with_capacity(rows);
        for name in names.iter() {
            match name {
                Some(name) => {
                    let n = normalize(name);
                    categories.push_str(category(&n));
                    lengths.push(n.chars().count() as i64);
                    buckets.push((fnv1a(n.as_bytes()) % BUCKETS) as i64);
                    normalized.push_str(&n);
                }
                None => {
                    normalized.push_null();
                    categories.push_null();
                    lengths.push(0);
                    buckets.push(0);
                }
            }
        }
        let validity = names.validity();
        Ok(Output::new(rows)
            .string("merchant_normalized", normalized)
            .string("merchant_category", categories)
            .int64(
                "merchant_name_length",
                ValuesColumn::from_values(lengths).and_validity(validity),
            )
            .int64(
                "merchant_hash_bucket",
                ValuesColumn::from_values(buckets).and_validity(validity),
            ))
    }
}

export!(MerchantCategory);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_categorizes() {
        assert_eq!(
            normalize("  STARBUCKS Coffee #1234!! "),
            "starbucks coffee 1234"
        );
        assert_eq!(normalize("Café-Überland"), "café überland");
        assert_eq!(normalize("***"), "");
        assert_eq!(category("starbucks coffee 1234"), "restaurant");
        assert_eq!(category("shell station"), "fuel");
        assert_eq!(category("acme widgets"), "other");
        assert_eq!(category(""), "other");
    }

    #[test]
    fn hash_is_the_reference_fnv1a() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn batch_with_nulls() {
        let names: StringColumn = [Some("Joe's PIZZA"), None, Some("Ünïcode Market")]
            .into_iter()
            .collect();
        let input = Input::builder(3)
            .string("merchant_name", names)
            .build()
            .unwrap();
        let out = MerchantCategory::transform(&input).unwrap();
        let norm: Vec<_> = out
            .get_string("merchant_normalized")
            .unwrap()
            .iter()
            .collect();
        assert_eq!(norm, [Some("joe s pizza"), None, Some("ünïcode market")]);
        let cat: Vec<_> = out
            .get_string("merchant_category")
            .unwrap()
            .iter()
            .collect();
        assert_eq!(cat, [Some("restaurant"), None, Some("grocery")]);
        let len: Vec<_> = out
            .get_int64("merchant_name_length")
            .unwrap()
            .iter()
            .collect();
        assert_eq!(len, [Some(11), None, Some(14)]);
        let bucket = out.get_int64("merchant_hash_bucket").unwrap();
        assert_eq!(
            bucket.get(0),
            Some((fnv1a(b"joe s pizza") % BUCKETS) as i64)
        );
    }
}
