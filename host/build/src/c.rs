//! C projects: wit-bindgen C bindings, clang for wasm32-wasi against wasi-libc, and the
//! WASI preview1 adapter to make the module a component.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::*;

pub(super) fn build_c(path: &Path, stage: &Path, out: &Path) -> Result<()> {
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
pub(super) fn generate_c_bindings(dir: &Path) -> Result<()> {
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
