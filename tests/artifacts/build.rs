//! Builds the guest components tests and benches load, and writes their paths.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant, package, manifest relative to the repository root).
const GUESTS: &[(&str, &str, &str)] = &[
    ("FRAUD_RISK", "fraud-risk", ROOT),
    ("GEO_DISTANCE", "geo-distance", ROOT),
    ("MERCHANT_CATEGORY", "merchant-category", ROOT),
    ("BAD_SIGNATURE", "guest-bad-signature", FIXTURES),
    ("BENCH_F64", "guest-bench-f64", FIXTURES),
    ("BENCH_STRING", "guest-bench-string", FIXTURES),
    ("DETERMINISM", "guest-determinism", FIXTURES),
    ("ECHO", "guest-echo", FIXTURES),
    ("EXTRA_IMPORT", "guest-extra-import", FIXTURES),
    ("HOSTILE", "guest-hostile", FIXTURES),
    ("MATH_PROBE", "guest-math-probe", FIXTURES),
    ("MISBEHAVE", "guest-misbehave", FIXTURES),
    ("OTHER_WORLD", "guest-other-world", FIXTURES),
    ("UNKNOWN_DTYPE", "guest-unknown-dtype", FIXTURES),
];
/// (constant, project relative to the repository root): the examples and test fixtures
/// in other languages, built by skewless-build as `skewless build` would.
const POLYGLOT: &[(&str, &str)] = &[
    ("FRAUD_RISK_C", "example-transforms/c/fraud_risk"),
    ("FRAUD_RISK_PY", "example-transforms/python/fraud_risk"),
    ("FRAUD_RISK_JS", "example-transforms/js/fraud_risk"),
    (
        "MERCHANT_TEXT_PY",
        "example-transforms/python/merchant_text",
    ),
    ("MATH_PROBE_C", "tests/polyglot/math_probe/c"),
    ("MATH_PROBE_PY", "tests/polyglot/math_probe/python"),
    ("MATH_PROBE_JS", "tests/polyglot/math_probe/js"),
];
const ROOT: &str = "Cargo.toml";
const FIXTURES: &str = "tests/guests/Cargo.toml";

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    for watched in [
        "wit",
        "sdk",
        "example-transforms",
        "tests/guests",
        "tests/polyglot",
        ".cargo",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=SKEWLESS_GUEST_TARGET_DIR");
    let target_dir = env::var_os("SKEWLESS_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/guests"));

    check_target_installed();
    for manifest in [ROOT, FIXTURES] {
        let packages: Vec<&str> = GUESTS
            .iter()
            .filter(|g| g.2 == manifest)
            .map(|g| g.1)
            .collect();
        build(&root, &root.join(manifest), &target_dir, &packages);
    }

    let mut out = String::new();
    for (constant, package, _) in GUESTS {
        let file = target_dir
            .join(TARGET)
            .join("guest")
            .join(format!("{}.wasm", package.replace('-', "_")));
        assert!(file.exists(), "{} was not built", file.display());
        write_constant(&mut out, constant, package, &file);
    }
    for (constant, project) in POLYGLOT {
        let file = build_polyglot(&root, project, &target_dir.join("polyglot"));
        write_constant(&mut out, constant, project, &file);
    }
    let dest = PathBuf::from(env::var("OUT_DIR").unwrap()).join("artifacts.rs");
    std::fs::write(dest, out).unwrap();
}

/// `pub const CONSTANT: &str = "FILE";`, documented as the component `what`.
fn write_constant(out: &mut String, constant: &str, what: &str, file: &Path) {
    writeln!(out, "/// The `{what}` component.").unwrap();
    writeln!(
        out,
        "pub const {constant}: &str = {:?};",
        file.display().to_string()
    )
    .unwrap();
}

fn check_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("running rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let lib = Path::new(&sysroot).join("lib/rustlib").join(TARGET);
    if !lib.exists() {
        panic!(
            "the {TARGET} target is not installed; run `rustup target add {TARGET}` \
             (scripts/test does it for you)"
        );
    }
}

fn build(root: &Path, manifest: &Path, target_dir: &Path, packages: &[&str]) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["--target", TARGET, "--profile", "guest", "--quiet"])
        .arg("--target-dir")
        .arg(target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    // The outer build's settings are for the host, not for guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build guests");
    assert!(status.success(), "building guests {packages:?} failed");
}

/// Builds `{project}` into `dir`, unless the component there was built
/// from the same sources (the project, the SDKs and the WIT contract), which a digest
/// beside it records: a Python or JavaScript build takes many seconds.
fn build_polyglot(root: &Path, project: &str, dir: &Path) -> PathBuf {
    let source = root.join(project);
    let name = project
        .trim_start_matches("example-transforms/")
        .replace('/', "_");
    let out = dir.join(format!("{name}.wasm"));
    let digest_file = dir.join(format!("{name}.inputs"));
    let mut digest = Fnv::default();
    let sdks = ["sdk/python", "sdk/js", "sdk/c", "wit"].map(|d| root.join(d));
    for tree in std::iter::once(source.clone()).chain(sdks) {
        digest.tree(&tree);
    }
    let digest = format!("{:016x}", digest.0);
    if out.exists() && std::fs::read_to_string(&digest_file).ok().as_deref() == Some(&digest) {
        return out;
    }
    let options = skewless_build::BuildOptions {
        out: Some(out.clone()),
        stage: Some(dir.join("stage").join(&name)),
        ..Default::default()
    };
    if let Err(e) = skewless_build::build(&source, &options) {
        panic!(
            "building {project} failed (scripts/test installs the \
             toolchains: componentize-py, Node.js with npm, clang with wasi-libc): {e:#}"
        );
    }
    std::fs::write(&digest_file, digest).unwrap();
    out
}

/// FNV-1a over file names and contents, in name order; skips build outputs.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn tree(&mut self, dir: &Path) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if ["target", "node_modules", "__pycache__"].contains(&name.as_str()) {
                continue;
            }
            self.bytes(name.as_bytes());
            if path.is_dir() {
                self.tree(&path);
            } else {
                self.bytes(&std::fs::read(&path).unwrap());
            }
        }
    }
}
