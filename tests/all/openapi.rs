//! docs/openapi.yaml against the server: every documented route is routed, and
//! schemathesis (from PyPI, installed by scripts/test) sends generated requests, valid
//! and invalid, to every operation and checks each answer against the document.

use serde_json::json;

use crate::server::{DEFS, T0};
use crate::support::TestServer;

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/schemathesis.toml");

#[test]
fn responses_conform_to_the_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let token = "openapi-secret";
    let server = TestServer::start(dir.path(), Some(token));
    setup_with(&server, token);
    let version = schemathesis().arg("--version").output();
    assert!(
        version.is_ok_and(|out| out.status.success()),
        "schemathesis is not installed: run ./scripts/test, which installs it"
    );
    let report = dir.path().join("schemathesis.json");
    let output = schemathesis()
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .args(["--config-file", CONFIG, "run", SPEC])
        .args(["--url", &format!("http://{}", server.addr)])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // Every check but `positive_data_acceptance`: a schema-valid body can still be
        // refused on meaning (definitions that do not validate, an unknown entity key),
        // which the document cannot express; those refusals are 4xx it lists.
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25", "--seed", "16", "--workers", "1"])
        .args(["--report", "json", "--report-json-path"])
        .arg(&report)
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "responses disagree with docs/openapi.yaml:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The run reached the handlers: every operation was tested, with many cases.
    assert!(stdout.contains("Tested: 19"), "{stdout}");
    let cases = stdout
        .lines()
        .find(|line| line.contains(" generated, "))
        .and_then(|line| line.split_whitespace().next()?.parse::<u64>().ok());
    assert!(cases.is_some_and(|n| n >= 300), "{stdout}");
    // The server survived the run.
    let (status, health) = server.json("GET", "/healthz", &json!(null));
    assert_eq!(status, 200, "{health}");
}

#[test]
fn every_route_in_the_openapi_document_exists() {
    let text = std::fs::read_to_string(SPEC).expect("docs/openapi.yaml");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None);
    let paths = doc["paths"].as_mapping().expect("paths");
    assert!(paths.len() >= 9, "every route is documented");
    for (path, methods) in paths {
        let path = path
            .as_str()
            .unwrap()
            .replace("{name}", "x")
            .replace("{version}", "1")
            .replace("{source}", "x");
        for (method, _) in methods.as_mapping().unwrap() {
            let method = method.as_str().unwrap().to_uppercase();
            let (status, body) = server.call(&method, &path, b"", None);
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert!(
                !body.contains("no such route"),
                "{method} {path} is documented but not routed"
            );
        }
    }
}

/// The schemathesis command line of the Python that `python3` runs (no PATH lookup of
/// a console script).
fn schemathesis() -> std::process::Command {
    let mut command = std::process::Command::new("python3");
    command.args([
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())",
    ]);
    command
}

/// The fraud module uploaded, the server tests' definitions applied and two users
/// pushed, with the write token.
fn setup_with(server: &TestServer, token: &str) {
    let module = std::fs::read(skewless_test_artifacts::FRAUD_RISK).unwrap();
    let calls: [(&str, &str, Vec<u8>); 3] = [
        ("PUT", "/v1/transforms/fraud_risk/1.0.0", module),
        ("PUT", "/v1/definitions", DEFS.as_bytes().to_vec()),
        (
            "POST",
            "/v1/push/user_stats",
            json!({"columns": {
                "user_id": [1, 2], "event_timestamp": [T0, T0], "created": [0, 0],
                "txn_amount_avg_7d": [50.0, 20.0], "txn_amount_max_7d": [200.0, null],
                "account_age_days": [10, 400],
            }})
            .to_string()
            .into_bytes(),
        ),
    ];
    for (method, path, body) in calls {
        let (status, answer) = server.call(method, path, &body, Some(token));
        assert!(
            status == 200 || status == 201,
            "{method} {path}: {status} {answer}"
        );
    }
}
