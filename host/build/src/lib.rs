//! Builds a transform project in any supported language into a Skewless component: the
//! work behind `skewless build PATH`, and how the test artifacts are built.
//!
//! The language is told by the project's manifest: `Cargo.toml` (Rust, cargo for
//! wasm32-wasip2), `pyproject.toml` (Python, componentize-py), `package.json` (JavaScript,
//! componentize-js) or a `Makefile` beside C sources (C, clang for wasm32-wasi against
//! wasi-libc). The WIT contract and the Python, JavaScript and C SDKs are built into this
//! crate, so a project needs nothing from this repository. Generated and staged files go
//! to a stage directory (`PATH/target/skewless/` by default): the project's own
//! directory is only read.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

/// The WIT contract every component is built against.
const WIT: &str = include_str!("../../../wit/transform.wit");
/// The world of that contract a transform implements.
const WORLD: &str = "feature-transform";

/// The componentize-py version `build` installs when none is found.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The componentize-js version, pinned by the embedded package.json and lock file.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "skewless/__init__.py",
        include_str!("../../../sdk/python/skewless/__init__.py"),
    ),
    (
        "skewless/ieee.py",
        include_str!("../../../sdk/python/skewless/ieee.py"),
    ),
    (
        "skewless/_guest.py",
        include_str!("../../../sdk/python/skewless/_guest.py"),
    ),
];
const JS_SDK: &str = include_str!("../../../sdk/js/skewless.js");
const JS_TOOL: &[(&str, &str)] = &[
    ("build.mjs", include_str!("../../../sdk/js/build.mjs")),
    ("package.json", include_str!("../../../sdk/js/package.json")),
    (
        "package-lock.json",
        include_str!("../../../sdk/js/package-lock.json"),
    ),
];
const C_SDK: &[(&str, &str)] = &[
    ("skewless.h", include_str!("../../../sdk/c/skewless.h")),
    ("skewless.c", include_str!("../../../sdk/c/skewless.c")),
    ("skewless.mk", include_str!("../../../sdk/c/skewless.mk")),
];

/// The languages `build` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A cargo crate (`Cargo.toml`) built for wasm32-wasip2 with the Rust SDK.
    Rust,
    /// A Python project (`pyproject.toml`) built with componentize-py.
    Python,
    /// A JavaScript project (`package.json`) built with componentize-js.
    Javascript,
    /// C sources with a `Makefile`, built with clang for wasm32-wasi.
    C,
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rust => "Rust",
            Self::Python => "Python",
            Self::Javascript => "JavaScript",
            Self::C => "C",
        })
    }
}

impl std::str::FromStr for Language {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "rust" => Ok(Self::Rust),
            "python" => Ok(Self::Python),
            "javascript" | "js" => Ok(Self::Javascript),
            "c" => Ok(Self::C),
            _ => Err(format!(
                "unknown language `{s}`: expected rust, python, javascript or c"
            )),
        }
    }
}

/// How to build: everything has a default.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The language [default: told by the manifest, see [`detect`]].
    pub language: Option<Language>,
    /// Where to write the component [default: STAGE/NAME.wasm].
    pub out: Option<PathBuf>,
    /// Where generated and staged files go [default: PATH/target/skewless].
    pub stage: Option<PathBuf>,
    /// Where missing build tools are installed (componentize-py, componentize-js)
    /// [default: $XDG_CACHE_HOME/skewless/tools, or ~/.cache/skewless/tools].
    pub tools_dir: Option<PathBuf>,
}

/// A built component.
#[derive(Debug, Clone)]
pub struct Built {
    /// Where the component is.
    pub path: PathBuf,
    /// The project's language.
    pub language: Language,
    /// The project's name (crate, Python module, npm package, or directory).
    pub name: String,
}

/// Tells the language of the project at `path` from its manifest.
pub fn detect(path: &Path) -> Result<Language> {
    if !path.is_dir() {
        bail!("{} is not a directory", path.display());
    }
    let mut found = Vec::new();
    if path.join("Cargo.toml").is_file() {
        found.push(Language::Rust);
    }
    if path.join("pyproject.toml").is_file() {
        found.push(Language::Python);
    }
    if path.join("package.json").is_file() {
        found.push(Language::Javascript);
    }
    if path.join("Makefile").is_file() && !c_sources(path)?.is_empty() {
        found.push(Language::C);
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!(
            "cannot tell the language of {}: expected Cargo.toml (Rust), pyproject.toml \
             (Python), package.json (JavaScript), or a Makefile beside .c files (C)",
            path.display()
        ),
        many => bail!(
            "{} holds manifests of several languages ({}); choose one with --language",
            path.display(),
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn c_sources(path: &Path) -> Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "c") {
            sources.push(p);
        }
    }
    Ok(sources)
}

