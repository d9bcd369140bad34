//! Tests of the local store: ordering, durability, snapshots, recovery.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{ArrayRef, Float64Array};
use skewless_core::Ttl;
use skewless_core::key::KeyBuf;

use super::*;

fn schema() -> ViewSchema {
    ViewSchema {
        name: "stats".into(),
        features: vec![("avg".into(), DType::Float64)],
    }
}

fn key(id: i64) -> Box<[u8]> {
    let mut k = KeyBuf::new();
    k.push_int(id);
    k.as_bytes().into()
}

/// Waits (up to 20 s) for the store's timer to take its first snapshot.
fn wait_for_snapshot(store: &LocalStore) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.stats().snapshots == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write(store: &LocalStore, rows: &[(i64, i64, f64)]) {
    try_write(store, rows).unwrap();
}

fn try_write(store: &LocalStore, rows: &[(i64, i64, f64)]) -> Result<()> {
    let batch = WriteBatch {
        keys: rows.iter().map(|r| key(r.0)).collect(),
        event_ts: rows.iter().map(|r| r.1).collect(),
        created_ts: None,
        features: vec![
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))) as ArrayRef,
        ],
    };
    store.write("stats", batch)
}

fn read(store: &LocalStore, ids: &[i64], at: i64) -> Vec<Option<f64>> {
    let keys: Vec<Box<[u8]>> = ids.iter().map(|&i| key(i)).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| &**k).collect();
    let mut out = ViewColumnsBuilder::new([DType::Float64], Ttl::UNLIMITED, ids.len());
    store
        .read("stats", schema().fingerprint(), &refs, at, &mut out)
        .unwrap();
    let cols = out.finish();
    cols.columns[0]
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

#[test]
fn older_writes_do_not_overwrite_and_ties_go_to_the_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
    write(&store, &[(1, 100, 1.0), (2, 100, 2.0)]);
    write(&store, &[(1, 50, 9.0), (2, 100, 3.0)]);
    assert_eq!(read(&store, &[1, 2, 3], 1000), [Some(1.0), Some(3.0), None]);
    // Within one batch, too: the later row of a key wins a tie.
    write(&store, &[(3, 7, 1.0), (3, 7, 2.0)]);
    assert_eq!(read(&store, &[3], 1000), [Some(2.0)]);
}

#[test]
fn stats_count_rows_and_bytes_per_view() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
    write(&store, &[(1, 100, 1.0)]);
    let one = store.stats().bytes[0].1;
    assert!(one > key(1).len() as u64, "key and row bytes: {one}");
    write(&store, &[(2, 100, 2.0)]);
    // A newer row replaces the stored one, an older one is ignored: neither adds.
    write(&store, &[(1, 200, 3.0), (2, 50, 4.0)]);
    let stats = store.stats();
    assert_eq!(stats.rows, [("stats".to_owned(), 2)]);
    assert_eq!(stats.bytes, [("stats".to_owned(), 2 * one)]);
}

#[test]
fn a_snapshot_is_taken_on_a_timer_without_further_writes() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(u64::MAX, Duration::from_millis(50));
    let store = LocalStore::open(dir.path(), &[schema()], options).unwrap();
    write(&store, &[(1, 100, 1.0)]);
    wait_for_snapshot(&store);
    assert_eq!(store.stats().snapshots, 1, "one snapshot, by time alone");
    assert!(dir.path().join(SNAPSHOT).exists());
    assert_eq!(store.stats().wal_bytes_since_snapshot, 0);
}

#[test]
fn a_snapshot_a_crash_interrupted_is_removed_at_open_and_the_last_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(u64::MAX, Duration::from_millis(50));
    {
        let store = LocalStore::open(dir.path(), &[schema()], options).unwrap();
        write(&store, &[(1, 100, 1.0)]);
        wait_for_snapshot(&store);
        assert_eq!(store.stats().snapshots, 1);
    }
    let committed = std::fs::read(dir.path().join(SNAPSHOT)).unwrap();
    // A process killed while writing its next snapshot leaves its temporary file.
    let mut unfinished = AtomicFile::create(&dir.path().join(SNAPSHOT)).unwrap();
    unfinished.write_all(b"half a snapshot").unwrap();
    std::mem::forget(unfinished);
    let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
    assert_eq!(read(&store, &[1], 1000), [Some(1.0)]);
    assert_eq!(std::fs::read(dir.path().join(SNAPSHOT)).unwrap(), committed);
    let temporaries = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy()
                .starts_with(skewless_core::fs::TEMP_PREFIX)
        })
        .count();
    assert_eq!(temporaries, 0);
}

#[test]
fn a_deleted_snapshot_is_an_error_not_a_silent_loss() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(u64::MAX, Duration::from_millis(50));
    {
        let store = LocalStore::open(dir.path(), &[schema()], options).unwrap();
        write(&store, &[(1, 100, 1.0)]);
        wait_for_snapshot(&store);
        assert_eq!(store.stats().snapshots, 1);
        write(&store, &[(2, 100, 2.0)]);
    }
    std::fs::remove_file(dir.path().join(SNAPSHOT)).unwrap();
    let err = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(
        text.contains("missing, but the log starts at segment"),
        "{text}"
    );
    assert!(
        text.contains("Restore snapshot.bin from a backup"),
        "{text}"
    );
    // A fresh store (no snapshot, log from segment 0) opens as before.
    let fresh = tempfile::tempdir().unwrap();
    LocalStore::open(fresh.path(), &[schema()], StoreOptions::default()).unwrap();
}

