//! Reads the wasmtime version from the workspace's pin, the one place it is written, so
//! the compile-cache key and `skewless --version` cannot drift from what is linked; and
//! checks that every crate of the wasmtime release train is pinned to the same version.

use std::path::Path;

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("reading {}: {e}", manifest.display()));
    let pin = |name: &str| -> Option<String> {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} = ")))?;
        let start = line.find("\"=")? + 2;
        let end = start + line[start..].find('"')?;
        Some(line[start..end].to_owned())
    };
    let version = pin("wasmtime")
        .expect("the workspace pins wasmtime as `wasmtime = { version = \"=X.Y.Z\", ... }`");
    for train in [
        "wasmtime-wasi",
        "wasmtime-wasi-io",
        "wasi-preview1-component-adapter-provider",
    ] {
        let other = pin(train).unwrap_or_else(|| panic!("the workspace pins {train} with `=`"));
        assert_eq!(
            other, version,
            "{train} is pinned to {other} but wasmtime to {version}: the release train moves together"
        );
    }
    println!("cargo:rustc-env=SKEWLESS_WASMTIME_VERSION={version}");
}
