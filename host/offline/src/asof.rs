//! The point-in-time as-of join: a sort-merge per entity-key partition.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef};
use skewless_core::assemble::{Value, ValueReader, ViewColumns, ViewColumnsBuilder};
use skewless_core::key::{KeyBuf, KeyType};
use skewless_core::{DType, Ttl};

/// Encoded entity keys of a batch of rows, in one buffer; `None` for a row with a null
/// key part.
#[derive(Debug, Default, Clone)]
pub struct KeyColumn {
    bytes: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` is row i's key.
    offsets: Vec<usize>,
    valid: Vec<bool>,
}

impl KeyColumn {
    /// Encodes the keys of `rows` rows from their join-key columns (canonical types:
    /// int64 or utf8), in key order.
    pub fn encode(columns: &[(ArrayRef, KeyType)], rows: usize) -> Self {
        let mut keys = KeyColumn {
            bytes: Vec::with_capacity(rows * 9 * columns.len()),
            offsets: Vec::with_capacity(rows + 1),
            valid: Vec::with_capacity(rows),
        };
        keys.offsets.push(0);
        let mut key = KeyBuf::new();
        for row in 0..rows {
            key.clear();
            let mut valid = true;
            for (array, key_type) in columns {
                if array.is_null(row) {
                    valid = false;
                    continue;
                }
                match key_type {
                    KeyType::Int64 => key.push_int(array.as_primitive::<Int64Type>().value(row)),
                    KeyType::String => key.push_str(array.as_string::<i32>().value(row)),
                }
            }
            keys.bytes.extend_from_slice(key.as_bytes());
            keys.offsets.push(keys.bytes.len());
            keys.valid.push(valid);
        }
        keys
    }

    /// Row `i`'s key, or `None` if a part is null.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.valid[i].then(|| &self.bytes[self.offsets[i]..self.offsets[i + 1]])
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.valid.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }
}

/// A view's source rows, in source order (files in name order, rows in file order), with
/// every column already of its canonical type.
#[derive(Debug, Clone)]
pub struct FeatureRows {
    /// Each row's entity key.
    pub keys: KeyColumn,
    /// Each row's event time, microseconds since the epoch (never null: null rows are
    /// dropped when reading).
    pub event_ts: Vec<i64>,
    /// Each row's created time; `i64::MIN` when the source has none.
    pub created_ts: Vec<i64>,
    /// Whether the source has a created-time column.
    pub has_created: bool,
    /// One array per view feature, in the view's order.
    pub features: Vec<ArrayRef>,
}

/// For each entity row (key and time `at`), the feature row that counts, if any: the
/// latest with `ts <= at` for the same key; ties go to the larger created time, then to
/// the later source row. TTL is applied afterwards, by the builder.
///
/// Rows are split into `partitions` by key hash and each partition is sorted and merged
/// on its own thread; memory is the two inputs plus one index per row.
fn matches(
    entity_keys: &KeyColumn,
    at: &[i64],
    features: &FeatureRows,
    partitions: usize,
) -> Vec<Option<u32>> {
    let partitions = partitions.max(1);
    let part_of = |key: &[u8]| (skewless_core::key::fnv1a(key) % partitions as u64) as usize;
    let mut entity_parts: Vec<Vec<u32>> = vec![Vec::new(); partitions];
    for i in 0..entity_keys.len() {
        if let Some(key) = entity_keys.get(i) {
            entity_parts[part_of(key)].push(i as u32);
        }
    }
    let mut feature_parts: Vec<Vec<u32>> = vec![Vec::new(); partitions];
    for i in 0..features.keys.len() {
        if let Some(key) = features.keys.get(i) {
            feature_parts[part_of(key)].push(i as u32);
        }
    }
    let mut out = vec![None; entity_keys.len()];
    let results: Vec<Vec<(u32, u32)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = entity_parts
            .into_iter()
            .zip(feature_parts)
            .map(|(mut ents, mut feats)| {
                scope.spawn(move || {
                    let ekey = |i: u32| entity_keys.get(i as usize).unwrap_or_default();
                    let fkey = |i: u32| features.keys.get(i as usize).unwrap_or_default();
                    ents.sort_unstable_by(|&a, &b| {
                        ekey(a)
                            .cmp(ekey(b))
                            .then(at[a as usize].cmp(&at[b as usize]))
                    });
                    // Source order breaks the last ties: a stable sort keeps it.
                    feats.sort_by(|&a, &b| {
                        let (a, b) = (a as usize, b as usize);
                        fkey(a as u32)
                            .cmp(fkey(b as u32))
                            .then(features.event_ts[a].cmp(&features.event_ts[b]))
                            .then(features.created_ts[a].cmp(&features.created_ts[b]))
                    });
                    let mut found = Vec::with_capacity(ents.len());
                    let mut j = 0;
                    let mut candidate: Option<u32> = None;
                    for &e in &ents {
                        let key = ekey(e);
                        let t = at[e as usize];
                        while j < feats.len() && fkey(feats[j]) < key {
                            j += 1;
                        }
                        while j < feats.len()
                            && fkey(feats[j]) == key
                            && features.event_ts[feats[j] as usize] <= t
                        {
                            candidate = Some(feats[j]);
                            j += 1;
                        }
                        if let Some(c) = candidate.filter(|&c| fkey(c) == key) {
                            found.push((e, c));
                        }
                    }
                    found
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for part in results {
        for (e, f) in part {
            out[e as usize] = Some(f);
        }
    }
    out
}

/// Joins one view as of each entity row's time: the view's columns for every entity row,
/// in entity-row order, with statuses, through the shared [`ViewColumnsBuilder`] (TTL
/// rule included).
pub fn asof_join(
    entity_keys: &KeyColumn,
    at: &[i64],
    features: &FeatureRows,
    dtypes: &[DType],
    ttl: Ttl,
    partitions: usize,
) -> ViewColumns {
    let found = matches(entity_keys, at, features, partitions);
    // `FeatureRows` columns are canonical (conformed when read); a mismatch reads null.
    let readers: Vec<Option<ValueReader<'_>>> = features
        .features
        .iter()
        .zip(dtypes)
        .map(|(a, d)| ValueReader::new(a, *d))
        .collect();
    let mut builder = ViewColumnsBuilder::new(dtypes.iter().copied(), ttl, at.len());
    for (row, hit) in found.into_iter().enumerate() {
        match hit {
            Some(f) => {
                let f = f as usize;
                builder.push_row(features.event_ts[f], at[row], |i| {
                    readers[i].map_or(Value::Null, |r| r.value(f))
                });
            }
            None => builder.push_missing(),
        }
    }
    builder.finish()
}
