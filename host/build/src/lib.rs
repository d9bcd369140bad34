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

fn build_rust(path: &Path, out: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let stdout = run_tool(
        Command::new(cargo)
            .arg("build")
            .arg("--manifest-path")
            .arg(path.join("Cargo.toml"))
            .args([
                "--target",
                "wasm32-wasip2",
                "--release",
                "--message-format=json-render-diagnostics",
            ]),
        "cargo build --target wasm32-wasip2 (if the target is missing: rustup target add wasm32-wasip2)",
    )?;
    let mut built = None;
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if !is_cdylib {
            continue;
        }
        if let Some(files) = message["filenames"].as_array() {
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(".wasm") {
                    built = Some(PathBuf::from(f));
                }
            }
        }
    }
    let built = built.ok_or_else(|| {
        anyhow!(
            "cargo built no .wasm for {}: the crate needs `crate-type = [\"cdylib\"]` under [lib]",
            path.display()
        )
    })?;
    std::fs::copy(&built, out)
        .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    Ok(())
}

/// How to run componentize-py: the one on PATH, or one installed into the tools dir.
fn componentize_py(tools: &Path) -> Result<Command> {
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let probe = |pythonpath: Option<&Path>| {
        let mut c = Command::new(&python);
        c.args(["-c", "import componentize_py"]);
        if let Some(p) = pythonpath {
            c.env("PYTHONPATH", p);
        }
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let runner = |pythonpath: Option<&Path>| {
        let mut c = Command::new(&python);
        c.args([
            "-c",
            "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
        ]);
        if let Some(p) = pythonpath {
            c.env("PYTHONPATH", p);
        }
        c
    };
    if probe(None) {
        return Ok(runner(None));
    }
    let dir = tools.join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}"));
    install_once(
        &dir,
        |dir| probe(Some(dir)),
        |scratch| {
            tracing::info!(
                into = %dir.display(),
                "componentize-py is not installed: installing componentize-py=={COMPONENTIZE_PY_VERSION} (once)"
            );
            run_tool(
                Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .arg("--target")
                    .arg(scratch)
                    .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}")),
                &format!(
                    "pip install componentize-py=={COMPONENTIZE_PY_VERSION} (install it yourself \
                     with `python3 -m pip install componentize-py=={COMPONENTIZE_PY_VERSION}`)"
                ),
            )
            .map(drop)
        },
    )?;
    Ok(runner(Some(&dir)))
}

/// Installs a tool into `dir` unless `installed(dir)` says it is there. `install` fills a
/// scratch directory beside `dir`, which is then renamed to `dir`, so that `dir` is never
/// half installed. A lock file beside it makes concurrent builds install once: the others
/// wait, then find it installed.
fn install_once(
    dir: &Path,
    installed: impl Fn(&Path) -> bool,
    install: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if installed(dir) {
        return Ok(());
    }
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        bail!("{}: not a tool directory", dir.display());
    };
    let name = name.to_string_lossy();
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let lock_path = parent.join(format!(".{name}.lock"));
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if installed(dir) {
        return Ok(());
    }
    let scratch = parent.join(format!(".{name}.partial"));
    let fresh = |path: &Path| match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    };
    fresh(&scratch)?;
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    if let Err(e) = install(&scratch) {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(e);
    }
    // What is there is broken (an install interrupted before this scheme): replace it.
    fresh(dir)?;
    std::fs::rename(&scratch, dir)
        .with_context(|| format!("moving {} to {}", scratch.display(), dir.display()))
}

fn build_python(
    path: &Path,
    module: &str,
    stage: &Path,
    wit: &Path,
    tools: &Path,
    out: &Path,
) -> Result<()> {
    let sdk = stage.join("python");
    write_files(&sdk, PYTHON_SDK)?;
    // The entry module: imports the author's module (which declares the transform with
    // the decorator) and exports the SDK's glue as the `transformer` interface.
    write_files(
        &sdk,
        &[(
            "skewless_entry.py",
            &format!(
                "import {module}  # noqa: F401\nfrom skewless._guest import Transformer  # noqa: F401\n"
            ),
        )],
    )?;
    // A copy of the project: componentize-py writes bytecode caches beside the sources.
    let sources = stage.join("python-src");
    copy_tree(path, &sources, &["target", "__pycache__", ".git", ".venv"])?;
    let mut command = componentize_py(tools)?;
    // componentize-py is Rust inside: without this, an error in the author's module comes
    // wrapped in a long native backtrace that hides the Python traceback.
    command
        .env("RUST_BACKTRACE", "0")
        .arg("-d")
        .arg(wit)
        .args(["-w", WORLD, "componentize"])
        .arg("-p")
        .arg(&sdk)
        .arg("-p")
        .arg(&sources)
        .arg("skewless_entry")
        .arg("-o")
        .arg(out);
    run_tool(&mut command, "componentize-py")?;
    Ok(())
}

