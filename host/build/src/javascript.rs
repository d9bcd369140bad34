//! JavaScript projects: componentize-js through the SDK's build script, installed once
//! from its lock file.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use super::*;

pub(super) fn build_js(
    path: &Path,
    stage: &Path,
    wit: &Path,
    tools: &Path,
    out: &Path,
) -> Result<()> {
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
