//! Compile once: a second engine on the same cache directory loads the compiled artifact
//! instead of compiling, and never loads bytes it did not write.

use std::fs;

use skewless_engine::{Engine, EngineConfig};
use skewless_test_artifacts as artifacts;

use crate::examples::fraud_input;

fn engine_with_cache(dir: &std::path::Path) -> Engine {
    Engine::new(EngineConfig {
        cache_dir: Some(dir.to_owned()),
        ..EngineConfig::default()
    })
    .unwrap()
}

#[test]
fn second_load_comes_from_the_cache_and_computes_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let first = engine_with_cache(dir.path())
        .load_file(artifacts::FRAUD_RISK)
        .unwrap();
    assert!(!first.loaded_from_cache());
    let artifacts_written: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(artifacts_written.len(), 2, "the artifact and its digest");

    // A restart: a new engine, same directory.
    let second = engine_with_cache(dir.path())
        .load_file(artifacts::FRAUD_RISK)
        .unwrap();
    assert!(second.loaded_from_cache());
    assert_eq!(first.sha256(), second.sha256());
    let input = fraud_input(300);
    assert_eq!(first.call(&input).unwrap(), second.call(&input).unwrap());
}

#[test]
fn tampered_artifact_is_recompiled_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_cache(dir.path());
    let original = engine.load_file(artifacts::FRAUD_RISK).unwrap();
    let cwasm = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    let mut bytes = fs::read(&cwasm).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&cwasm, bytes).unwrap();

    let reloaded = engine_with_cache(dir.path())
        .load_file(artifacts::FRAUD_RISK)
        .unwrap();
    assert!(
        !reloaded.loaded_from_cache(),
        "a tampered artifact must not be deserialized"
    );
    let input = fraud_input(50);
    assert_eq!(
        original.call(&input).unwrap(),
        reloaded.call(&input).unwrap()
    );
}

#[test]
fn refused_components_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_cache(dir.path());
    for refused in [
        artifacts::OTHER_WORLD,
        artifacts::BAD_SIGNATURE,
        artifacts::EXTRA_IMPORT,
    ] {
        assert!(engine.load_file(refused).is_err());
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}
