//! Transforms in Python, JavaScript and C, built from source: the examples by
//! skewless-test-artifacts (with skewless-build, as `skewless build` does), the projects
//! written here by the `skewless build` command itself.
//!
//! - fraud_risk in C, Python and JavaScript gives the same bits as the Rust one over
//!   thousands of random rows with NaN, ±0, ±inf, subnormals, extremes and nulls, for
//!   every output computed with IEEE correctly-rounded operations. `amount_log1p` calls
//!   the language's math library: C and Python link wasi-libc's, as Rust does, and must
//!   match exactly; JavaScript's differs, and its largest difference in ulps is bounded
//!   (and reported; docs/languages.md records it).
//! - merchant_text, a Python-only transform (Unicode normalization, regex tokens, a
//!   BLAKE2b bucket), gives the values CPython gives natively.
//! - A Python transform that raises, returns a wrong length or type, imports a missing
//!   module, or opens a file or a socket fails its call with a typed error naming the
//!   transform and the exception; the next call succeeds.
//!
//! The toolchains come from scripts/test (componentize-py, componentize-js through npm,
//! clang with wasi-libc); `skewless build` installs the first two when missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use skewless_engine::{Engine, EngineConfig, Transform};
use skewless_test_artifacts as artifacts;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where built components go: kept between runs, like the rest of target/.
fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("languages");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `skewless build PROJECT -o OUT` and returns its status and combined output.
fn skewless_build(project: &Path, out: &Path) -> (bool, String) {
    skewless_build_with(project, out, |_| {})
}

/// `skewless build PROJECT -o OUT`, with `adjust` applied to the command first.
fn skewless_build_with(
    project: &Path,
    out: &Path,
    adjust: impl FnOnce(&mut Command),
) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skewless"));
    command.arg("build").arg(project).arg("-o").arg(out);
    adjust(&mut command);
    let output = command.output().expect("running skewless build");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn build(project: &Path, name: &str) -> PathBuf {
    let out = out_dir().join(format!("{name}.wasm"));
    let (ok, text) = skewless_build(project, &out);
    assert!(ok, "skewless build {} failed:\n{text}", project.display());
    assert!(
        text.contains(&out.display().to_string()),
        "build prints the component's path:\n{text}"
    );
    out
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(EngineConfig::default()).unwrap())
}

fn load(path: &Path, label: &str) -> Transform {
    engine().load(label, &std::fs::read(path).unwrap()).unwrap()
}

/// A splitmix64 stream: reproducible without a dependency's API.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A float: mostly amounts of every magnitude, often a special value.
    fn float(&mut self) -> Option<f64> {
        const SPECIAL: [f64; 16] = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            -1.0 - f64::EPSILON,
            f64::EPSILON,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            1e-17,
            -0.999_999_999_999,
        ];
        match self.below(10) {
            0 => None,
            1 | 2 => Some(SPECIAL[self.below(SPECIAL.len() as u64) as usize]),
            3 => Some(f64::from_bits(self.next())),
            4 => Some(-self.unit() * 2.0),
            _ => {
                Some((self.unit() * 30.0 - 8.0).exp() * if self.below(8) == 0 { -1.0 } else { 1.0 })
            }
        }
    }
    fn int(&mut self) -> Option<i64> {
        match self.below(10) {
            0 => None,
            1 => Some([i64::MIN, i64::MAX, 0, -1, 29, 30, 31][self.below(7) as usize]),
            _ => Some(self.below(3000) as i64 - 100),
        }
    }
}

fn fraud_input(rows: usize, seed: u64) -> RecordBatch {
    let mut rng = Rng(seed);
    let mut floats = || (0..rows).map(|_| rng.float()).collect::<Float64Array>();
    let amount = floats();
    let avg = floats();
    let max = floats();
    let age: Int64Array = (0..rows).map(|_| rng.int()).collect();
    RecordBatch::try_from_iter([
        ("amount", Arc::new(amount) as ArrayRef),
        ("txn_amount_avg_7d", Arc::new(avg) as ArrayRef),
        ("txn_amount_max_7d", Arc::new(max) as ArrayRef),
        ("account_age_days", Arc::new(age) as ArrayRef),
    ])
    .unwrap()
}

