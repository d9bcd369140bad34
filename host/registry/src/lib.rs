//! The Skewless registry: which module versions exist and which definitions are applied,
//! persisted under `DATA_DIR/registry/` so that both survive a restart.
//!
//! Module versions are immutable and content-addressed: `name@version` names exactly one
//! sha256 forever. A module is validated (world, declared signature) and compiled when it
//! is uploaded, through the engine, and only then stored; a refused upload changes
//! nothing. Definitions are validated against the uploaded modules and replaced
//! atomically.
//!
//! The registry does not serve features or plan them: it hands out [`Project`]s and loaded
//! [`Transform`]s.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use skewless_core::Fault;
use skewless_core::definitions::{ModuleRef, check_module_name, check_version};
use skewless_core::fs::write_atomic;
use skewless_core::{DefinitionErrors, Definitions, Project, Signature};
use skewless_engine::{Engine, Transform};

/// A registry error, split by who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A malformed module name or version.
    #[error("{0}")]
    InvalidName(String),
    /// The name@version exists with other bytes.
    #[error(
        "module {module} already exists with sha256 {existing}; versions are immutable, upload these bytes (sha256 {uploaded}) as a new version"
    )]
    Conflict {
        /// The module version.
        module: ModuleRef,
        /// The stored sha256.
        existing: String,
        /// The sha256 of the refused upload.
        uploaded: String,
    },
    /// The engine refused the module (not a component, wrong world, bad signature...).
    #[error(transparent)]
    Module(skewless_engine::Error),
    /// Definitions that do not validate.
    #[error(transparent)]
    Definitions(#[from] DefinitionErrors),
    /// A module or definitions that do not exist.
    #[error("{0}")]
    NotFound(String),
    /// The data directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A broken invariant (a bug); nothing was changed.
    #[error("internal registry error: {0}")]
    Internal(String),
    /// The data directory holds something the registry cannot read.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::InvalidName(_)
            | Error::Conflict { .. }
            | Error::Definitions(_)
            | Error::NotFound(_) => Fault::Caller,
            // At upload the component is the caller's: a guest fault while checking it
            // (a trap in its signature export) is the uploader's to fix.
            Error::Module(e) => match e.fault() {
                Fault::Guest => Fault::Caller,
                other => other,
            },
            Error::Io { .. } | Error::Corrupt { .. } | Error::Internal(_) => Fault::Internal,
        }
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the registry records of one uploaded module version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// The module name.
    pub name: String,
    /// The version.
    pub version: String,
    /// The sha256 of the component bytes, hex.
    pub sha256: String,
    /// The component's size in bytes.
    pub size: u64,
    /// The signature the component declares.
    pub signature: Signature,
    /// When it was uploaded, RFC 3339.
    pub uploaded_at: String,
}

impl ModuleInfo {
    /// `name@version`.
    pub fn reference(&self) -> ModuleRef {
        ModuleRef {
            name: self.name.clone(),
            version: self.version.clone(),
        }
    }
}

/// Whether an upload stored a new version or found the same bytes already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// A new version was stored.
    Created,
    /// The same name@version with the same bytes already existed; nothing changed.
    Unchanged,
}

#[derive(Debug)]
struct Loaded {
    info: ModuleInfo,
    transform: Transform,
}

/// The registry of one data directory.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    engine: Engine,
    modules: RwLock<BTreeMap<ModuleRef, Arc<Loaded>>>,
    project: RwLock<Option<Arc<Project>>>,
    /// Serializes uploads and applies, so that check-then-write is atomic.
    writes: Mutex<()>,
}

const INDEX: &str = "modules.json";
const WATERMARKS: &str = "watermarks.json";

/// How far a feature view has been materialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// The end of the last window loaded, microseconds since the Unix epoch.
    pub end_micros: i64,
    /// The online schema fingerprint of the view when it was loaded: a watermark of
    /// another schema does not count (the store dropped those rows).
    pub fingerprint: u64,
}
const DEFINITIONS: &str = "definitions.yaml";

