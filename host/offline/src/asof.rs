//! The point-in-time as-of join: a sort-merge per entity-key partition.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use arrow_array::{Array, ArrayRef};
use skewless_core::assemble::{Value, ValueReader, ViewColumns, ViewColumnsBuilder};
use skewless_core::key::KeyColumn;
use skewless_core::{DType, Ttl};

use crate::{Result, workers};

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

/// FNV-1a as a `Hasher`, for maps keyed by short encoded keys.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_i64(&mut self, x: i64) {
        // One multiply and a fold: the table's bucket and tag bits both get mixed bits.
        let h = (x as u64 ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

const NO_GROUP: u32 = u32::MAX;

/// Rows grouped by key id: `order[start[g]..start[g + 1]]` are group g's rows, in row
/// order (a counting sort, so O(rows)).
pub(crate) fn group(ids: &[u32], groups: usize) -> (Vec<u32>, Vec<u32>) {
    let mut start = vec![0u32; groups + 1];
    for &g in ids {
        if g != NO_GROUP {
            start[g as usize + 1] += 1;
        }
    }
    for g in 0..groups {
        start[g + 1] += start[g];
    }
    let mut next = start.clone();
    let mut order = vec![0u32; start[groups] as usize];
    for (row, &g) in ids.iter().enumerate() {
        if g != NO_GROUP {
            order[next[g as usize] as usize] = row as u32;
            next[g as usize] += 1;
        }
    }
    (order, start)
}

/// Dense ids for the entity keys (`NO_GROUP` for a null one), their count, and each
/// feature row's id (`NO_GROUP` when no entity row has its key).
fn dense_ids<K: std::hash::Hash + Eq + Copy + Send + Sync>(
    entity_rows: usize,
    entity: impl Fn(usize) -> Option<K>,
    feature_rows: usize,
    feature: impl Fn(usize) -> Option<K> + Sync,
    threads: usize,
) -> Result<(Vec<u32>, usize, Vec<u32>)> {
    let mut ids: FnvMap<K, u32> = FnvMap::default();
    let entity_ids: Vec<u32> = (0..entity_rows)
        .map(|i| match entity(i) {
            Some(key) => {
                let next = ids.len() as u32;
                *ids.entry(key).or_insert(next)
            }
            None => NO_GROUP,
        })
        .collect();
    let groups = ids.len();
    // Looking feature keys up is the heavy part: split it over the threads.
    let per = feature_rows.div_ceil(threads).max(1);
    let feature_ids: Vec<Vec<u32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..feature_rows)
            .step_by(per)
            .map(|first| {
                let (ids, feature) = (&ids, &feature);
                workers::spawn(scope, move || {
                    workers::fault_point("key lookup");
                    (first..(first + per).min(feature_rows))
                        .map(|j| {
                            feature(j)
                                .and_then(|k| ids.get(&k).copied())
                                .unwrap_or(NO_GROUP)
                        })
                        .collect::<Vec<u32>>()
                })
            })
            .collect();
        workers::join_all("key lookup", handles)
    })?;
    Ok((entity_ids, groups, feature_ids.concat()))
}