#[test]
fn restart_replays_the_log_and_snapshots_cover_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(1, Duration::from_secs(3600));
    {
        let store = LocalStore::open(dir.path(), &[schema()], options.clone()).unwrap();
        for i in 0..50 {
            write(&store, &[(i, 10 + i, i as f64)]);
        }
        // Let a snapshot finish, then write more that only the log has.
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.stats().snapshots == 0 && Instant::now() < deadline {
            write(&store, &[(0, 1, 0.5)]);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(store.stats().snapshots > 0, "no snapshot was written");
        write(&store, &[(100, 5, 100.0)]);
    }
    assert!(dir.path().join(SNAPSHOT).exists());
    let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
    let ids: Vec<i64> = (0..50).chain([100]).collect();
    let expected: Vec<Option<f64>> = ids.iter().map(|&i| Some(i as f64)).collect();
    assert_eq!(read(&store, &ids, 1000), expected);
}

#[test]
fn a_torn_tail_is_dropped_and_the_rest_recovers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
        write(&store, &[(1, 10, 1.5)]);
    }
    let last = *wal::segments(dir.path()).unwrap().last().unwrap();
    // A crash mid-append: half a record at the end.
    let path = wal::segment_path(dir.path(), last);
    let mut bytes = std::fs::read(&path).unwrap();
    let whole = bytes.len();
    bytes.extend_from_within(..whole / 2);
    std::fs::write(&path, &bytes).unwrap();
    let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
    assert_eq!(read(&store, &[1], 100), [Some(1.5)]);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        whole as u64,
        "tail truncated"
    );
}

/// The byte offsets of the records framed in a segment's bytes.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        starts.push(pos);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    starts
}

/// Three acknowledged writes, each its own record, in the newest segment; returns the
/// segment's path and the offset of each write's record.
fn three_writes(dir: &Path) -> (PathBuf, Vec<usize>) {
    let store = LocalStore::open(dir, &[schema()], StoreOptions::default()).unwrap();
    for id in 1..=3 {
        write(&store, &[(id, 10, id as f64)]);
    }
    drop(store);
    let newest = wal::segments(dir)
        .unwrap()
        .into_iter()
        .map(|n| wal::segment_path(dir, n))
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let starts = record_starts(&std::fs::read(&newest).unwrap());
    assert!(starts.len() >= 3, "{starts:?}");
    (newest, starts[starts.len() - 3..].to_vec())
}

/// Damage anywhere but a torn tail stops recovery with an error that names the segment
/// and the byte, and changes nothing (a flip in the first record once truncated the whole
/// segment to 0 bytes); `recover_skip_corrupt` keeps every intact record after it.
#[test]
fn a_damaged_record_is_an_error_and_never_truncates_intact_records() {
    for damaged in [1, 0] {
        let dir = tempfile::tempdir().unwrap();
        let (path, starts) = three_writes(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let at = starts[damaged];
        bytes[at + 12] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();

        let err = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(
            text.contains(&format!("damaged log record at byte {at}")),
            "{text}"
        );
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("--recover-skip-corrupt"), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing changed");

        let options = StoreOptions {
            recover_skip_corrupt: true,
            ..StoreOptions::default()
        };
        let store = LocalStore::open(dir.path(), &[schema()], options).unwrap();
        let mut expected = vec![Some(1.0), Some(2.0), Some(3.0)];
        expected[damaged] = None;
        assert_eq!(read(&store, &[1, 2, 3], 100), expected);
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "intact records kept");
    }
}

/// A full disk refuses the write it meets (a 503 over HTTP, naming the cause), stores
/// nothing of it, and leaves the log whole; the next write is tried again and succeeds
/// once there is room. Writes once stayed refused until a restart.
#[test]
fn a_full_disk_refuses_writes_and_they_resume_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
    write(&store, &[(1, 10, 1.0)]);
    wal::fail_next_write::set(dir.path());
    let err = try_write(&store, &[(2, 10, 2.0)]).unwrap_err();
    assert!(matches!(err, Error::WriteRefused(_)), "{err:?}");
    assert_eq!(err.fault(), skewless_core::Fault::Unavailable);
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert_eq!(store.writable(), Some(false));
    assert_eq!(store.stats().failed_writes, 1);
    assert_eq!(
        read(&store, &[2], 100),
        [None],
        "nothing of the refused write"
    );

    write(&store, &[(3, 10, 3.0)]);
    assert_eq!(store.writable(), Some(true));
    assert_eq!(read(&store, &[1, 2, 3], 100), [Some(1.0), None, Some(3.0)]);
    drop(store);
    // The half-written group was cut away: the log opens whole, with no recovery flag.
    let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
    assert_eq!(read(&store, &[1, 2, 3], 100), [Some(1.0), None, Some(3.0)]);
}

#[test]
fn a_changed_view_loses_its_rows_and_a_second_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
    assert!(matches!(
        LocalStore::open(dir.path(), &[schema()], StoreOptions::default()),
        Err(Error::Locked(_))
    ));
    write(&store, &[(1, 10, 1.5)]);
    let mut changed = schema();
    changed.features.push(("count".into(), DType::Int64));
    store.set_views(&[changed.clone()]).unwrap();
    assert_eq!(store.stats().rows, [("stats".to_owned(), 0)]);
    let keys = [key(1)];
    let refs: Vec<&[u8]> = keys.iter().map(|k| &**k).collect();
    let mut out = ViewColumnsBuilder::new([DType::Float64], Ttl::UNLIMITED, 1);
    assert!(matches!(
        store.read("stats", schema().fingerprint(), &refs, 0, &mut out),
        Err(Error::SchemaChanged(_))
    ));
    drop(store);
    // The reset is in the log: the old row does not come back under the old schema.
    let store = LocalStore::open(dir.path(), &[schema()], StoreOptions::default()).unwrap();
    assert_eq!(read(&store, &[1], 100), [None]);
}
