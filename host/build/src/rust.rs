//! Rust projects: cargo for wasm32-wasip2.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow};

use super::*;

pub(super) fn build_rust(path: &Path, out: &Path) -> Result<()> {
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