/// The distance in units in the last place between two finite floats of the same sign
/// (0 for the same bits; u64::MAX when one is NaN and the other is not, or the signs
/// differ).
fn ulps(a: f64, b: f64) -> u64 {
    if a.to_bits() == b.to_bits() {
        return 0;
    }
    if a.is_nan() || b.is_nan() || a.is_sign_negative() != b.is_sign_negative() {
        return u64::MAX;
    }
    a.to_bits().abs_diff(b.to_bits())
}

/// Compares `got` with `want` column by column: nulls at the same rows, and the same
/// bits at every valid row, except that `amount_log1p` may differ by `log_ulps`. Returns
/// the largest ulp difference seen in `amount_log1p`.
fn compare(language: &str, want: &RecordBatch, got: &RecordBatch, log_ulps: u64) -> u64 {
    assert_eq!(want.schema(), got.schema(), "{language}: output schema");
    let mut worst = 0;
    for (i, field) in want.schema().fields().iter().enumerate() {
        let (w, g) = (want.column(i), got.column(i));
        for row in 0..want.num_rows() {
            assert_eq!(
                w.is_valid(row),
                g.is_valid(row),
                "{language}: {} row {row}: validity",
                field.name()
            );
            if !w.is_valid(row) {
                continue;
            }
            if let Some(w) = w.as_boolean_opt() {
                let g = g.as_boolean();
                assert_eq!(
                    w.value(row),
                    g.value(row),
                    "{language}: {} row {row}",
                    field.name()
                );
                continue;
            }
            let (a, b) = (
                w.as_primitive::<Float64Type>().value(row),
                g.as_primitive::<Float64Type>().value(row),
            );
            let d = ulps(a, b);
            if field.name() == "amount_log1p" {
                worst = worst.max(d);
                assert!(
                    d <= log_ulps,
                    "{language}: amount_log1p row {row}: {a:e} ({:#x}) vs {b:e} ({:#x}), {d} ulps",
                    a.to_bits(),
                    b.to_bits()
                );
            } else {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{language}: {} row {row}: Rust {a:e}, {language} {b:e}",
                    field.name(),
                );
            }
        }
    }
    worst
}

#[test]
fn fraud_risk_in_c_python_and_javascript_matches_rust() {
    let rust = load(Path::new(artifacts::FRAUD_RISK), "fraud_risk (Rust)");
    let c = load(Path::new(artifacts::FRAUD_RISK_C), "fraud_risk (C)");
    let python = load(Path::new(artifacts::FRAUD_RISK_PY), "fraud_risk (Python)");
    let js = load(
        Path::new(artifacts::FRAUD_RISK_JS),
        "fraud_risk (JavaScript)",
    );
    for t in [&c, &python, &js] {
        assert_eq!(t.signature(), rust.signature(), "{}: signature", t.label());
    }

    let mut rows = 0;
    let mut js_worst = 0;
    for seed in 0..4 {
        let input = fraud_input(1500, 0xf7a0_d000 + seed);
        rows += input.num_rows();
        let want = rust.call(&input).unwrap();
        assert_eq!(compare("C", &want, &c.call(&input).unwrap(), 0), 0);
        assert_eq!(
            compare("Python", &want, &python.call(&input).unwrap(), 0),
            0
        );
        js_worst = js_worst.max(compare("JavaScript", &want, &js.call(&input).unwrap(), 1));
    }
    // What docs/languages.md reports for JavaScript's Math.log1p.
    eprintln!("{rows} rows: JavaScript amount_log1p differs by at most {js_worst} ulp from Rust's");
}

#[test]
fn javascript_components_import_nothing_and_the_others_only_wasi() {
    let js = load(
        Path::new(artifacts::FRAUD_RISK_JS),
        "fraud_risk (JavaScript)",
    );
    assert_eq!(
        js.imports(),
        Vec::<String>::new(),
        "every WASI feature is off"
    );
    for (language, path) in [
        ("Rust", artifacts::FRAUD_RISK),
        ("C", artifacts::FRAUD_RISK_C),
        ("Python", artifacts::FRAUD_RISK_PY),
    ] {
        let imports = load(Path::new(path), language).imports();
        assert!(!imports.is_empty(), "{language}: its runtime imports WASI");
        for name in &imports {
            assert!(
                name.starts_with("wasi:") && name.contains("@0.2."),
                "{language}: {name}"
            );
        }
    }
    let inspect = |path: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_skewless"))
            .args(["inspect", path])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = inspect(artifacts::FRAUD_RISK_JS);
    assert!(text.contains("imports:   none"), "{text}");
    let text = inspect(artifacts::FRAUD_RISK_C);
    assert!(text.contains("  wasi:cli/"), "{text}");
}

