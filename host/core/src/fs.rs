//! Crash-safe file replacement, for every file Skewless persists: registry files, online
//! store snapshots, compiled artifacts, training sets and `run-transform` outputs all go
//! through [`AtomicFile`].

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The name prefix of an [`AtomicFile`]'s temporary file; [`remove_leftovers`] removes
/// the ones a crash left behind.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A file that replaces `path` only when [`commit`](AtomicFile::commit)ted, so that a crash
/// at any moment leaves either the old file or the new one, never a mix: the bytes go to a
/// temporary file beside `path`; commit flushes and fsyncs it, renames it over `path`, and
/// fsyncs the directory so the rename itself survives a power loss. Dropped without a
/// commit (an error part-way), the temporary file is removed and `path` is untouched.
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl AtomicFile {
    /// Starts replacing `path`, creating its directory if needed.
    pub fn create(path: &Path) -> io::Result<Self> {
        let dir = parent(path);
        std::fs::create_dir_all(dir)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX);
        // A temporary file is private (0600) by default, and its mode survives the
        // rename: the committed file gets the mode any new file gets (0666 less the
        // umask, 0644 under 0022), so a training set is readable by the team.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let tmp = builder.tempfile_in(dir)?;
        Ok(Self {
            path: path.to_owned(),
            tmp,
        })
    }

    /// The path this file will replace.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file, for writers that need a `File` (its length, say).
    pub fn as_file(&self) -> &File {
        self.tmp.as_file()
    }

    /// Makes the written bytes the content of `path`: fsync, rename, fsync the directory.
    pub fn commit(mut self) -> io::Result<()> {
        self.tmp.flush()?;
        self.tmp.as_file().sync_all()?;
        let Self { path, tmp } = self;
        tmp.persist(&path).map_err(|e| e.error)?;
        sync_dir(parent(&path))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tmp.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// Replaces `path` with `bytes` through an [`AtomicFile`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// Removes the temporary files that [`AtomicFile`]s of a crashed process left in `dir`
/// (never the files they would have replaced). Call it only where no other process is
/// writing, such as a data directory the caller has locked; returns how many were removed.
pub fn remove_leftovers(dir: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
            && entry.file_type()?.is_file()
        {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Fsyncs a directory, so that a rename or a new file in it survives a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_commit_replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/data.bin");
        write_atomic(&path, b"old").unwrap();
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"new ").unwrap();
        file.write_all(b"bytes").unwrap();
        // Until the commit, readers see the old file.
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        file.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new bytes");
        assert_eq!(names(&dir.path().join("nested")), ["data.bin"]);
    }

    #[test]
    fn an_error_part_way_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        write_atomic(&path, b"old").unwrap();
        let failed = (|| -> io::Result<()> {
            let mut file = AtomicFile::create(&path)?;
            file.write_all(b"half of it")?;
            Err(io::Error::other("the writer failed"))
        })();
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["data.bin"]);
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_old_file_and_a_removable_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        write_atomic(&path, b"old").unwrap();
        // A process killed after writing, before the rename: nothing runs its destructor.
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"never committed").unwrap();
        file.as_file().sync_all().unwrap();
        std::mem::forget(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()).len(), 2);
        assert_eq!(remove_leftovers(dir.path()).unwrap(), 1);
        assert_eq!(names(dir.path()), ["data.bin"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(remove_leftovers(&dir.path().join("absent")).unwrap(), 0);
    }

    /// The process's umask, as Linux reports it.
    #[cfg(target_os = "linux")]
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_committed_file_has_the_mode_of_any_new_file_not_the_temporary_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.parquet");
        write_atomic(&path, b"rows").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask(), "mode {mode:o}");
        if umask() & 0o044 == 0 {
            assert_ne!(
                mode, 0o600,
                "the temporary file's private mode must not survive"
            );
        }
    }

    #[test]
    fn a_first_write_creates_the_file_and_a_relative_path_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("first.bin");
        write_atomic(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(parent(Path::new("bare.bin")), Path::new("."));
    }
}
