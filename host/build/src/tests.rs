//! Tests of language detection, staging, tool installs and C bindings.

use super::*;
use crate::c::generate_c_bindings;

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
