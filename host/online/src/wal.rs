//! The write-ahead log: numbered segment files of checksummed records.
//!
//! ```text
//! record  = [payload length u32][crc32 of payload u32][payload]
//! payload = [kind u8] then
//!   kind 1 (rows):  [lsn of first row u64][view name: u16 len + bytes][schema fingerprint u64]
//!                   [rows u32] then per row [key: u32 len + bytes][row: u32 len + bytes]
//!   kind 2 (reset): [view name: u16 len + bytes]   — the view's rows were dropped
//!   kind 3 (events): [lsn of first event u64][offline log: source, directory, timestamp
//!                   and created fields (u16 len + bytes each), columns u16, then per
//!                   column name and dtype name][events u32] then per event
//!                   [row: u32 len + bytes]   — rows of the log's columns, no key
//! ```
//! A record whose length or checksum does not hold, with no intact record after it, at the
//! end of the last segment is a write that was never acknowledged (the crash came before
//! its fsync), and it is truncated away. Anywhere else it is damage to acknowledged data:
//! recovery stops with an error naming the segment and the byte, unless told to skip it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result, io};

pub(crate) const KIND_ROWS: u8 = 1;
pub(crate) const KIND_RESET: u8 = 2;
pub(crate) const KIND_EVENTS: u8 = 3;

/// The most bytes one record may hold; larger writes are refused before they are logged.
pub const MAX_RECORD_BYTES: usize = 1 << 30;

/// An encoded entity key and its encoded row.
pub(crate) type KeyedRow = (Box<[u8]>, Box<[u8]>);

/// A decoded record.
#[derive(Debug)]
pub(crate) enum Record {
    Rows {
        lsn: u64,
        view: String,
        fingerprint: u64,
        rows: Vec<KeyedRow>,
    },
    Reset {
        view: String,
    },
    Events {
        lsn: u64,
        log: crate::offline_log::LogSchema,
        rows: Vec<Box<[u8]>>,
    },
}

pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("wal-{number:012}.log"))
}

/// The segment numbers present in `dir`, ascending.
pub(crate) fn segments(dir: &Path) -> Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let name = entry.map_err(io(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(number) = name
            .strip_prefix("wal-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse().ok())
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

pub(crate) fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Frames a payload as a record.
pub(crate) fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A cursor over a payload that fails instead of panicking on short input.
pub(crate) struct Cursor<'a>(pub(crate) &'a [u8]);

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(crate) fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    }
    pub(crate) fn u32(&mut self) -> Option<usize> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("took 8 bytes")))
    }
    pub(crate) fn str(&mut self) -> Option<String> {
        let n = self.u16()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    pub(crate) fn bytes(&mut self) -> Option<Box<[u8]>> {
        let n = self.u32()?;
        Some(self.take(n)?.into())
    }
}

fn decode(payload: &[u8]) -> Option<Record> {
    let mut c = Cursor(payload);
    match c.u8()? {
        KIND_ROWS => {
            let lsn = c.u64()?;
            let view = c.str()?;
            let fingerprint = c.u64()?;
            let n = c.u32()?;
            let mut rows = Vec::with_capacity(n.min(payload.len() / 8));
            for _ in 0..n {
                let key = c.bytes()?;
                let row = c.bytes()?;
                if row.len() < crate::row::HEADER {
                    return None;
                }
                rows.push((key, row));
            }
            Some(Record::Rows {
                lsn,
                view,
                fingerprint,
                rows,
            })
        }
        KIND_RESET => Some(Record::Reset { view: c.str()? }),
        KIND_EVENTS => {
            let lsn = c.u64()?;
            let log = crate::offline_log::LogSchema::decode(&mut c)?;
            let n = c.u32()?;
            let mut rows = Vec::with_capacity(n.min(payload.len() / 8));
            for _ in 0..n {
                let row = c.bytes()?;
                if !crate::row::fits(&row, log.columns.len()) {
                    return None;
                }
                rows.push(row);
            }
            Some(Record::Events { lsn, log, rows })
        }
        _ => None,
    }
}

/// How a segment ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Every byte is in a whole record.
    Clean,
    /// An incomplete or damaged record at byte `at` with no intact record after it: a
    /// write the crash interrupted before its fsync, so never acknowledged.
    Torn {
        /// Where the valid prefix ends.
        at: u64,
    },
}

/// Damaged bytes followed by intact records: acknowledged data was damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// The first damaged byte.
    pub(crate) at: u64,
    /// Where the next intact record starts.
    pub(crate) resumes: u64,
}

/// What reading a segment found.
#[derive(Debug)]
pub(crate) struct SegmentRead {
    /// The intact records, in order.
    pub(crate) records: Vec<Record>,
    /// How it ends.
    pub(crate) tail: Tail,
    /// Damaged stretches skipped (only with `skip_damaged`; otherwise the first is an
    /// error).
    pub(crate) skipped: Vec<Damage>,
}