#[test]
fn merchant_text_gives_what_cpython_gives() {
    let project = root().join("example-transforms/python/merchant_text");
    let transform = load(
        Path::new(artifacts::MERCHANT_TEXT_PY),
        "merchant_text@1.0.0",
    );
    let names = [
        Some("Café  Müller GmbH"),
        Some("ACME Stores, Inc."),
        None,
        Some(""),
        Some("ＳＨＯＰ ｅｘｐｒｅｓｓ"),
        Some("Ölmühle_Straße 12 LLC"),
    ];
    let input = RecordBatch::try_from_iter([(
        "merchant_name",
        Arc::new(names.iter().copied().collect::<StringArray>()) as ArrayRef,
    )])
    .unwrap();
    let out = transform.call(&input).unwrap();

    // The same module, run by the host's CPython.
    let script = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import merchant_text as m
names = json.loads(sys.stdin.read())
print(json.dumps(m.merchant_text(names)))
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(root().join("sdk/python"))
        .arg(&project)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&names).unwrap().as_bytes())
        .unwrap();
    let native = child.wait_with_output().unwrap();
    assert!(native.status.success(), "native CPython run failed");
    let native: Vec<Vec<serde_json::Value>> = serde_json::from_slice(&native.stdout).unwrap();

    let normalized = out.column(0).as_string::<i32>();
    let tokens = out.column(1).as_primitive::<Int64Type>();
    let bucket = out.column(2).as_primitive::<Int64Type>();
    let chain = out.column(3).as_primitive::<Int64Type>();
    for row in 0..names.len() {
        let got = if normalized.is_valid(row) {
            vec![
                serde_json::json!(normalized.value(row)),
                serde_json::json!(tokens.value(row)),
                serde_json::json!(bucket.value(row)),
                serde_json::json!(chain.value(row)),
            ]
        } else {
            vec![serde_json::Value::Null; 4]
        };
        let want: Vec<_> = native.iter().map(|col| col[row].clone()).collect();
        assert_eq!(got, want, "row {row} ({:?})", names[row]);
    }
    assert_eq!(normalized.value(0), "cafe muller gmbh");
    assert_eq!(chain.value(1), 2, "`stores` and `inc` are chain words");
    assert_eq!(
        normalized.value(4),
        "shop express",
        "NFKC folds full-width letters"
    );
}

/// One Python project whose rows choose how it misbehaves.
const MISBEHAVING_PY: &str = r#"
from skewless import FLOAT64, UTF8, transform

@transform(inputs={"mode": UTF8, "x": FLOAT64}, outputs={"y": FLOAT64})
def misbehave(mode, x):
    m = mode[0]
    if m == "raise":
        raise ValueError("amount must be positive")
    if m == "short":
        return [1.0]
    if m == "type":
        return ["not a float"] * len(x)
    if m == "import":
        import numpy  # not in the component
    if m == "file":
        open("/etc/passwd").read()
    if m == "socket":
        import socket
        socket.create_connection(("127.0.0.1", 6566), timeout=1)
    if m == "columns":
        return [], []
    return [None if v is None else v * 2.0 for v in x]
"#;

fn python_project(dir: &Path, name: &str, source: &str) -> PathBuf {
    let project = dir.join(name);
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("pyproject.toml"),
        format!("[project]\nname = \"{name}\"\nversion = \"0.1.0\"\n"),
    )
    .unwrap();
    std::fs::write(project.join(format!("{name}.py")), source).unwrap();
    project
}

