//! Every way a component or a call can go wrong gives a typed error naming the transform
//! and the cause, and the engine keeps serving afterwards.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use skewless_engine::{Error, Fault};
use skewless_test_artifacts as artifacts;

use crate::support::{batch, engine, hostile_input, load, test_limits};

fn load_err(label: &str, bytes: &[u8]) -> Error {
    engine().load(label, bytes).expect_err("load must fail")
}

#[test]
fn not_wasm_is_refused() {
    let err = load_err("junk@1", b"PK\x03\x04 definitely a zip file");
    assert!(matches!(err, Error::NotWasm { .. }), "{err:?}");
    assert_eq!(err.fault(), Fault::Caller);
    assert_eq!(
        err.to_string(),
        "junk@1: not a WebAssembly file (no `\\0asm` header)"
    );
    assert!(matches!(load_err("empty@1", b""), Error::NotWasm { .. }));
}

#[test]
fn core_module_is_refused() {
    let core = wat_module();
    let err = load_err("core@1", &core);
    assert!(matches!(err, Error::NotAComponent { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("core WebAssembly module, not a component")
    );
}

/// A minimal core module: `\0asm`, version 1, no sections.
fn wat_module() -> Vec<u8> {
    b"\0asm\x01\x00\x00\x00".to_vec()
}

#[test]
fn truncated_component_is_refused() {
    let bytes = std::fs::read(artifacts::FRAUD_RISK).unwrap();
    let err = load_err("cut@1", &bytes[..bytes.len() / 2]);
    assert!(matches!(err, Error::InvalidComponent { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("cut@1: invalid component:"),
        "{err}"
    );
}

#[test]
fn component_of_another_world_is_refused() {
    let err = engine().load_file(artifacts::OTHER_WORLD).unwrap_err();
    assert!(matches!(err, Error::WrongWorld { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("guest_other_world.wasm"), "{msg}");
    assert!(
        msg.contains("skewless:transform/transformer@0.1.0"),
        "{msg}"
    );
}

#[test]
fn unknown_dtype_is_refused() {
    let err = engine().load_file(artifacts::UNKNOWN_DTYPE).unwrap_err();
    assert!(matches!(err, Error::WrongWorld { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("dtype"),
        "the error should name the mismatched type: {msg}"
    );
}

#[test]
fn import_outside_wasi_is_refused() {
    let err = engine().load_file(artifacts::EXTRA_IMPORT).unwrap_err();
    match &err {
        Error::UnsupportedImport { imports, .. } => {
            assert_eq!(imports, &["acme:net/fetch@1.0.0".to_owned()]);
        }
        other => panic!("expected UnsupportedImport, got {other:?}"),
    }
    assert!(err.to_string().contains("acme:net/fetch@1.0.0"));
}

#[test]
fn invalid_signature_is_refused() {
    let err = engine().load_file(artifacts::BAD_SIGNATURE).unwrap_err();
    assert!(matches!(err, Error::InvalidSignature { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "guest_bad_signature.wasm: invalid signature: output column `y` is declared twice"
    );
}

#[test]
fn missing_and_mistyped_inputs_are_refused_before_the_call() {
    let t = load(artifacts::FRAUD_RISK);
    let amount: ArrayRef = Arc::new(Float64Array::from(vec![1.0]));
    let missing = batch(vec![("amount", amount.clone())]);
    let err = t.call(&missing).unwrap_err();
    assert_eq!(err.fault(), Fault::Caller);
    match &err {
        Error::InvalidInput { column, reason, .. } => {
            assert_eq!(column.as_deref(), Some("txn_amount_avg_7d"));
            assert!(reason.starts_with("missing (expected float64"), "{reason}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }

    let mistyped = batch(vec![
        (
            "amount",
            Arc::new(StringArray::from(vec!["12.5"])) as ArrayRef,
        ),
        ("txn_amount_avg_7d", amount.clone()),
        ("txn_amount_max_7d", amount.clone()),
        (
            "account_age_days",
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        ),
    ]);
    let err = t.call(&mistyped).unwrap_err();
    assert_eq!(
        err.to_string(),
        "fraud_risk.wasm: invalid input column `amount`: has type Utf8, which does not convert losslessly to float64"
    );
}

#[test]
fn wrong_row_count_is_refused() {
    let t = load(artifacts::MISBEHAVE);
    let err = t.call(&misbehave_input("rows")).unwrap_err();
    assert_eq!(err.fault(), Fault::Guest);
    assert!(matches!(err, Error::InvalidOutput { .. }), "{err:?}");
    assert!(
        err.to_string().contains("has 4 rows, but the input had 3"),
        "{err}"
    );
}

#[test]
fn wrong_output_schema_is_refused() {
    let t = load(artifacts::MISBEHAVE);
    let cases = [
        (
            "dtype",
            "column `y`: is declared float64 but holds int64 data",
        ),
        (
            "missing",
            "has columns [], but the signature declares [\"y\", \"s\"]",
        ),
        (
            "nulls",
            "column `y`: is declared not null but row 0 is null",
        ),
        (
            "utf8",
            "column `s`: Invalid argument error: Encountered non UTF-8 data",
        ),
        (
            "offsets",
            "column `s`: offsets end at 1003 but the column holds 3 values",
        ),
    ];
    for (mode, want) in cases {
        let err = t.call(&misbehave_input(mode)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidOutput { .. }),
            "{mode}: {err:?}"
        );
        assert!(err.to_string().contains(want), "{mode}: {err}");
    }
    // The same component still answers a good call.
    assert_eq!(t.call(&misbehave_input("fine")).unwrap().num_rows(), 3);
}

fn misbehave_input(mode: &str) -> RecordBatch {
    batch(vec![(
        "mode",
        Arc::new(StringArray::from(vec![mode; 3])) as ArrayRef,
    )])
}

#[test]
fn panic_is_a_trap_with_the_panic_message() {
    let t = load(artifacts::HOSTILE);
    let err = t.call(&hostile_input("panic", 4)).unwrap_err();
    assert_eq!(err.fault(), Fault::Guest);
    match &err {
        Error::Trap { stderr, .. } => {
            assert!(
                stderr.contains("hostile guest panicked on purpose"),
                "{stderr}"
            );
        }
        other => panic!("expected Trap, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("guest_hostile.wasm: the transform trapped"),
        "{err}"
    );
}

#[test]
fn abort_is_a_trap() {
    let t = load(artifacts::HOSTILE);
    let err = t.call(&hostile_input("trap", 4)).unwrap_err();
    assert!(matches!(err, Error::Trap { .. }), "{err:?}");
}

#[test]
fn infinite_loop_hits_the_deadline() {
    let t = load(artifacts::HOSTILE);
    let started = Instant::now();
    let err = t.call(&hostile_input("loop", 4)).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string().contains("ran past its deadline of 500ms"),
        "{err}"
    );
    // Interrupted, not left to spin: generous bound, this is not a timing test.
    assert!(started.elapsed() < test_limits().deadline * 20);
}

/// A guest that sleeps is not left blocked in a host call, out of the deadline's reach
/// (a 120 s sleep once held its call for 120 s): the frozen clock's timers are ready at
/// once, so a sleep returns, and a wait for time to pass spins in the guest's own code
/// until the deadline stops it. Generous bounds: these are not timing tests.
#[test]
fn a_sleeping_guest_returns_at_once_and_a_waiting_one_hits_the_deadline() {
    let t = load(artifacts::HOSTILE);
    for mode in ["sleep", "sleep_max"] {
        let started = Instant::now();
        let out = t.call(&hostile_input(mode, 3)).expect(mode);
        assert_eq!(out.num_rows(), 3, "{mode}");
        assert!(
            started.elapsed() < test_limits().deadline * 20,
            "{mode} held its call for {:?}",
            started.elapsed()
        );
    }
    // A direct wasi:io/poll.poll over a list of timers finds them all ready at once.
    let started = Instant::now();
    let out = t.call(&hostile_input("poll", 3)).expect("poll");
    let answers = out
        .column_by_name("s")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert!(answers.iter().all(|a| a == Some("ready")), "{answers:?}");
    assert!(started.elapsed() < test_limits().deadline * 20);
    let started = Instant::now();
    let err = t.call(&hostile_input("wait", 3)).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < test_limits().deadline * 20);
    // The engine is fine after all of it.
    assert_eq!(t.call(&hostile_input("ok", 2)).unwrap().num_rows(), 2);
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    let t = load(artifacts::HOSTILE);
    let err = t.call(&hostile_input("alloc", 4)).unwrap_err();
    match &err {
        Error::MemoryLimit {
            limit, requested, ..
        } => {
            assert_eq!(*limit, 64 << 20);
            assert!(requested > limit);
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
}

#[test]
fn gigantic_output_hits_the_output_cap() {
    let t = load(artifacts::HOSTILE);
    let err = t.call(&hostile_input("huge", 32)).unwrap_err();
    match &err {
        Error::OutputTooLarge { bytes, limit, .. } => {
            assert_eq!(*limit, 16 << 20);
            assert!(*bytes >= 32 << 20, "{bytes}");
        }
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
}

/// The output cap decides, whatever its size: wasmtime's own 128 MiB cap on what a guest
/// hands the host fired first and was reported as a trap, so no output over 128 MiB could
/// pass, whatever `max_output_bytes` said.
#[test]
fn outputs_over_128_mib_pass_under_a_larger_cap_and_are_too_large_under_a_smaller_one() {
    let engine = |max_output_bytes: usize| {
        skewless_engine::Engine::new(skewless_engine::EngineConfig {
            limits: skewless_engine::Limits {
                memory_bytes: 1 << 30,
                deadline: std::time::Duration::from_secs(60),
                max_output_bytes,
                ..skewless_engine::Limits::default()
            },
            max_concurrent_calls: 1,
            ..skewless_engine::EngineConfig::default()
        })
        .unwrap()
    };
    // 200 rows of 1 MiB of text.
    let roomy = engine(256 << 20).load_file(artifacts::HOSTILE).unwrap();
    let out = roomy
        .call(&hostile_input("huge", 200))
        .expect("200 MiB under 256 MiB");
    assert_eq!(out.num_rows(), 200);
    drop(out);
    let tight = engine(128 << 20).load_file(artifacts::HOSTILE).unwrap();
    match tight.call(&hostile_input("huge", 200)).unwrap_err() {
        Error::OutputTooLarge { bytes, limit, .. } => {
            assert_eq!(limit, 128 << 20);
            assert!(bytes > limit, "{bytes}");
        }
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
    // Far over the cap, the copy out is stopped before the output is whole: still
    // OutputTooLarge, never a trap.
    let tiny = engine(16 << 20).load_file(artifacts::HOSTILE).unwrap();
    match tiny.call(&hostile_input("huge", 200)).unwrap_err() {
        Error::OutputTooLarge { bytes, limit, .. } => {
            assert_eq!(limit, 16 << 20);
            assert!(bytes >= 128 << 20, "{bytes}");
        }
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
}

#[test]
fn transform_error_reaches_the_caller() {
    let t = load(artifacts::HOSTILE);
    let err = t.call(&hostile_input("error", 2)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "guest_hostile.wasm: the transform failed: computation: row 0: refusing on purpose"
    );
}

#[test]
fn the_host_survives_every_hostile_call() {
    let t = load(artifacts::HOSTILE);
    for mode in ["panic", "trap", "loop", "alloc", "huge", "error"] {
        assert!(
            t.call(&hostile_input(mode, 32)).is_err(),
            "{mode} must fail"
        );
        let ok = t
            .call(&hostile_input("ok", 8))
            .expect("the next call succeeds");
        assert_eq!(ok.num_rows(), 8, "after {mode}");
    }
}

#[test]
fn hostile_calls_do_not_disturb_concurrent_good_ones() {
    let hostile = load(artifacts::HOSTILE);
    let good = load(artifacts::FRAUD_RISK);
    let input = crate::examples::fraud_input(100);
    let expected = good.call(&input).unwrap();
    std::thread::scope(|s| {
        let bad = s.spawn(|| {
            for mode in ["loop", "alloc", "panic"] {
                assert!(hostile.call(&hostile_input(mode, 4)).is_err());
            }
        });
        for _ in 0..50 {
            assert_eq!(good.call(&input).unwrap(), expected);
        }
        bad.join().unwrap();
    });
}

#[test]
fn more_concurrent_calls_than_slots_get_a_capacity_error() {
    let engine = skewless_engine::Engine::new(skewless_engine::EngineConfig {
        limits: skewless_engine::Limits {
            deadline: std::time::Duration::from_secs(3),
            ..test_limits()
        },
        max_concurrent_calls: 1,
        ..skewless_engine::EngineConfig::default()
    })
    .unwrap();
    let hostile = engine.load_file(artifacts::HOSTILE).unwrap();
    std::thread::scope(|s| {
        // Holds the only slot until its deadline.
        let busy = s.spawn(|| hostile.call(&hostile_input("loop", 1)));
        std::thread::sleep(std::time::Duration::from_millis(300));
        let err = hostile.call(&hostile_input("ok", 1)).unwrap_err();
        assert!(matches!(err, Error::Capacity { .. }), "{err:?}");
        assert_eq!(err.fault(), Fault::Unavailable);
        assert!(matches!(busy.join().unwrap(), Err(Error::Timeout { .. })));
    });
    // The slot is free again.
    assert_eq!(hostile.call(&hostile_input("ok", 3)).unwrap().num_rows(), 3);
}
