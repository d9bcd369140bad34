//! `skewless upload` and `skewless apply`: a module version or definitions sent to a
//! running server.

use std::path::Path;

use anyhow::{Context, Result};

use crate::{ServerArgs, client};

/// Uploads the component at `module` as `name@version`.
pub(crate) fn upload(module: &Path, name: &str, version: &str, server: &ServerArgs) -> Result<()> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let url = format!(
        "{}/v1/transforms/{name}/{version}",
        server.server.trim_end_matches('/')
    );
    let (status, body) = client::send(
        "PUT",
        &url,
        server.token.as_deref(),
        "application/wasm",
        bytes,
    )?;
    let info: serde_json::Value = serde_json::from_str(&body)?;
    let verb = if status == 201 {
        "uploaded"
    } else {
        "already present (same bytes)"
    };
    println!(
        "{name}@{version} {verb}: sha256 {}",
        info["sha256"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// Applies the definitions file at `definitions`.
pub(crate) fn apply(definitions: &Path, server: &ServerArgs) -> Result<()> {
    let yaml =
        std::fs::read(definitions).with_context(|| format!("reading {}", definitions.display()))?;
    let url = format!("{}/v1/definitions", server.server.trim_end_matches('/'));
    let (_, body) = client::send(
        "PUT",
        &url,
        server.token.as_deref(),
        "application/yaml",
        yaml,
    )?;
    let summary: serde_json::Value = serde_json::from_str(&body)?;
    println!(
        "applied project `{}`: feature services {}",
        summary["project"].as_str().unwrap_or("?"),
        summary["feature_services"]
    );
    Ok(())
}