fn build_js(path: &Path, stage: &Path, wit: &Path, tools: &Path, out: &Path) -> Result<()> {
    let package = read_json(&path.join("package.json"))?;
    let main = package
        .get("main")
        .and_then(|m| m.as_str())
        .unwrap_or("index.js");
    // Stage the sources beside the SDK so that `import ... from "./skewless.js"` resolves.
    let sources = stage.join("js");
    copy_tree(path, &sources, &["target", "node_modules", ".git"])?;
    write_files(&sources, &[("skewless.js", JS_SDK)])?;
    let entry = sources.join(main);
    if !entry.is_file() {
        bail!(
            "{}: the entry `{main}` (package.json \"main\") does not exist",
            path.display()
        );
    }

    let tool = tools.join(format!("componentize-js-{COMPONENTIZE_JS_VERSION}"));
    install_once(
        &tool,
        |dir| {
            dir.join("node_modules/@bytecodealliance/componentize-js/package.json")
                .is_file()
        },
        |scratch| {
            tracing::info!(
                into = %tool.display(),
                "componentize-js is not installed: npm ci (componentize-js {COMPONENTIZE_JS_VERSION}, once)"
            );
            write_files(scratch, JS_TOOL)?;
            run_tool(
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(scratch),
                "npm (Node.js 18 or newer with npm is needed to build JavaScript transforms)",
            )
            .map(drop)
        },
    )?;
    // The build script may be newer than the install (rewritten only if it changed).
    write_files(&tool, JS_TOOL)?;
    run_tool(
        Command::new("node")
            .arg(tool.join("build.mjs"))
            .arg("--wit")
            .arg(wit)
            .arg("--entry")
            .arg(&entry)
            .arg("--out")
            .arg(out),
        "node (Node.js 18 or newer, which runs componentize-js)",
    )?;
    Ok(())
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

fn build_c(path: &Path, stage: &Path, out: &Path) -> Result<()> {
    let sdk = stage.join("c");
    write_files(&sdk, C_SDK)?;
    generate_c_bindings(&sdk)?;
    let core = stage.join("transform.core.wasm");
    let sdk_abs = std::fs::canonicalize(&sdk)?;
    let core_abs = std::fs::canonicalize(stage)?.join("transform.core.wasm");
    run_tool(
        Command::new("make")
            .arg("-C")
            .arg(path)
            .arg(format!("SKEWLESS_SDK={}", sdk_abs.display()))
            .arg(format!("OUT={}", core_abs.display())),
        "make (C transforms need make and clang with the wasm32-wasi target and wasi-libc; \
         on Debian: apt-get install make clang lld wasi-libc libclang-rt-14-dev-wasm32)",
    )?;
    let module = std::fs::read(&core).with_context(|| {
        format!(
            "make succeeded but wrote no {}: the Makefile must build $(OUT)",
            core.display()
        )
    })?;
    let component = componentize_core(&module)?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Writes the `wit-bindgen c` bindings of the contract into `dir`.
fn generate_c_bindings(dir: &Path) -> Result<()> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_str("transform.wit", WIT)
        .context("parsing the WIT contract")?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("generating the C bindings")?;
    for (name, bytes) in files.iter() {
        let file = dir.join(name);
        if std::fs::read(&file).ok().as_deref() != Some(bytes) {
            std::fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
        }
    }
    Ok(())
}

/// Wraps a core module built against wasi-libc into a component: the WASI preview 1
/// calls it makes (if any) go through the reactor adapter to WASI 0.2.
pub fn componentize_core(module: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = wit_component::ComponentEncoder::default();
    encoder
        .module(module)
        .context("the core module has no Skewless component type (was it linked with feature_transform_component_type.o?)")?
        .validate(true);
    encoder.adapter(
        "wasi_snapshot_preview1",
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    )?;
    encoder.encode().context("encoding the component")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn detects_the_language_by_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let error = detect(p).unwrap_err().to_string();
        assert!(error.contains("cannot tell the language"), "{error}");

        std::fs::write(p.join("Makefile"), "all:\n").unwrap();
        assert!(
            detect(p).is_err(),
            "a Makefile without C sources is not a C project"
        );
        std::fs::write(p.join("t.c"), "").unwrap();
        assert_eq!(detect(p).unwrap(), Language::C);

        std::fs::write(p.join("package.json"), "{}").unwrap();
        let error = detect(p).unwrap_err().to_string();
        assert!(
            error.contains("several languages (JavaScript, C)"),
            "{error}"
        );
        std::fs::remove_file(p.join("Makefile")).unwrap();
        assert_eq!(detect(p).unwrap(), Language::Javascript);

        let examples = root().join("example-transforms");
        assert_eq!(
            detect(&examples.join("fraud_risk")).unwrap(),
            Language::Rust
        );
        assert_eq!(
            detect(&examples.join("python/fraud_risk")).unwrap(),
            Language::Python
        );
        assert_eq!(
            detect(&examples.join("js/fraud_risk")).unwrap(),
            Language::Javascript
        );
        assert_eq!(detect(&examples.join("c/fraud_risk")).unwrap(), Language::C);
        assert!(detect(&p.join("missing")).is_err());
    }

    #[test]
    fn concurrent_builds_install_a_tool_once_and_never_half() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let tools = tempfile::tempdir().unwrap();
        let dir = tools.path().join("tool-1.0");
        let installed = |d: &Path| d.join("done").is_file();
        let installs = AtomicUsize::new(0);
        let install = |scratch: &Path| {
            installs.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(200));
            std::fs::write(scratch.join("done"), "").map_err(Into::into)
        };
        std::thread::scope(|s| {
            let builds: Vec<_> = (0..4)
                .map(|_| s.spawn(|| install_once(&dir, installed, install)))
                .collect();
            for build in builds {
                build.join().unwrap().unwrap();
            }
        });
        assert_eq!(installs.load(Ordering::SeqCst), 1);
        assert!(installed(&dir));

        // A failed install leaves nothing behind; a half-installed directory is replaced.
        let other = tools.path().join("other-2.0");
        let failed = install_once(&other, installed, |scratch| {
            std::fs::write(scratch.join("half"), "")?;
            bail!("network down")
        });
        assert_eq!(failed.unwrap_err().to_string(), "network down");
        assert!(!other.exists());
        assert!(!tools.path().join(".other-2.0.partial").exists());
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("half"), "").unwrap();
        install_once(&other, installed, install).unwrap();
        assert!(installed(&other) && !other.join("half").exists());
    }

    #[test]
    fn languages_parse_from_their_names() {
        assert_eq!("Python".parse::<Language>(), Ok(Language::Python));
        assert_eq!("js".parse::<Language>(), Ok(Language::Javascript));
        assert!(
            "cobol"
                .parse::<Language>()
                .unwrap_err()
                .contains("rust, python")
        );
    }

    #[test]
    fn the_python_module_comes_from_pyproject() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join("pyproject.toml"),
            "[project]\nname = \"my-feature\"\n",
        )
        .unwrap();
        std::fs::write(p.join("my_feature.py"), "").unwrap();
        assert_eq!(python_module(p).unwrap(), "my_feature");
        std::fs::write(
            p.join("pyproject.toml"),
            "[project]\nname = \"x\"\n[tool.skewless]\nmodule = \"other\"\n",
        )
        .unwrap();
        let error = python_module(p).unwrap_err().to_string();
        assert!(error.contains("the module `other` is neither"), "{error}");
        std::fs::write(p.join("pyproject.toml"), "[project\n").unwrap();
        let error = format!("{:#}", python_module(p).unwrap_err());
        assert!(error.contains("is not valid TOML"), "{error}");
    }

    /// The pinned tool versions agree everywhere they are written down.
    #[test]
    fn pinned_versions_agree() {
        let read = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
        assert!(
            read("scripts/test").contains(&format!(
                "COMPONENTIZE_PY_VERSION={COMPONENTIZE_PY_VERSION}"
            )),
            "scripts/test installs componentize-py {COMPONENTIZE_PY_VERSION}"
        );
        assert!(
            read("sdk/python/pyproject.toml")
                .contains(&format!("componentize-py=={COMPONENTIZE_PY_VERSION}")),
            "sdk/python/pyproject.toml pins componentize-py {COMPONENTIZE_PY_VERSION}"
        );
        let package: serde_json::Value = serde_json::from_str(JS_TOOL[1].1).unwrap();
        assert_eq!(
            package["dependencies"]["@bytecodealliance/componentize-js"],
            COMPONENTIZE_JS_VERSION
        );
        let lock: serde_json::Value = serde_json::from_str(JS_TOOL[2].1).unwrap();
        assert_eq!(
            lock["packages"]["node_modules/@bytecodealliance/componentize-js"]["version"],
            COMPONENTIZE_JS_VERSION
        );
    }

    #[test]
    fn c_bindings_are_generated_from_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        generate_c_bindings(dir.path()).unwrap();
        let header = std::fs::read_to_string(dir.path().join("feature_transform.h")).unwrap();
        assert!(header.contains("exports_skewless_transform_transformer_transform("));
        // skewless.h maps its dtypes onto these constants.
        for dtype in [
            "BOOLEAN",
            "INT64",
            "FLOAT64",
            "UTF8",
            "TIMESTAMP",
            "FLOAT32_LIST",
        ] {
            assert!(
                header.contains(&format!(
                    "EXPORTS_SKEWLESS_TRANSFORM_TRANSFORMER_DTYPE_{dtype} "
                )),
                "{dtype}"
            );
        }
        assert!(
            dir.path()
                .join("feature_transform_component_type.o")
                .is_file()
        );
    }
}