/// The record framed at the start of `bytes`, and its framed length, if one is whole,
/// checksummed and decodable there.
fn record_at(bytes: &[u8]) -> Option<(Record, usize)> {
    let head = bytes.get(..8)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let payload = bytes.get(8..8 + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    Some((decode(payload)?, 8 + len))
}

/// Reads every whole record of a segment, in order. A record that does not hold is a torn
/// tail only when no intact record follows it (the bytes after the last fsync); otherwise
/// acknowledged records were damaged, which is an error naming the segment and the byte,
/// unless `skip_damaged` says to keep every intact record and skip the damaged bytes.
/// Nothing here changes the file.
pub(crate) fn read_segment(path: &Path, skip_damaged: bool) -> Result<SegmentRead> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        if let Some((record, framed)) = record_at(&bytes[pos..]) {
            records.push(record);
            pos += framed;
            continue;
        }
        // The next intact record after the bad one, if any.
        let resumes =
            (pos + 1..bytes.len().saturating_sub(8)).find(|&q| record_at(&bytes[q..]).is_some());
        let Some(resumes) = resumes else {
            return Ok(SegmentRead {
                records,
                tail: Tail::Torn { at: pos as u64 },
                skipped,
            });
        };
        let damage = Damage {
            at: pos as u64,
            resumes: resumes as u64,
        };
        if !skip_damaged {
            return Err(damaged(path, &damage));
        }
        tracing::error!(
            path = %path.display(),
            at = damage.at,
            resumes = damage.resumes,
            "skipping damaged log bytes (--recover-skip-corrupt); the rows in them are lost"
        );
        skipped.push(damage);
        pos = resumes;
    }
    Ok(SegmentRead {
        records,
        tail: Tail::Clean,
        skipped,
    })
}

/// The error for damaged records with intact ones after them.
pub(crate) fn damaged(path: &Path, damage: &Damage) -> Error {
    Error::Corrupt {
        path: path.to_owned(),
        reason: format!(
            "a damaged log record at byte {} ({} bytes, before the intact record at byte {}); records after it were acknowledged, so nothing was dropped or changed. Restore the data directory from a backup, or start with `serve --recover-skip-corrupt` to keep every intact record and skip the damaged bytes (their rows are lost)",
            damage.at,
            damage.resumes - damage.at,
            damage.resumes
        ),
    }
}

/// The segment being appended to.
pub(crate) struct Segment {
    pub(crate) number: u64,
    pub(crate) path: PathBuf,
    file: File,
    pub(crate) bytes: u64,
}

impl Segment {
    pub(crate) fn create(dir: &Path, number: u64) -> Result<Self> {
        let path = segment_path(dir, number);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        skewless_core::fs::sync_dir(dir).map_err(io(dir))?;
        Ok(Segment {
            number,
            path,
            file,
            bytes: 0,
        })
    }

    /// Appends framed records and makes them durable (one fsync for the whole group).
    /// A failed write (a full disk, say) is rolled back: the segment is cut back to its
    /// last durable length, so that the log holds no partial record and a later append
    /// can succeed ([`Appended::RolledBack`]). A failed fsync, or a failed roll-back, leaves
    /// what is on disk unknown: that is an error.
    pub(crate) fn append_durable(&mut self, framed: &[u8]) -> Result<Appended> {
        if let Err(e) = self.write(framed) {
            let rolled_back = self
                .file
                .set_len(self.bytes)
                .and_then(|()| self.file.sync_data());
            return match rolled_back {
                Ok(()) => Ok(Appended::RolledBack(e)),
                Err(_) => Err(io(&self.path)(e)),
            };
        }
        self.file.sync_data().map_err(io(&self.path))?;
        self.bytes += framed.len() as u64;
        Ok(Appended::Durable)
    }

    fn write(&mut self, framed: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(error) = fail_next_write::take(&self.path) {
            // As a full disk does: part of the bytes land, then the write fails.
            self.file.write_all(&framed[..framed.len() / 2])?;
            return Err(error);
        }
        self.file.write_all(framed)
    }
}

/// How an append went.
#[derive(Debug)]
pub(crate) enum Appended {
    /// The records are durable.
    Durable,
    /// The write failed and the segment was cut back to what it held before: nothing of
    /// the records is in the log, and the log is whole.
    RolledBack(std::io::Error),
}

/// Truncates a segment to its valid prefix (drops a torn tail).
pub(crate) fn truncate(path: &Path, len: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    file.set_len(len).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// A torn end in a segment that is not the last: it was complete when it was closed, so
/// its end was acknowledged.
pub(crate) fn corrupt_middle(path: &Path, at: u64) -> Error {
    Error::Corrupt {
        path: path.to_owned(),
        reason: format!(
            "the segment ends in a damaged record at byte {at}, but it was complete when it was closed: its records were acknowledged. Restore the data directory from a backup, or start with `serve --recover-skip-corrupt` to keep every intact record (the damaged end's rows are lost)"
        ),
    }
}

/// A test's way to make the next append of a store fail as a full disk does.
#[cfg(test)]
pub(crate) mod fail_next_write {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static NEXT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    /// The next append to a segment under `dir` writes half its bytes and fails.
    pub(crate) fn set(dir: &Path) {
        NEXT.lock().unwrap().push(dir.to_owned());
    }

    pub(super) fn take(segment: &Path) -> Option<std::io::Error> {
        let mut next = NEXT.lock().unwrap();
        let i = next.iter().position(|dir| segment.starts_with(dir))?;
        next.remove(i);
        Some(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "No space left on device (injected)",
        ))
    }
}
