//! The write-ahead log: numbered segment files of checksummed records.
//!
//! ```text
//! record  = [payload length u32][crc32 of payload u32][payload]
//! payload = [kind u8] then
//!   kind 1 (rows):  [lsn of first row u64][view name: u16 len + bytes][schema fingerprint u64]
//!                   [rows u32] then per row [key: u32 len + bytes][row: u32 len + bytes]
//!   kind 2 (reset): [view name: u16 len + bytes]   — the view's rows were dropped
//! ```
//! A record whose length or checksum does not hold ends the log: at the tail of the last
//! segment it is a write that was never acknowledged (the crash came before its fsync),
//! and it is truncated away.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result, io};

pub(crate) const KIND_ROWS: u8 = 1;
pub(crate) const KIND_RESET: u8 = 2;

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
        _ => None,
    }
}

/// Reads every whole record of a segment, in order. Returns the records and the byte
/// length of the valid prefix; `torn` is whether bytes after it were dropped.
pub(crate) fn read_segment(path: &Path) -> Result<(Vec<Record>, u64, bool)> {
    let file = File::open(path).map_err(io(path))?;
    let total = file.metadata().map_err(io(path))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut records = Vec::new();
    let mut valid = 0u64;
    loop {
        let mut head = [0u8; 8];
        match reader.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io(path)(e)),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD_BYTES || valid + 8 + len as u64 > total {
            break;
        }
        let mut payload = vec![0u8; len];
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        let Some(record) = decode(&payload) else {
            break;
        };
        records.push(record);
        valid += 8 + len as u64;
    }
    Ok((records, valid, valid < total))
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
    pub(crate) fn append_durable(&mut self, framed: &[u8]) -> Result<()> {
        self.file.write_all(framed).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.bytes += framed.len() as u64;
        Ok(())
    }
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

/// A corrupt record in a segment that is not the last: data that was acknowledged.
pub(crate) fn corrupt_middle(path: &Path) -> Error {
    Error::Corrupt {
        path: path.to_owned(),
        reason: "a damaged record before the end of the log; this segment was complete when it was closed".into(),
    }
}