#[test]
fn a_misbehaving_python_transform_fails_its_call_with_the_exception() {
    let dir = tempfile::tempdir().unwrap();
    let project = python_project(dir.path(), "misbehave", MISBEHAVING_PY);
    let transform = load(&build(&project, "misbehave_py"), "misbehave@0.1.0");
    let call = |mode: &str| {
        let input = RecordBatch::try_from_iter([
            (
                "mode",
                Arc::new(StringArray::from(vec![mode; 3])) as ArrayRef,
            ),
            (
                "x",
                Arc::new(Float64Array::from(vec![Some(1.5), None, Some(-2.0)])) as ArrayRef,
            ),
        ])
        .unwrap();
        transform.call(&input)
    };
    let cases = [
        ("raise", "raised ValueError: amount must be positive"),
        ("short", "output 'y': 1 values for 3 input rows"),
        (
            "type",
            "output 'y' (float64) row 0: expected a float, got str 'not a float'",
        ),
        (
            "import",
            "raised ModuleNotFoundError: No module named 'numpy'",
        ),
        ("file", "raised FileNotFoundError"),
        // CPython for WASI has no `_socket`: the attempt fails at its import.
        (
            "socket",
            "raised ModuleNotFoundError: No module named 'socket'",
        ),
        ("columns", "returned 2 columns; it declares 1 outputs (y)"),
    ];
    for (mode, expected) in cases {
        let error = call(mode).expect_err(mode).to_string();
        assert!(
            error.starts_with("misbehave@0.1.0: the transform failed: "),
            "{mode}: a typed guest error naming the transform: {error}"
        );
        assert!(
            error.contains("'misbehave'"),
            "{mode}: names the Python function: {error}"
        );
        assert!(error.contains(expected), "{mode}: {error}");
        // The host, and the transform, carry on.
        let ok = call("ok").unwrap();
        let y = ok.column(0).as_primitive::<Float64Type>();
        assert_eq!((y.value(0), y.is_null(1), y.value(2)), (3.0, true, -4.0));
    }
}

#[test]
fn a_python_import_that_is_missing_fails_the_build_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let project = python_project(
        dir.path(),
        "needs_numpy",
        "import numpy\nfrom skewless import FLOAT64, transform\n\n\
         @transform(inputs={\"x\": FLOAT64}, outputs={\"y\": FLOAT64})\n\
         def needs_numpy(x):\n    return [numpy.log1p(v) for v in x]\n",
    );
    let out = dir.path().join("needs_numpy.wasm");
    let (ok, text) = skewless_build(&project, &out);
    assert!(!ok, "the build must fail:\n{text}");
    assert!(text.contains("componentize-py failed"), "{text}");
    assert!(text.contains("No module named 'numpy'"), "{text}");
    assert!(!out.exists(), "no component is written");
}

#[test]
fn build_names_what_it_cannot_build() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = skewless_build(dir.path(), &dir.path().join("x.wasm"));
    assert!(!ok);
    assert!(text.contains("cannot tell the language of"), "{text}");
    assert!(text.contains("pyproject.toml (Python)"), "{text}");

    std::fs::write(dir.path().join("package.json"), "{}").unwrap();
    std::fs::write(
        dir.path().join("pyproject.toml"),
        "[project]\nname = \"x\"\n",
    )
    .unwrap();
    let (ok, text) = skewless_build(dir.path(), &dir.path().join("x.wasm"));
    assert!(!ok);
    assert!(
        text.contains("several languages (Python, JavaScript)"),
        "{text}"
    );

    std::fs::remove_file(dir.path().join("package.json")).unwrap();
    let (ok, text) = skewless_build(dir.path(), &dir.path().join("x.wasm"));
    assert!(!ok);
    assert!(
        text.contains("the module `x` is neither x.py nor x/__init__.py"),
        "{text}"
    );
}

