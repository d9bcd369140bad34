//! Python projects: componentize-py, installed once into the tools directory when it is
//! not on PATH.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::*;

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
pub(super) fn install_once(
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

pub(super) fn build_python(
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
