//! Crash-safe file replacement, for every file Skewless persists.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` so that a crash at any moment leaves either the old file
/// or the new one, never a mix: write a temporary file beside it, fsync it, rename it over
/// `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Fsyncs a directory, so that a rename or a new file in it survives a power loss.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
