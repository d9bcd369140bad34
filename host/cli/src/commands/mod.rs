//! One module per command that does more than dispatch.

pub(crate) mod backfill;
pub(crate) mod build;
pub(crate) mod materialize;
pub(crate) mod quickstart;
pub(crate) mod remote;
pub(crate) mod serve;
pub(crate) mod verify;

use std::path::Path;

use anyhow::Result;

use crate::EngineArgs;

/// `skewless inspect`: a component's declared signature and imports.
pub(crate) fn inspect(module: &Path, engine: &EngineArgs) -> Result<()> {
    let engine = engine.engine()?;
    let t = engine.load_file(module)?;
    println!("transform: {}", t.label());
    println!("sha256:    {}", t.sha256());
    println!("inputs:");
    for c in &t.signature().inputs {
        println!("  {c}");
    }
    println!("outputs:");
    for c in &t.signature().outputs {
        println!("  {c}");
    }
    let imports = t.imports();
    if imports.is_empty() {
        println!("imports:   none");
    } else {
        // Load refused anything else; the sandbox links these to nothing real.
        println!("imports (WASI 0.2, sandboxed):");
        for name in imports {
            println!("  {name}");
        }
    }
    Ok(())
}