/// Builds the project at `path` into a component.
pub fn build(path: &Path, options: &BuildOptions) -> Result<Built> {
    let language = match options.language {
        Some(l) => l,
        None => detect(path)?,
    };
    let name = project_name(path, language)?;
    let stage = options
        .stage
        .clone()
        .unwrap_or_else(|| path.join("target").join("skewless"));
    std::fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
    let out = match &options.out {
        Some(out) => out.clone(),
        None => stage.join(format!("{}.wasm", name.replace('-', "_"))),
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let wit = stage.join("wit");
    write_files(&wit, &[("transform.wit", WIT)])?;
    let tools = options.tools_dir.clone().unwrap_or_else(default_tools_dir);

    tracing::info!(project = %path.display(), %language, name, "building");
    let started = Instant::now();
    match language {
        Language::Rust => build_rust(path, &out)?,
        Language::Python => build_python(path, &name, &stage, &wit, &tools, &out)?,
        Language::Javascript => build_js(path, &stage, &wit, &tools, &out)?,
        Language::C => build_c(path, &stage, &out)?,
    }
    tracing::info!(
        component = %out.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "built"
    );
    Ok(Built {
        path: out,
        language,
        name,
    })
}

/// Skewless's cache directory: `$XDG_CACHE_HOME/skewless`, or `~/.cache/skewless`;
/// `None` when neither variable is set. Compiled components and build tools live in it.
pub fn cache_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|cache| cache.join("skewless"))
}

fn default_tools_dir() -> PathBuf {
    cache_home()
        .unwrap_or_else(|| std::env::temp_dir().join("skewless"))
        .join("tools")
}

/// The project's name: the crate, Python module, npm package or directory name.
fn project_name(path: &Path, language: Language) -> Result<String> {
    let dir_name = || {
        std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "transform".into())
    };
    Ok(match language {
        Language::Rust => {
            toml_value(&path.join("Cargo.toml"), &["package", "name"])?.unwrap_or_else(dir_name)
        }
        Language::Python => python_module(path)?,
        Language::Javascript => {
            let json = read_json(&path.join("package.json"))?;
            json.get("name")
                .and_then(|n| n.as_str())
                .map(|n| n.rsplit('/').next().unwrap_or(n).to_owned())
                .unwrap_or_else(dir_name)
        }
        Language::C => dir_name(),
    })
}

fn toml_value(file: &Path, keys: &[&str]) -> Result<Option<String>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let value: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", file.display()))?;
    let mut at = &toml::Value::Table(value);
    for key in keys {
        match at.get(key) {
            Some(v) => at = v,
            None => return Ok(None),
        }
    }
    match at.as_str() {
        Some(s) => Ok(Some(s.to_owned())),
        None => bail!("{}: {} must be a string", file.display(), keys.join(".")),
    }
}

fn read_json(file: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))
}

/// The module componentize-py builds: `[tool.skewless] module`, or the project name with
/// `-` as `_`.
fn python_module(path: &Path) -> Result<String> {
    let pyproject = path.join("pyproject.toml");
    let module = match toml_value(&pyproject, &["tool", "skewless", "module"])? {
        Some(m) => m,
        None => toml_value(&pyproject, &["project", "name"])?
            .map(|n| n.replace('-', "_"))
            .ok_or_else(|| {
                anyhow!(
                    "{}: set [tool.skewless] module (the module that declares the transform)",
                    pyproject.display()
                )
            })?,
    };
    if !path.join(format!("{module}.py")).is_file()
        && !path.join(&module).join("__init__.py").is_file()
    {
        bail!(
            "{}: the module `{module}` is neither {module}.py nor {module}/__init__.py in {}",
            pyproject.display(),
            path.display()
        );
    }
    Ok(module)
}

fn write_files(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    for (name, text) in files {
        let file = dir.join(name);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        // Rewrite only what changed, so that tools that cache by mtime stay warm.
        if std::fs::read_to_string(&file).ok().as_deref() != Some(*text) {
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        }
    }
    Ok(())
}

/// Runs `command`, failing with its output when it fails; `what` names it in errors.
fn run_tool(command: &mut Command, what: &str) -> Result<String> {
    tracing::debug!(?command, "running");
    let output = command.stdin(Stdio::null()).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "{what} is not installed (could not run {:?})",
                command.get_program()
            )
        } else {
            anyhow!("running {what}: {e}")
        }
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            tail(&stdout, 40),
            tail(&stderr, 40)
        );
    }
    Ok(stdout)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].iter().map(|l| format!("{l}\n")).collect()
}

/// Makes `to` a fresh copy of the files under `from`, skipping the directories named in
/// `skip`.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("removing {}", to.display()))?;
    }
    copy_files(from, to, skip)
}

fn copy_files(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !skip.iter().any(|s| name == *s) {
                copy_files(&entry.path(), &to.join(&name), skip)?;
            }
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

mod c;
mod javascript;
mod python;
mod rust;

use c::build_c;
pub use c::componentize_core;
use javascript::build_js;
use python::{build_python, install_once};
use rust::build_rust;

#[cfg(test)]
mod tests;
