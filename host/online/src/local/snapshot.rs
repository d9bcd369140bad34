//! Snapshots: every view's rows, with a checksum, written through an `AtomicFile`; the
//! log segments a snapshot covers are then deleted.

use super::*;

pub(super) const SNAPSHOT: &str = "snapshot.bin";
const SNAPSHOT_MAGIC: &[u8; 8] = b"SKWSNAP1";

/// Writes every view's rows to a new snapshot whose log starts at segment `start`, then
/// deletes the segments it covers. Returns the rows written.
pub(super) fn write_snapshot(dir: &Path, views: &Views, start: u64) -> Result<u64> {
    let views: Vec<Arc<ViewData>> = views
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    let path = dir.join(SNAPSHOT);
    let file = AtomicFile::create(&path).map_err(io(&path))?;
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: crc32fast::Hasher::new(),
    };
    let mut rows = 0u64;
    let write = |out: &mut HashingWriter, bytes: &[u8]| out.write_all(bytes).map_err(io(&path));
    write(&mut out, SNAPSHOT_MAGIC)?;
    write(&mut out, &start.to_le_bytes())?;
    write(&mut out, &(views.len() as u32).to_le_bytes())?;
    for view in &views {
        let mut head = Vec::new();
        wal::put_str(&mut head, &view.schema.name);
        head.extend_from_slice(&view.fingerprint.to_le_bytes());
        write(&mut out, &head)?;
        // The count is not known until the shards are walked: rows are framed one by one
        // and a zero-length key ends the view.
        for entry in view.rows.iter() {
            let mut framed = Vec::with_capacity(8 + entry.key().len() + entry.value().len());
            wal::put_bytes(&mut framed, entry.key());
            wal::put_bytes(&mut framed, entry.value());
            write(&mut out, &framed)?;
            rows += 1;
        }
        write(&mut out, &0u32.to_le_bytes())?;
    }
    let crc = out.hasher.clone().finalize();
    let mut file = out.inner;
    file.write_all(&crc.to_le_bytes()).map_err(io(&path))?;
    let file = file.into_inner().map_err(|e| io(&path)(e.into_error()))?;
    file.commit().map_err(io(&path))?;
    for number in wal::segments(dir)? {
        if number < start {
            let old = wal::segment_path(dir, number);
            std::fs::remove_file(&old).map_err(io(&old))?;
        }
    }
    Ok(rows)
}

struct HashingWriter {
    inner: BufWriter<AtomicFile>,
    hasher: crc32fast::Hasher,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Loads a snapshot into `views`; returns the first log segment after it (0 if none).
pub(super) fn load_snapshot(path: &Path, views: &Views, max_lsn: &mut u64) -> Result<u64> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(file) => BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(io(path))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(path)(e)),
    };
    let corrupt = |reason: &str| Error::Corrupt {
        path: path.to_owned(),
        reason: format!(
            "{reason}. Restore it from a backup; or, to start with an empty store, move {} aside and materialize again",
            path.parent().unwrap_or(path).display()
        ),
    };
    if bytes.len() < 24 || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("not a Skewless snapshot"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(corrupt("checksum mismatch"));
    }
    let mut c = wal::Cursor(&body[8..]);
    let truncated = || corrupt("truncated");
    let start = c.u64().ok_or_else(truncated)?;
    let count = c.u32().ok_or_else(truncated)?;
    let map = views.read().unwrap_or_else(|e| e.into_inner());
    for _ in 0..count {
        let name = c.str().ok_or_else(truncated)?;
        let fingerprint = c.u64().ok_or_else(truncated)?;
        let target = map.get(&name).filter(|v| v.fingerprint == fingerprint);
        loop {
            let key = c.bytes().ok_or_else(truncated)?;
            if key.is_empty() {
                break;
            }
            let row = c.bytes().ok_or_else(truncated)?;
            if row.len() < row::HEADER {
                return Err(corrupt("a row shorter than its header"));
            }
            *max_lsn = (*max_lsn).max(row::order_key(&row).2);
            if let Some(view) = target {
                view.apply(key, row);
            }
        }
    }
    Ok(start)
}