#[test]
fn a_c_transform_that_breaks_its_declaration_fails_its_call() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("short_c");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("Makefile"),
        "SOURCES = short.c\ninclude $(SKEWLESS_SDK)/skewless.mk\n",
    )
    .unwrap();
    std::fs::write(
        project.join("short.c"),
        r#"#include "skewless.h"
SKEWLESS_INPUTS({"name", SKEWLESS_UTF8, true});
SKEWLESS_OUTPUTS({"upper", SKEWLESS_UTF8, true}, {"flag", SKEWLESS_BOOL, false});

int skewless_transform(const skewless_input *in, skewless_output *out) {
    for (uint32_t row = 0; row < in->rows; row++) {
        skewless_str s = skewless_in_utf8(in, 0, row);
        if (s.len == 4 && s.ptr[0] == 'f') {
            return skewless_error(SKEWLESS_COMPUTATION, "row %u: cannot shout %.*s", row, (int)s.len, s.ptr);
        }
        if (s.len == 0) break; /* stops appending: fewer rows than the batch */
        char buf[64];
        size_t n = s.len < sizeof buf ? s.len : sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = (s.ptr[i] >= 'a' && s.ptr[i] <= 'z') ? s.ptr[i] - 32 : s.ptr[i];
        skewless_out_utf8_append(out, 0, buf, n);
        skewless_out_bool(out, 1, row, s.len > 3);
    }
    return SKEWLESS_OK;
}
"#,
    )
    .unwrap();
    let transform = load(&build(&project, "short_c"), "short@0.1.0");
    let call = |names: Vec<&str>| {
        let input =
            RecordBatch::try_from_iter([("name", Arc::new(StringArray::from(names)) as ArrayRef)])
                .unwrap();
        transform.call(&input)
    };
    let out = call(vec!["abc", "héllo"]).unwrap();
    assert_eq!(out.column(0).as_string::<i32>().value(1), "HéLLO");
    let flags = out
        .column(1)
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap();
    assert_eq!((flags.value(0), flags.value(1)), (false, true));
    let error = call(vec!["ok", "fail"]).unwrap_err().to_string();
    assert_eq!(
        error,
        "short@0.1.0: the transform failed: computation: row 1: cannot shout fail"
    );
    let error = call(vec!["ok", ""]).unwrap_err().to_string();
    assert!(
        error.contains("output upper: 1 rows appended for 2 input rows"),
        "{error}"
    );
    assert_eq!(
        call(vec!["x"]).unwrap().num_rows(),
        1,
        "the transform carries on"
    );
}

/// Inputs for the math probe: every magnitude, the ranges where each function is
/// interesting (trigonometry far from zero, exp near overflow), and special values.
fn probe_input(rows: usize, seed: u64) -> RecordBatch {
    let mut rng = Rng(seed);
    let mut x = Vec::with_capacity(rows);
    let mut y = Vec::with_capacity(rows);
    for _ in 0..rows {
        x.push(match rng.below(8) {
            0 => rng.float(),
            1 => Some(rng.unit() * 20.0 - 10.0),
            2 => Some(rng.unit() * 2000.0 - 1000.0),
            3 => Some(rng.unit() * 1455.0 - 745.0),
            4 => Some((rng.unit() * 2.0 - 1.0) * 1e-6),
            5 => Some(rng.unit() * 1e6),
            _ => Some((rng.unit() * 60.0 - 30.0).exp()),
        });
        y.push(match rng.below(6) {
            0 => rng.float(),
            1 => Some(rng.below(21) as f64 - 10.0),
            2 => Some(0.5),
            _ => Some(rng.unit() * 100.0 - 50.0),
        });
    }
    RecordBatch::try_from_iter([
        ("x", Arc::new(Float64Array::from(x)) as ArrayRef),
        ("y", Arc::new(Float64Array::from(y)) as ArrayRef),
    ])
    .unwrap()
}

/// Where a language's definition of a function differs from C's, not its rounding:
/// ECMAScript defines `Math.pow(±1, ±Infinity)` and `Math.pow(1, NaN)` as NaN, where C
/// (and Rust, and Python) return 1.
fn special_case(language: &str, function: &str, x: f64, y: f64) -> bool {
    language == "JavaScript"
        && function == "pow"
        && ((x.abs() == 1.0 && y.is_infinite()) || (x == 1.0 && y.is_nan()))
}

/// The largest ulp difference from Rust this test allows per language and function: what
/// docs/languages.md documents. Functions not listed must match exactly.
const DOCUMENTED_ULPS: &[(&str, &str, u64)] = &[
    ("JavaScript", "exp", 1),
    ("JavaScript", "log", 1),
    ("JavaScript", "log1p", 1),
    ("JavaScript", "tanh", 2),
    ("JavaScript", "pow", 2),
];