impl Registry {
    /// Opens (or creates) the registry under `data_dir/registry`, loading every stored
    /// module through `engine` (from its compile cache when warm) and the applied
    /// definitions.
    pub fn open(data_dir: &Path, engine: Engine) -> Result<Self> {
        let dir = data_dir.join("registry");
        std::fs::create_dir_all(dir.join("modules")).map_err(io(&dir))?;
        let index_path = dir.join(INDEX);
        let infos: Vec<ModuleInfo> = match std::fs::read(&index_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path: index_path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&index_path)(e)),
        };
        let mut modules = BTreeMap::new();
        for info in infos {
            let path = module_path(&dir, &info.name, &info.version);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let reference = info.reference();
            let transform =
                engine
                    .load(&reference.to_string(), &bytes)
                    .map_err(|e| Error::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
            if transform.sha256() != info.sha256 {
                return Err(Error::Corrupt {
                    path,
                    reason: format!(
                        "sha256 {} differs from the recorded {}",
                        transform.sha256(),
                        info.sha256
                    ),
                });
            }
            modules.insert(reference, Arc::new(Loaded { info, transform }));
        }
        let registry = Registry {
            dir,
            engine,
            modules: RwLock::new(modules),
            project: RwLock::new(None),
            writes: Mutex::new(()),
        };
        let definitions_path = registry.dir.join(DEFINITIONS);
        match std::fs::read_to_string(&definitions_path) {
            Ok(text) => {
                let project = registry.validate(&text).map_err(|e| Error::Corrupt {
                    path: definitions_path.clone(),
                    reason: e.to_string(),
                })?;
                *registry.project.write().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arc::new(project));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&definitions_path)(e)),
        }
        tracing::info!(
            modules = registry.modules.read().map(|m| m.len()).unwrap_or(0),
            definitions = registry.project().is_some(),
            dir = %registry.dir.display(),
            "registry opened"
        );
        Ok(registry)
    }

    /// The engine modules are loaded into.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Stores `bytes` as module `name@version` after the engine validates and compiles
    /// them. The same bytes again are [`Upload::Unchanged`]; other bytes are a
    /// [`Error::Conflict`].
    pub fn upload(&self, name: &str, version: &str, bytes: &[u8]) -> Result<(Upload, ModuleInfo)> {
        check_module_name(name).map_err(Error::InvalidName)?;
        check_version(version).map_err(Error::InvalidName)?;
        let reference = ModuleRef {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let sha256 = skewless_engine::sha256_hex(bytes);
        if let Some(existing) = self.loaded(&reference) {
            return if existing.info.sha256 == sha256 {
                Ok((Upload::Unchanged, existing.info.clone()))
            } else {
                Err(Error::Conflict {
                    module: reference,
                    existing: existing.info.sha256.clone(),
                    uploaded: sha256,
                })
            };
        }
        let transform = self
            .engine
            .load(&reference.to_string(), bytes)
            .map_err(Error::Module)?;
        let info = ModuleInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            sha256,
            size: bytes.len() as u64,
            signature: transform.signature().clone(),
            uploaded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let path = module_path(&self.dir, name, version);
        write_atomic(&path, bytes).map_err(io(&path))?;
        let mut index: Vec<ModuleInfo> = self.modules().into_iter().collect();
        index.push(info.clone());
        self.write_json(INDEX, &index)?;
        self.modules
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                reference,
                Arc::new(Loaded {
                    info: info.clone(),
                    transform,
                }),
            );
        tracing::info!(module = %info.reference(), sha256 = %info.sha256, "module stored");
        Ok((Upload::Created, info))
    }

    fn loaded(&self, reference: &ModuleRef) -> Option<Arc<Loaded>> {
        self.modules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(reference)
            .cloned()
    }

    /// Every stored module version, by name then version.
    pub fn modules(&self) -> Vec<ModuleInfo> {
        self.modules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|l| l.info.clone())
            .collect()
    }

    /// The stored bytes of a module version, or `None` if it was never uploaded.
    pub fn module_bytes(&self, reference: &ModuleRef) -> Result<Option<Vec<u8>>> {
        if self.loaded(reference).is_none() {
            return Ok(None);
        }
        let path = module_path(&self.dir, &reference.name, &reference.version);
        std::fs::read(&path).map(Some).map_err(io(&path))
    }

    /// The loaded transform of a module version.
    pub fn transform(&self, reference: &ModuleRef) -> Option<Transform> {
        self.loaded(reference).map(|l| l.transform.clone())
    }

    /// Parses and validates definitions against the stored modules, changing nothing.
    pub fn validate(&self, yaml: &str) -> Result<Project, DefinitionErrors> {
        let modules = self.modules.read().unwrap_or_else(|e| e.into_inner());
        let catalog = |m: &ModuleRef| modules.get(m).map(|l| l.info.signature.clone());
        Definitions::validate_yaml(yaml, &catalog)
    }

    /// Validates `yaml`, lets `prepare` build what the caller needs from the project
    /// (a refusal changes nothing), persists the definitions, and makes them current.
    /// Applies are serialized.
    pub fn apply<T, E>(
        &self,
        yaml: &str,
        prepare: impl FnOnce(&Arc<Project>) -> Result<T, E>,
    ) -> Result<Result<(Arc<Project>, T), E>> {
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let project = Arc::new(self.validate(yaml)?);
        let prepared = match prepare(&project) {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(e)),
        };
        let path = self.dir.join(DEFINITIONS);
        let yaml = project
            .definitions()
            .to_yaml()
            .map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&path, yaml.as_bytes()).map_err(io(&path))?;
        *self.project.write().unwrap_or_else(|e| e.into_inner()) = Some(project.clone());
        tracing::info!(project = %project.definitions().project, "definitions applied");
        Ok(Ok((project, prepared)))
    }

    /// The applied definitions, if any.
    pub fn project(&self) -> Option<Arc<Project>> {
        self.project
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads a JSON document the registry keeps beside the definitions (such as
    /// materialization watermarks); `None` when it was never written.
    pub fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The materialization watermarks: per feature view, the end of the last window
    /// loaded into the online store.
    pub fn watermarks(&self) -> Result<BTreeMap<String, Watermark>> {
        Ok(self.read_json(WATERMARKS)?.unwrap_or_default())
    }

    /// Records that `view` (whose online schema has `fingerprint`) was materialized up to
    /// `end`. The watermark only moves forward, unless the schema changed (the store
    /// dropped the view's rows), in which case it starts again from `end`.
    pub fn advance_watermark(&self, view: &str, fingerprint: u64, end: i64) -> Result<()> {
        let _guard = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let mut marks = self.watermarks()?;
        let mark = marks.entry(view.to_owned()).or_insert(Watermark {
            end_micros: end,
            fingerprint,
        });
        if mark.fingerprint != fingerprint {
            *mark = Watermark {
                end_micros: end,
                fingerprint,
            };
        }
        mark.end_micros = mark.end_micros.max(end);
        self.write_json(WATERMARKS, &marks)
    }

    /// Replaces a JSON document the registry keeps, atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let path = self.dir.join(name);
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &bytes).map_err(io(&path))
    }
}

fn module_path(dir: &Path, name: &str, version: &str) -> PathBuf {
    dir.join("modules")
        .join(name)
        .join(format!("{version}.wasm"))
}
