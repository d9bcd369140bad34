//! The on-disk cache of compiled components.
//!
//! Compiling a large component (a Python or JavaScript runtime) takes seconds to minutes;
//! loading its compiled artifact takes milliseconds. An artifact is keyed by the sha256
//! of the component bytes and the engine fingerprint (wasmtime version + every setting
//! that affects code generation), so a changed engine never loads a stale artifact.
//!
//! Deserializing an artifact runs native code, so only bytes this host wrote may be
//! loaded: beside each `KEY.cwasm` the cache keeps `KEY.cwasm.sha256`, the digest of the
//! artifact as written, and an artifact whose bytes do not match is recompiled rather
//! than loaded. Both files are written under a temporary name and renamed into place, so
//! a crash never leaves a truncated artifact under its final name. The directory must be
//! writable by the host alone.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A directory of compiled artifacts.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl CompileCache {
    /// Opens (creating if needed) a cache in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| Error::Cache {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The directory holding the artifacts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artifact for `key` lives.
    pub fn artifact_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    fn digest_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm.sha256"))
    }

    /// The artifact stored under `key`, if there is one and its digest matches what this
    /// host recorded when writing it.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let artifact = fs::read(self.artifact_path(key)).ok()?;
        let recorded = fs::read_to_string(self.digest_path(key)).ok()?;
        if recorded.trim() == sha256_hex(&artifact) {
            Some(artifact)
        } else {
            tracing::warn!(
                key,
                "compiled artifact does not match its recorded digest; recompiling"
            );
            None
        }
    }

    /// Stores `artifact` under `key`, atomically.
    pub fn put(&self, key: &str, artifact: &[u8]) -> Result<()> {
        write_atomically(&self.artifact_path(key), artifact)?;
        write_atomically(&self.digest_path(key), sha256_hex(artifact).as_bytes())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    skewless_core::fs::write_atomic(path, bytes).map_err(|source| Error::Cache {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_verifies_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::open(dir.path().join("cache")).unwrap();
        assert_eq!(cache.get("k"), None);
        cache.put("k", b"compiled").unwrap();
        assert_eq!(cache.get("k").as_deref(), Some(&b"compiled"[..]));

        // Bytes this host did not write are never handed back.
        fs::write(cache.artifact_path("k"), b"tampered").unwrap();
        assert_eq!(cache.get("k"), None);
    }
}