#[test]
fn math_library_differences_are_measured_and_within_what_is_documented() {
    let rust = load(Path::new(artifacts::MATH_PROBE), "math_probe (Rust)");
    let twins = [
        (
            "C",
            load(Path::new(artifacts::MATH_PROBE_C), "math_probe (C)"),
        ),
        (
            "Python",
            load(Path::new(artifacts::MATH_PROBE_PY), "math_probe (Python)"),
        ),
        (
            "JavaScript",
            load(
                Path::new(artifacts::MATH_PROBE_JS),
                "math_probe (JavaScript)",
            ),
        ),
    ];
    let input = probe_input(20_000, 0x6d61_7468);
    let want = rust.call(&input).unwrap();
    let mut report = String::from("| function | C | Python | JavaScript |\n|---|---|---|---|\n");
    let mut worst = std::collections::BTreeMap::new();
    for (language, twin) in &twins {
        let got = twin.call(&input).unwrap();
        assert_eq!(want.schema(), got.schema(), "{language}");
        for (i, field) in want.schema().fields().iter().enumerate() {
            let (w, g) = (
                want.column(i).as_primitive::<Float64Type>(),
                got.column(i).as_primitive::<Float64Type>(),
            );
            let (mut max, mut differing, mut specials) = (0u64, 0usize, 0usize);
            for row in 0..w.len() {
                assert_eq!(
                    w.is_valid(row),
                    g.is_valid(row),
                    "{language} {} row {row}",
                    field.name()
                );
                if w.is_valid(row) {
                    let d = ulps(w.value(row), g.value(row));
                    let (a, b) = (
                        input.column(0).as_primitive::<Float64Type>().value(row),
                        input.column(1).as_primitive::<Float64Type>().value(row),
                    );
                    if d == u64::MAX && special_case(language, field.name(), a, b) {
                        specials += 1;
                        continue;
                    }
                    assert_ne!(
                        d,
                        u64::MAX,
                        "{language} {}({:e}, {:e}): Rust {:e}, {language} {:e}: NaN or sign differs",
                        field.name(),
                        a,
                        b,
                        w.value(row),
                        g.value(row)
                    );
                    differing += usize::from(d > 0);
                    max = max.max(d);
                }
            }
            worst.insert(
                (field.name().clone(), *language),
                (max, differing, specials),
            );
        }
    }
    for field in want.schema().fields() {
        let cell = |language| {
            let (max, differing, specials) = worst[&(field.name().clone(), language)];
            let mut cell = if max == 0 {
                "0".to_owned()
            } else {
                format!("{max} ulp ({differing} rows)")
            };
            if specials > 0 {
                cell += &format!(", {specials} special-case rows");
            }
            cell
        };
        report += &format!(
            "| {} | {} | {} | {} |\n",
            field.name(),
            cell("C"),
            cell("Python"),
            cell("JavaScript")
        );
    }
    eprintln!(
        "{} rows, largest difference from Rust:\n{report}",
        input.num_rows()
    );
    for ((function, language), (max, ..)) in &worst {
        let allowed = DOCUMENTED_ULPS
            .iter()
            .find(|(l, f, _)| l == language && f == function)
            .map_or(0, |d| d.2);
        assert!(
            *max <= allowed,
            "{language} {function}: {max} ulp from Rust; docs/languages.md says at most {allowed}"
        );
    }
}

/// A copy of `example-transforms/{project}` under `dir`: a build writes its stage inside
/// the project, and tests leave the source tree alone.
fn copy_example(dir: &Path, project: &str) -> PathBuf {
    let from = root().join("example-transforms").join(project);
    let to = dir.join(project.replace('/', "_"));
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    to
}

/// A PATH holding only the named programs (symlinks to the real ones).
fn path_with(dir: &Path, programs: &[&str]) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for program in programs {
        let real = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .unwrap();
        let real = String::from_utf8(real.stdout).unwrap();
        std::os::unix::fs::symlink(real.trim(), bin.join(program)).unwrap();
    }
    bin
}

#[test]
fn a_missing_toolchain_is_named_with_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let bin = path_with(dir.path(), &["make"]);
    let c = copy_example(dir.path(), "c/fraud_risk");
    let (ok, text) = skewless_build_with(&c, &dir.path().join("c.wasm"), |command| {
        command.env("PATH", &bin);
    });
    assert!(!ok);
    assert!(text.contains("C transforms need make and clang"), "{text}");
    assert!(
        text.contains("apt-get install make clang lld wasi-libc"),
        "{text}"
    );

    // No Node.js at all: the tools directory is new, so npm is the first thing missing.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let js = copy_example(dir.path(), "js/fraud_risk");
    let (ok, text) = skewless_build_with(&js, &dir.path().join("js.wasm"), |command| {
        command
            .arg("--tools-dir")
            .arg(dir.path().join("tools"))
            .env("PATH", &empty);
    });
    assert!(!ok);
    assert!(
        text.contains("npm (Node.js 18 or newer with npm is needed to build JavaScript transforms) is not installed"),
        "{text}"
    );
    assert!(!dir.path().join("js.wasm").exists());
}