/// For each entity row (key and time `at`), the feature row that counts, if any: the
/// latest with `ts <= at` for the same key; ties go to the larger created time, then to
/// the later source row. TTL is applied afterwards, by the builder.
///
/// Entity keys get dense ids; feature rows of keys no entity row has are dropped at once.
/// Both sides are grouped by id with a counting sort, and each group (a handful of rows)
/// is sorted by time and merged, the groups split over `threads` threads. Memory is the
/// two inputs plus a few `u32` per row; nothing is built per (entity, feature) pair.
fn matches(
    entity_keys: &KeyColumn,
    at: &[i64],
    features: &FeatureRows,
    threads: usize,
) -> Result<Vec<Option<u32>>> {
    let threads = threads.max(1);
    let (entity_ids, groups, feature_ids) =
        if entity_keys.is_single_int() && features.keys.is_single_int() {
            dense_ids(
                entity_keys.len(),
                |i| entity_keys.int(i).flatten(),
                features.keys.len(),
                |j| features.keys.int(j).flatten(),
                threads,
            )?
        } else {
            dense_ids(
                entity_keys.len(),
                |i| entity_keys.get(i),
                features.keys.len(),
                |j| features.keys.get(j),
                threads,
            )?
        };
    let (entity_order, entity_start) = group(&entity_ids, groups);
    let (feature_order, feature_start) = group(&feature_ids, groups);
    let per_group = groups.div_ceil(threads).max(1);
    let results: Vec<Vec<(u32, u32)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..groups)
            .step_by(per_group)
            .map(|first| {
                let (entity_order, entity_start) = (&entity_order, &entity_start);
                let (feature_order, feature_start) = (&feature_order, &feature_start);
                workers::spawn(scope, move || {
                    workers::fault_point("as-of match");
                    let mut found = Vec::new();
                    let mut ents: Vec<u32> = Vec::new();
                    let mut feats: Vec<u32> = Vec::new();
                    for g in first..(first + per_group).min(groups) {
                        let f = &feature_order
                            [feature_start[g] as usize..feature_start[g + 1] as usize];
                        if f.is_empty() {
                            continue;
                        }
                        ents.clear();
                        ents.extend_from_slice(
                            &entity_order[entity_start[g] as usize..entity_start[g + 1] as usize],
                        );
                        ents.sort_unstable_by_key(|&e| at[e as usize]);
                        feats.clear();
                        feats.extend_from_slice(f);
                        // Row order is the last tie-breaker: rows are grouped in row order
                        // and the sort is stable.
                        feats.sort_by_key(|&j| {
                            (
                                features.event_ts[j as usize],
                                features.created_ts[j as usize],
                            )
                        });
                        let mut next = 0;
                        let mut candidate = None;
                        for &e in &ents {
                            let t = at[e as usize];
                            while next < feats.len() && features.event_ts[feats[next] as usize] <= t
                            {
                                candidate = Some(feats[next]);
                                next += 1;
                            }
                            if let Some(c) = candidate {
                                found.push((e, c));
                            }
                        }
                    }
                    found
                })
            })
            .collect();
        workers::join_all("as-of match", handles)
    })?;
    let mut out = vec![None; entity_keys.len()];
    for part in results {
        for (e, f) in part {
            out[e as usize] = Some(f);
        }
    }
    Ok(out)
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
) -> Result<ViewColumns> {
    let found = matches(entity_keys, at, features, partitions)?;
    // Building the columns value by value is as heavy as the matching: each thread builds
    // a contiguous range of rows, and the ranges are concatenated in order.
    let rows = at.len();
    let per = rows.div_ceil(partitions.max(1)).max(MIN_ROWS_PER_BUILDER);
    if rows <= per {
        return Ok(build(&found, at, features, dtypes, ttl));
    }
    let pieces: Vec<ViewColumns> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..rows)
            .step_by(per)
            .map(|first| {
                let end = (first + per).min(rows);
                let (found, at) = (&found[first..end], &at[first..end]);
                workers::spawn(scope, move || {
                    workers::fault_point("column build");
                    build(found, at, features, dtypes, ttl)
                })
            })
            .collect();
        workers::join_all("column build", handles)
    })?;
    Ok(concat_views(pieces))
}

/// Below this many rows a range is built on the calling thread alone.
const MIN_ROWS_PER_BUILDER: usize = 16_384;

/// The view's columns for the entity rows `found` describes (`at` is their times),
/// through the shared [`ViewColumnsBuilder`] (TTL rule included).
fn build(
    found: &[Option<u32>],
    at: &[i64],
    features: &FeatureRows,
    dtypes: &[DType],
    ttl: Ttl,
) -> ViewColumns {
    // `FeatureRows` columns are canonical (conformed when read); a mismatch reads null.
    let readers: Vec<Option<ValueReader<'_>>> = features
        .features
        .iter()
        .zip(dtypes)
        .map(|(a, d)| ValueReader::new(a, *d))
        .collect();
    let mut builder = ViewColumnsBuilder::new(dtypes.iter().copied(), ttl, at.len());
    for (row, hit) in found.iter().enumerate() {
        match hit {
            Some(f) => {
                let f = *f as usize;
                builder.push_row(features.event_ts[f], at[row], |i| {
                    readers[i].map_or(Value::Null, |r| r.value(f))
                });
            }
            None => builder.push_missing(),
        }
    }
    builder.finish()
}

/// Pieces of one view's columns, in row order, as one.
fn concat_views(pieces: Vec<ViewColumns>) -> ViewColumns {
    let width = pieces.first().map_or(0, |p| p.columns.len());
    let columns = (0..width)
        .map(|c| {
            let arrays: Vec<&dyn Array> = pieces.iter().map(|p| p.columns[c].as_ref()).collect();
            arrow_select::concat::concat(&arrays).expect("pieces of one column share its type")
        })
        .collect();
    let mut status = Vec::with_capacity(pieces.iter().map(|p| p.status.len()).sum());
    let mut event_ts = Vec::with_capacity(status.capacity());
    for p in pieces {
        status.extend(p.status);
        event_ts.extend(p.event_ts);
    }
    ViewColumns {
        columns,
        status,
        event_ts,
    }
}
