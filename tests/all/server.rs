//! The server over real HTTP on 127.0.0.1: upload → apply → push → features, every
//! refusal a 4xx that changes nothing, hostile transforms, hot swap, restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};
use skewless_test_artifacts::{ECHO, FRAUD_RISK, HOSTILE};

use crate::support::TestServer;

pub(crate) const DEFS: &str = r#"
project: fraud
entities:   [{name: user, join_keys: [user_id]}]
sources:    [{name: user_stats, timestamp_field: event_timestamp, created_timestamp_field: created}]
feature_views:
  - {name: user_stats, entities: [user], source: user_stats, ttl: 7d, online: true,
     owner: risk-team, description: 7-day card statistics,
     features: [{name: txn_amount_avg_7d, dtype: float64}, {name: txn_amount_max_7d, dtype: float64},
                {name: account_age_days, dtype: int64}]}
transforms:
  - {name: txn_risk, module: fraud_risk@1.0.0,
     inputs: [user_stats:txn_amount_avg_7d, user_stats:txn_amount_max_7d, user_stats:account_age_days, request:amount],
     request_schema: [{name: amount, dtype: float64}]}
feature_services: [{name: fraud_v1, features: ["user_stats:*", "txn_risk:*"]}]
"#;

/// 2026-11-20T00:00:00Z in microseconds.
pub(crate) const T0: i64 = 1_795_132_800_000_000;
const DAY: i64 = 86_400_000_000;

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("fixture exists")
}

pub(crate) fn setup(server: &TestServer) {
    let (status, body) = server.call(
        "PUT",
        "/v1/transforms/fraud_risk/1.0.0",
        &read(FRAUD_RISK),
        None,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.call("PUT", "/v1/definitions", DEFS.as_bytes(), None);
    assert_eq!(status, 200, "{body}");
}

pub(crate) fn push_users(server: &TestServer) {
    let (status, body) = server.json(
        "POST",
        "/v1/push/user_stats",
        &json!({"columns": {
            "user_id": [1, 2, 3],
            "event_timestamp": [T0, T0 - 8 * DAY, "2026-11-19T00:00:00Z"],
            "created": [0, 0, 0],
            "txn_amount_avg_7d": [50.0, 20.0, 0.5],
            "txn_amount_max_7d": [200.0, 40.0, null],
            "account_age_days": [10, 400, 31],
        }}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], 3);
}

pub(crate) fn features(server: &TestServer, users: Value, amounts: Value) -> (u16, Value) {
    server.json(
        "POST",
        "/v1/features",
        &json!({"feature_service": "fraud_v1", "entities": {"user_id": users},
                "request_data": {"amount": amounts}, "request_time": T0 + 1}),
    )
}

pub(crate) fn column<'a>(response: &'a Value, name: &str) -> &'a Value {
    let names = response["metadata"]["feature_names"]
        .as_array()
        .expect("feature names");
    let i = names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no {name} in {names:?}"));
    &response["results"][i]
}

#[test]
fn upload_apply_push_serve_gives_the_transform_arithmetic() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None);
    setup(&server);
    push_users(&server);
    let (status, body) = features(
        &server,
        json!([1, 2, 3, 99]),
        json!([150.0, 10.0, 7.0, 5.0]),
    );
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["metadata"]["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "user_stats:txn_amount_avg_7d",
            "user_stats:txn_amount_max_7d",
            "user_stats:account_age_days",
            "txn_risk:amount_zscore_proxy",
            "txn_risk:amount_to_max_ratio",
            "txn_risk:is_new_account",
            "txn_risk:amount_log1p",
        ],
        "names and order are fixed by the service"
    );
    let avg = column(&body, "user_stats:txn_amount_avg_7d");
    assert_eq!(avg["values"], json!([50.0, null, 0.5, null]));
    assert_eq!(
        avg["statuses"],
        json!(["PRESENT", "OUTSIDE_MAX_AGE", "PRESENT", "NOT_FOUND"]),
        "user 2's row is 8 days old under a 7-day TTL"
    );
    assert_eq!(avg["event_timestamps"][0], "2026-11-20T00:00:00.000000Z");
    let z = column(&body, "txn_risk:amount_zscore_proxy");
    assert_eq!(
        z["values"][0],
        json!(fraud_risk::amount_zscore_proxy(150.0, 50.0))
    );
    assert_eq!(
        z["values"][2],
        json!(fraud_risk::amount_zscore_proxy(7.0, 0.5))
    );
    assert_eq!(
        z["statuses"],
        json!(["PRESENT", "NULL_VALUE", "PRESENT", "NULL_VALUE"])
    );
    let ratio = column(&body, "txn_risk:amount_to_max_ratio");
    assert_eq!(ratio["values"], json!([0.75, null, null, null]));
    let new = column(&body, "txn_risk:is_new_account");
    assert_eq!(new["values"], json!([true, null, false, null]));
    let log = column(&body, "txn_risk:amount_log1p");
    assert_eq!(
        log["values"][3].as_f64().unwrap().to_bits(),
        5f64.ln_1p().to_bits()
    );

    // An older write does not overwrite a newer one; a newer one does.
    let (status, _) = server.json(
        "POST",
        "/v1/push/user_stats",
        &json!({"columns": {"user_id": [1, 3], "event_timestamp": [T0 - DAY, T0],
            "txn_amount_avg_7d": [999.0, 2.5], "txn_amount_max_7d": [1.0, 1.0], "account_age_days": [1, 1]}}),
    );
    assert_eq!(status, 200);
    let (_, body) = features(&server, json!([1, 3]), json!([1.0, 1.0]));
    assert_eq!(
        column(&body, "user_stats:txn_amount_avg_7d")["values"],
        json!([50.0, 2.5])
    );

    // Ad-hoc feature lists, discovery, health and metrics.
    let (status, body) = server.json(
        "POST",
        "/v1/features",
        &json!({"features": ["user_stats:account_age_days"], "entities": {"user_id": [3]}, "request_time": T0}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["values"], json!([1]));
    let (_, views) = server.json("GET", "/v1/feature-views", &json!(null));
    assert_eq!(views["feature_views"][0]["owner"], "risk-team");
    assert_eq!(views["feature_views"][0]["online_rows"], 3);
    let (_, services) = server.json("GET", "/v1/feature-services", &json!(null));
    assert_eq!(
        services["feature_services"][0]["transforms"][0]["module"],
        "fraud_risk@1.0.0"
    );
    assert_eq!(
        services["feature_services"][0]["request_schema"][0]["name"],
        "amount"
    );
    let (status, _) = server.call("GET", "/healthz", b"", None);
    assert_eq!(status, 200);
    let (_, metrics) = server.call("GET", "/metrics", b"", None);
    for needle in [
        "skewless_requests_total{service=\"fraud_v1\",code=\"200\"}",
        "skewless_request_duration_seconds_bucket{service=\"fraud_v1\",le=",
        "skewless_transform_call_duration_seconds_count{transform=\"txn_risk\",module=\"fraud_risk@1.0.0\"}",
        "skewless_online_rows{view=\"user_stats\"} 3",
        "skewless_online_bytes{view=\"user_stats\"} ",
        "skewless_wal_bytes_since_snapshot",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
}

#[test]
fn every_refusal_is_a_4xx_naming_the_problem_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None);
    setup(&server);
    push_users(&server);
    let definitions_before = server.call("GET", "/v1/definitions", b"", None);
    let modules_before = server.call("GET", "/v1/transforms", b"", None);

    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("POST", "/v1/features", b"{not json".to_vec(), 400, "invalid JSON body"),
        ("POST", "/v1/features", br#"{"feature_service": "nope", "entities": {}}"#.to_vec(), 404, "unknown feature service `nope`"),
        ("POST", "/v1/features", br#"{"features": [], "entities": {}}"#.to_vec(), 400, "no features requested"),
        ("POST", "/v1/features", br#"{"features": ["user_stats:nope"], "entities": {}}"#.to_vec(), 400, "has no feature `nope`"),
        ("POST", "/v1/features", br#"{"feature_service": "fraud_v1", "entities": {"user_id": ["a"]}, "request_data": {"amount": [1.0]}}"#.to_vec(), 400, "entities.user_id[0]: expected int64, got a string"),
        ("POST", "/v1/features", br#"{"feature_service": "fraud_v1", "entities": {"user_id": [1, 2]}, "request_data": {"amount": [1.0]}}"#.to_vec(), 400, "request_data.amount has 1 values"),
        ("POST", "/v1/features", br#"{"feature_service": "fraud_v1", "entities": {"user_id": [1]}}"#.to_vec(), 400, "request_data.amount is missing"),
        ("POST", "/v1/features", br#"{"feature_service": "fraud_v1", "entities": {"user": [1]}, "request_data": {"amount": [1.0]}}"#.to_vec(), 400, "entities.user_id is missing"),
        ("POST", "/v1/features", br#"{"feature_service": "fraud_v1", "entities": {"user_id": [1]}, "request_data": {"amount": ["x"]}}"#.to_vec(), 400, "request_data.amount[0]: expected float64, got a string"),
        ("POST", "/v1/features", br#"{"feature_service": "fraud_v1", "entity": {}}"#.to_vec(), 400, "unknown field `entity`"),
        ("POST", "/v1/features", vec![b' '; 2 << 20], 413, ""),
        ("PUT", "/v1/definitions", b"project: [".to_vec(), 422, "line"),
        ("PUT", "/v1/definitions", DEFS.replace("fraud_risk@1.0.0", "fraud_risk@9.9.9").into_bytes(), 422, "module `fraud_risk@9.9.9` is not uploaded"),
        ("PUT", "/v1/definitions", DEFS.replace("dtype: int64}]}", "dtype: float64}]}").into_bytes(), 422, "declares input `account_age_days` as int64"),
        ("PUT", "/v1/transforms/bad/1.0.0", b"not wasm at all".to_vec(), 422, "not a WebAssembly file"),
        ("PUT", "/v1/transforms/other/1.0.0", read(skewless_test_artifacts::OTHER_WORLD), 422, "does not implement"),
        ("PUT", "/v1/transforms/fraud_risk/1.0.0", read(ECHO), 409, "already exists with sha256"),
        ("PUT", "/v1/transforms/-bad/1", read(ECHO), 422, "module name `-bad`"),
        ("POST", "/v1/push/nope", br#"{"columns": {}}"#.to_vec(), 404, "unknown source `nope`"),
        ("POST", "/v1/push/user_stats", br#"{"columns": {"user_id": [1], "event_timestamp": ["soon"]}}"#.to_vec(), 400, "columns.event_timestamp[0]: `soon` is not an RFC 3339 timestamp"),
        ("POST", "/v1/push/user_stats", br#"{"columns": {"user_id": [1], "event_timestamp": [1], "txn_amount_avg_7d": [1.0]}}"#.to_vec(), 400, "columns.txn_amount_max_7d is missing"),
        ("POST", "/v1/push/user_stats", br#"{"columns": {"user_id": [1, 2], "event_timestamp": [1]}}"#.to_vec(), 400, "every column needs one value per row"),
        ("POST", "/v1/push/user_stats", br#"{"columns": {"user_id": [1], "event_timestamp": [1], "txn_amount_avg_7d": [1.0], "txn_amount_max_7d": [1.0], "account_age_days": [1], "colour": ["red"]}}"#.to_vec(), 400, "columns.colour is not a join key"),
        // Modules have their own, larger cap (8 MiB here; other bodies 1 MiB).
        ("PUT", "/v1/transforms/big/1", vec![0; 2 << 20], 422, "not a WebAssembly file"),
        ("PUT", "/v1/transforms/big/1", vec![0; 9 << 20], 413, ""),
        ("GET", "/v1/transforms/nope", Vec::new(), 404, "no module `nope`"),
        ("GET", "/v2/nothing", Vec::new(), 404, "no such route"),
    ];
    for (method, path, body, status, needle) in cases {
        let (got, text) = server.call(method, path, &body, None);
        assert_eq!(got, status, "{method} {path}: {text}");
        assert!(
            text.contains(needle),
            "{method} {path}: {text:?} lacks {needle:?}"
        );
        if !text.is_empty() {
            let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
            assert!(
                parsed["error"].is_string(),
                "one JSON error message: {text}"
            );
        }
    }
    // A refused apply gives each problem's line and path, as text and for tools.
    let misnamed = DEFS.replace("source: user_stats,", "source: user_statz,");
    let (status, text) = server.call("PUT", "/v1/definitions", misnamed.as_bytes(), None);
    assert_eq!(status, 422, "{text}");
    let refused: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        refused["problems"],
        json!([{"at": "feature_views[0] \"user_stats\" .source", "line": 6,
                "message": "unknown source `user_statz`"}])
    );
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("line 6, feature_views[0] \"user_stats\" .source: unknown source"),
        "{text}"
    );
    assert_eq!(
        server.call("GET", "/v1/definitions", b"", None),
        definitions_before
    );
    assert_eq!(
        server.call("GET", "/v1/transforms", b"", None),
        modules_before
    );
    // Nothing pushed by a refused push.
    let (_, body) = features(&server, json!([1]), json!([1.0]));
    assert_eq!(
        column(&body, "user_stats:txn_amount_avg_7d")["values"],
        json!([50.0])
    );
    // The same bytes again are fine.
    let (status, _) = server.call(
        "PUT",
        "/v1/transforms/fraud_risk/1.0.0",
        &read(FRAUD_RISK),
        None,
    );
    assert_eq!(status, 200);
}

/// One rule per condition: every route that needs applied definitions answers 404 with
/// the same message before any are applied (some once said 400), and a body that is
/// not JSON is the same 400 on every JSON route.
#[test]
fn before_any_apply_every_route_that_needs_definitions_says_so_alike() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None);
    let needs = [
        (
            "POST",
            "/v1/features",
            json!({"feature_service": "fraud_v1", "entities": {}}),
        ),
        (
            "POST",
            "/v1/features",
            json!({"features": ["user_stats:*"], "entities": {}}),
        ),
        ("POST", "/v1/push/user_stats", json!({"columns": {}})),
        (
            "POST",
            "/v1/backfill",
            json!({"service": "fraud_v1", "entities": "e.parquet", "out": "o.parquet"}),
        ),
        ("POST", "/v1/materialize", json!({"end": 0})),
        ("POST", "/v1/verify", json!({"service": "fraud_v1"})),
        ("GET", "/v1/definitions", json!(null)),
    ];
    for (method, path, body) in needs {
        let (status, reply) = server.json(method, path, &body);
        assert_eq!(status, 404, "{method} {path}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("no definitions applied yet"),
            "{method} {path}: {error}"
        );
    }
    for path in [
        "/v1/features",
        "/v1/push/user_stats",
        "/v1/backfill",
        "/v1/materialize",
        "/v1/verify",
    ] {
        let (status, text) = server.call("POST", path, b"{not json", None);
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("invalid JSON body"), "{path}: {text}");
    }
}

/// Every error is a JSON `{"error": ...}`, also those axum answers before a handler
/// runs: a bad or missing query string, a path segment that is not UTF-8, a method the
/// route does not take (these were text/plain or empty).
#[test]
fn errors_from_before_the_handler_are_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None);
    let cases = [
        (
            "GET",
            "/v1/feature-services/fraud_v1/drift",
            400,
            "query string",
        ),
        (
            "GET",
            "/v1/feature-services/fraud_v1/sample?rows=abc",
            400,
            "query string",
        ),
        ("GET", "/v1/transforms/%ff/1", 400, "path"),
        (
            "DELETE",
            "/v1/definitions",
            405,
            "does not take that method",
        ),
        (
            "GET",
            "/v1/push/user_stats",
            405,
            "does not take that method",
        ),
    ];
    for (method, path, want, says) in cases {
        let (status, text) = server.call(method, path, b"", None);
        assert_eq!(status, want, "{method} {path}: {text}");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text:?}"));
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{method} {path}: {error}");
    }
}

/// While the store cannot write, a push is a 503 that names the cause (not a generic
/// 500), health says `degraded` and the gauge says 0; reads are still served, and once
/// there is room pushes succeed again without a restart.
#[test]
fn a_store_that_cannot_write_answers_503_with_the_cause_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let layer = crate::support::FaultyStore::full_disk(full.clone());
    let server = TestServer::start_layered(dir.path(), |_| {}, layer);
    setup(&server);
    push_users(&server);
    full.store(true, Ordering::SeqCst);
    let body = json!({"columns": {
        "user_id": [9], "event_timestamp": [T0], "created": [0],
        "txn_amount_avg_7d": [1.0], "txn_amount_max_7d": [1.0], "account_age_days": [1],
    }});
    let (status, reply) = server.json("POST", "/v1/push/user_stats", &body);
    assert_eq!(status, 503, "{reply}");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(error.contains("No space left on device"), "{error}");
    let (_, health) = server.json("GET", "/healthz", &json!(null));
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["store"]["writable"], false, "{health}");
    let (_, metrics) = server.call("GET", "/metrics", b"", None);
    assert!(metrics.contains("skewless_online_writable 0"), "{metrics}");
    let (status, _) = features(&server, json!([1]), json!([10.0]));
    assert_eq!(status, 200, "reads are served meanwhile");

    full.store(false, Ordering::SeqCst);
    let (status, reply) = server.json("POST", "/v1/push/user_stats", &body);
    assert_eq!(status, 200, "{reply}");
    let (_, health) = server.json("GET", "/healthz", &json!(null));
    assert_eq!(health["status"], "ok", "{health}");
}

/// Slow and idle clients cannot hold the server's connections: one that never finishes
/// its headers is cut off after the header-read timeout (they were held forever), and with
/// the cap reached one more connection is answered 503 with a JSON error and closed. The
/// server keeps answering throughout, and a freed slot serves again.
#[test]
fn slow_clients_are_cut_off_and_connections_over_the_cap_are_refused() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_configured(dir.path(), |config| {
        config.header_read_timeout = Duration::from_millis(300);
    });
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: skewless\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a slow client held its connection for {:?}",
        started.elapsed()
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "{answer:?}"
    );
    assert_eq!(server.call("GET", "/healthz", b"", None).0, 200);

    let dir = tempfile::tempdir().unwrap();
    let capped = TestServer::start_configured(dir.path(), |config| {
        config.max_connections = 2;
    });
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(capped.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(capped.addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut refused = String::new();
    extra.read_to_string(&mut refused).unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let body: Value = serde_json::from_str(refused.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many connections"),
        "{body}"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Until the server has seen the held connections close, an ask is refused too.
    let mut refusals = 1;
    let metrics = loop {
        let (status, text) = capped.call("GET", "/metrics", b"", None);
        if status == 200 {
            break text;
        }
        assert_eq!(status, 503, "{text}");
        refusals += 1;
        assert!(Instant::now() < deadline, "slots were not freed: {status}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        metrics.contains(&format!(
            "\nskewless_connections_refused_total {refusals}\n"
        )),
        "{metrics}"
    );
}

#[test]
fn writes_need_the_token_and_open_addresses_need_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Some("s3cret"));
    let module = read(FRAUD_RISK);
    for token in [None, Some("wrong")] {
        let (status, body) = server.call("PUT", "/v1/transforms/fraud_risk/1.0.0", &module, token);
        assert_eq!(status, 401, "{body}");
        let (status, _) = server.call("PUT", "/v1/definitions", DEFS.as_bytes(), token);
        assert_eq!(status, 401);
        for write in [
            "/v1/push/user_stats",
            "/v1/backfill",
            "/v1/materialize",
            "/v1/verify",
        ] {
            let (status, _) = server.call("POST", write, b"{}", token);
            assert_eq!(status, 401, "{write}");
        }
        // Served rows and drift reports expose request data: guarded like writes.
        for read in [
            "/v1/feature-services/fraud_v1/sample",
            "/v1/feature-services/fraud_v1/drift?training=t.parquet",
        ] {
            let (status, _) = server.call("GET", read, b"", token);
            assert_eq!(status, 401, "{read}");
        }
    }
    assert_eq!(
        server.call("GET", "/v1/transforms", b"", None).1,
        r#"{"transforms":[]}"#
    );
    let (status, _) = server.call(
        "PUT",
        "/v1/transforms/fraud_risk/1.0.0",
        &module,
        Some("s3cret"),
    );
    assert_eq!(status, 201);

    let mut config = skewless_server::ServerConfig::new(dir.path().join("other"));
    config.listen = "0.0.0.0:0".parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let refused = runtime.block_on(skewless_server::Server::bind(
        config,
        crate::support::engine().clone(),
    ));
    assert!(matches!(
        refused,
        Err(skewless_server::StartError::Insecure(_))
    ));
}

const HOSTILE_DEFS: &str = r#"
project: hostile
entities: [{name: user, join_keys: [user_id]}]
sources: [{name: s}]
feature_views:
  - {name: v, entities: [user], source: s, features: [{name: x, dtype: float64}]}
transforms:
  # Declared before the transform it reads: the plan orders them.
  - {name: up, module: upper@1, inputs: [h:s]}
  - {name: h, module: hostile@1, inputs: [request:mode, v:x], request_schema: [{name: mode, dtype: string}]}
feature_services: [{name: svc, features: ["v:x", "h:y", "up:len"]}]
"#;

#[test]
fn a_failing_transform_gives_transform_error_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None);
    assert_eq!(
        server
            .call("PUT", "/v1/transforms/hostile/1", &read(HOSTILE), None)
            .0,
        201
    );
    let upper = read(skewless_test_artifacts::BENCH_STRING);
    assert_eq!(
        server.call("PUT", "/v1/transforms/upper/1", &upper, None).0,
        201
    );
    let (status, body) = server.call("PUT", "/v1/definitions", HOSTILE_DEFS.as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.json(
        "POST",
        "/v1/push/s",
        &json!({"columns": {"user_id": [1], "event_timestamp": [1], "x": [4.5]}}),
    );
    assert_eq!(status, 200);
    for mode in ["panic", "trap", "loop", "alloc", "error", "ok"] {
        let (status, body) = server.json(
            "POST",
            "/v1/features",
            &json!({"feature_service": "svc", "entities": {"user_id": [1, 2]},
                    "request_data": {"mode": [mode, mode]}, "request_time": 10}),
        );
        assert_eq!(status, 200, "{mode}: {body}");
        assert_eq!(
            body["results"][0]["values"],
            json!([4.5, null]),
            "{mode}: stored features stand"
        );
        let expected = if mode == "ok" {
            json!(["PRESENT", "NULL_VALUE"])
        } else {
            json!(["TRANSFORM_ERROR", "TRANSFORM_ERROR"])
        };
        assert_eq!(body["results"][1]["statuses"], expected, "{mode}: {body}");
        // `up` reads `h:s`: it runs after `h`, and fails with it.
        let downstream = &body["results"][2]["statuses"];
        if mode == "ok" {
            assert_eq!(*downstream, json!(["NULL_VALUE", "NULL_VALUE"]), "{body}");
        } else {
            assert_eq!(
                *downstream,
                json!(["TRANSFORM_ERROR", "TRANSFORM_ERROR"]),
                "{mode}: {body}"
            );
        }
    }
    let (_, metrics) = server.call("GET", "/metrics", b"", None);
    assert!(
        metrics.contains("skewless_transform_errors_total{transform=\"h\",module=\"hostile@1\"} 5"),
        "{metrics}"
    );
}

/// A valid component with other bytes: the same code plus a custom section.
fn with_custom_section(mut bytes: Vec<u8>, tag: &str) -> Vec<u8> {
    let name = b"skewless-test";
    let payload_len = 1 + name.len() + tag.len();
    bytes.push(0);
    bytes.push(payload_len as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

#[test]
fn a_new_version_goes_live_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(TestServer::start(dir.path(), None));
    setup(&server);
    push_users(&server);
    let v2 = with_custom_section(read(FRAUD_RISK), "v2");
    let (status, body) = server.call("PUT", "/v1/transforms/fraud_risk/2.0.0", &v2, None);
    assert_eq!(status, 201, "{body}");

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (server, stop, served) = (server.clone(), stop.clone(), served.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = features(&server, json!([1]), json!([150.0]));
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(
                        column(&body, "txn_risk:amount_zscore_proxy")["values"],
                        json!([2.0])
                    );
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let v2_defs = DEFS.replace("fraud_risk@1.0.0", "fraud_risk@2.0.0");
    for round in 0..10 {
        let defs = if round % 2 == 0 { &v2_defs } else { DEFS };
        let (status, body) = server.call("PUT", "/v1/definitions", defs.as_bytes(), None);
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("no request failed");
    }
    assert!(
        served.load(Ordering::Relaxed) > 20,
        "requests ran during the swaps"
    );
    let (_, services) = server.json("GET", "/v1/feature-services", &json!(null));
    assert_eq!(
        services["feature_services"][0]["transforms"][0]["module"],
        "fraud_risk@1.0.0"
    );
    // Both versions really served, and the last apply is the one that serves now.
    let calls = |version: &str| {
        let (_, metrics) = server.call("GET", "/metrics", b"", None);
        counter(
            &metrics,
            &format!(
                "skewless_transform_calls_total{{transform=\"txn_risk\",module=\"fraud_risk@{version}\"}}"
            ),
        )
    };
    let (v1, v2) = (calls("1.0.0"), calls("2.0.0"));
    assert!(v1 > 0 && v2 > 0, "calls: 1.0.0 {v1}, 2.0.0 {v2}");
    features(&server, json!([1]), json!([150.0]));
    assert_eq!((calls("1.0.0"), calls("2.0.0")), (v1 + 1, v2));
}

/// The value of the Prometheus series `series` (name and labels) in `metrics`, 0 if absent.
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_restart_keeps_the_registry_and_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let server = TestServer::start(dir.path(), None);
        setup(&server);
        push_users(&server);
        features(&server, json!([1, 2, 3]), json!([1.0, 2.0, 3.0])).1
    };
    let server = TestServer::start(dir.path(), None);
    let after = features(&server, json!([1, 2, 3]), json!([1.0, 2.0, 3.0])).1;
    assert_eq!(after, before);
    assert_eq!(
        server.json("GET", "/v1/transforms", &json!(null)).1["transforms"][0]["name"],
        "fraud_risk"
    );
}

const ECHO_DEFS: &str = r#"
project: echo
entities: [{name: user, join_keys: [user_id]}]
sources: [{name: s}]
feature_views:
  - {name: v, entities: [user], source: s, features: [{name: flag, dtype: bool}]}
transforms:
  - name: echo
    module: echo@1
    inputs: [{from: "v:flag", as: b}, "request:i", "request:f", "request:s",
             {from: "request:request_time", as: t}, "request:e"]
    request_schema: [{name: i, dtype: int64}, {name: f, dtype: float64},
                     {name: s, dtype: string}, {name: e, dtype: float32_list}]
feature_services: [{name: svc, features: ["echo:*"]}]
"#;

#[test]
fn every_dtype_crosses_json_and_inputs_can_be_renamed_and_read_the_request_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None);
    assert_eq!(
        server
            .call("PUT", "/v1/transforms/echo/1", &read(ECHO), None)
            .0,
        201
    );
    let (status, body) = server.call("PUT", "/v1/definitions", ECHO_DEFS.as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.json(
        "POST",
        "/v1/push/s",
        &json!({"columns": {"user_id": [1], "event_timestamp": [T0 - 1], "flag": [true]}}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.json(
        "POST",
        "/v1/features",
        &json!({"feature_service": "svc", "entities": {"user_id": [1, 2]},
                "request_data": {"i": [1, null], "f": [-0.0, "NaN"], "s": ["héllo", ""],
                                 "e": [[1.5, -2.0], []]},
                "request_time": "2026-11-20T00:00:00Z"}),
    );
    assert_eq!(status, 200, "{body}");
    let values = |name: &str| column(&body, name)["values"].clone();
    assert_eq!(values("echo:b"), json!([true, null]));
    assert_eq!(values("echo:i"), json!([1, null]));
    assert_eq!(values("echo:f"), json!([-0.0, "NaN"]));
    assert_eq!(values("echo:s"), json!(["héllo", ""]));
    assert_eq!(
        values("echo:t"),
        json!(["2026-11-20T00:00:00.000000Z", "2026-11-20T00:00:00.000000Z"]),
        "request:request_time is the time the request is served as of"
    );
    assert_eq!(values("echo:e"), json!([[1.5, -2.0], []]));

    // `request_time` is implicit: declaring it is refused.
    let declared = ECHO_DEFS.replace(
        "{name: i, dtype: int64}",
        "{name: request_time, dtype: timestamp}, {name: i, dtype: int64}",
    );
    let (status, body) = server.call("PUT", "/v1/definitions", declared.as_bytes(), None);
    assert_eq!(status, 422);
    assert!(body.contains("`request_time` is implicit"), "{body}");
}

/// Every node of `value`, as JSON pointers (`/entities/user_id/0`), the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// `base` with one to three random changes: a node replaced by an odd value, a key
/// dropped or added, an array grown or shrunk; or its text cut short or a byte changed.
fn mutate(rng: &mut crate::support::Lcg, base: &Value) -> Vec<u8> {
    let odd = [
        json!(null),
        json!(true),
        json!(-1),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(-9_223_372_036_854_775_808i64),
        json!(1e308),
        json!(-0.0),
        json!(0.5),
        json!(""),
        json!("NaN"),
        json!("-inf"),
        json!("2026-13-45T00:00:00Z"),
        json!("9999-12-31T23:59:59Z"),
        json!("x".repeat(10_000)),
        json!("\u{0}\u{ffff}é"),
        json!([]),
        json!({}),
        json!([[1, 2], [3]]),
        json!({"user_id": [1]}),
        json!([null, null, null]),
    ];
    let mut value = base.clone();
    for _ in 0..=rng.next(3) {
        let mut all = Vec::new();
        pointers(&value, String::new(), &mut all);
        let at = rng.pick(&all);
        let Some(node) = value.pointer_mut(&at) else {
            continue;
        };
        match rng.next(4) {
            0 | 1 => *node = rng.pick(&odd),
            2 => match node {
                Value::Object(map) if !map.is_empty() => {
                    let key = rng.pick(&map.keys().cloned().collect::<Vec<_>>());
                    map.remove(&key);
                }
                Value::Object(map) => {
                    map.insert("extra".into(), rng.pick(&odd));
                }
                Value::Array(items) if rng.chance(50) && !items.is_empty() => {
                    items.pop();
                }
                Value::Array(items) => items.push(rng.pick(&odd)),
                other => *other = json!([rng.pick(&odd)]),
            },
            _ => {
                if let Value::Object(map) = node {
                    map.insert(
                        rng.pick(&["request_time", "sample", "zzz", "features"])
                            .into(),
                        rng.pick(&odd),
                    );
                }
            }
        }
    }
    let mut bytes = serde_json::to_vec(&value).unwrap();
    if rng.chance(15) {
        bytes.truncate(rng.next(bytes.len() as u64) as usize);
    } else if rng.chance(15) {
        let i = rng.next(bytes.len() as u64) as usize;
        bytes[i] = rng.next(256) as u8;
    }
    bytes
}

#[test]
fn random_malformed_requests_get_4xx_never_5xx_and_refused_pushes_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None);
    setup(&server);
    push_users(&server);
    let request = json!({"feature_service": "fraud_v1", "entities": {"user_id": [1, 2, 3]},
                         "request_data": {"amount": [150.0, 10.0, 7.0]}, "request_time": T0 + 1});
    let push = json!({"columns": {"user_id": [7, 8], "event_timestamp": [T0, "2026-11-19T00:00:00Z"],
        "created": [0, 1], "txn_amount_avg_7d": [1.5, null], "txn_amount_max_7d": [2.0, 3.0],
        "account_age_days": [4, 5]}});
    let stored = |server: &TestServer| {
        let (_, views) = server.json("GET", "/v1/feature-views", &json!(null));
        let (_, answer) = server.json(
            "POST",
            "/v1/features",
            &json!({"features": ["user_stats:*"], "entities": {"user_id": [1, 2, 3, 7, 8]},
                    "request_time": T0 + 1}),
        );
        (views["feature_views"][0]["online_rows"].clone(), answer)
    };
    let mut rng = crate::support::Lcg(0x5eed_f00d);
    let (mut served, mut refused) = (0, 0);
    for round in 0..600 {
        let (path, base) = if round % 3 == 2 {
            ("/v1/push/user_stats", &push)
        } else {
            ("/v1/features", &request)
        };
        let body = mutate(&mut rng, base);
        let before = (path != "/v1/features").then(|| stored(&server));
        let (status, text) = server.call("POST", path, &body, None);
        let shown = String::from_utf8_lossy(&body);
        assert!(
            (200..500).contains(&status),
            "{status} for POST {path} {shown:.300}: {text:.300}"
        );
        if status >= 400 {
            refused += 1;
            let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
            assert!(parsed["error"].is_string(), "{text}");
            if let Some(before) = before {
                assert_eq!(
                    stored(&server),
                    before,
                    "a refused push changed the store: {shown:.300}"
                );
            }
        } else {
            served += 1;
        }
    }
    assert!(
        served > 50 && refused > 200,
        "served {served}, refused {refused}"
    );
    let (status, body) = features(&server, json!([1]), json!([150.0]));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_source_with_push_false_refuses_pushes_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None);
    let (status, body) = server.call(
        "PUT",
        "/v1/transforms/fraud_risk/1.0.0",
        &read(FRAUD_RISK),
        None,
    );
    assert_eq!(status, 201, "{body}");
    let defs = DEFS.replace(
        "created_timestamp_field: created}",
        "created_timestamp_field: created, push: false}",
    );
    assert_ne!(defs, DEFS);
    let (status, body) = server.call("PUT", "/v1/definitions", defs.as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.json(
        "POST",
        "/v1/push/user_stats",
        &json!({"columns": {"user_id": [1], "event_timestamp": [T0], "created": [0],
            "txn_amount_avg_7d": [1.0], "txn_amount_max_7d": [1.0], "account_age_days": [1]}}),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("`push: false`"),
        "{body}"
    );
    let (_, body) = features(&server, json!([1]), json!([1.0]));
    assert_eq!(
        column(&body, "user_stats:txn_amount_avg_7d")["statuses"],
        json!(["NOT_FOUND"])
    );
}

#[test]
fn an_event_source_refuses_pushes_it_could_not_keep_for_the_backfill() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), None);
    let defs = r#"
project: events
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: transactions, path: events.parquet, columns: [{name: amount, dtype: float64}]}
feature_views:
  - {name: user_txn, entities: [user], source: transactions, online: false, hop: 5m,
     aggregations: [{name: amount_mean_1h, function: mean, column: amount, window: 1h}]}
feature_services: [{name: txn, features: ["user_txn:*"]}]
"#;
    let (status, body) = server.call("PUT", "/v1/definitions", defs.as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    let push = json!({"columns": {"user_id": [1], "event_timestamp": [T0], "amount": [1.0]}});
    let (status, body) = server.json("POST", "/v1/push/transactions", &push);
    assert_eq!(status, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("feeds the aggregated view `user_txn`")
            && error.contains("created_timestamp_field"),
        "{body}"
    );
    // The view lists its typed aggregate features.
    let (_, views) = server.json("GET", "/v1/feature-views", &json!(null));
    assert_eq!(
        views["feature_views"][0]["features"],
        json!([{"name": "amount_mean_1h", "dtype": "float64"}])
    );
    // With arrival times and a directory, the same offline view takes pushes: they are
    // kept for the backfill although nothing serves them.
    let logged = defs.replace(
        "path: events.parquet,",
        "path: events/, created_timestamp_field: ingested_at,",
    );
    let (status, body) = server.call("PUT", "/v1/definitions", logged.as_bytes(), None);
    assert_eq!(status, 200, "{body}");
    // Its join keys are checked as keys although no online view reads them.
    let null_key =
        json!({"columns": {"user_id": [null], "event_timestamp": [T0], "amount": [1.0]}});
    let (status, body) = server.json("POST", "/v1/push/transactions", &null_key);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("columns.user_id[0]"),
        "{body}"
    );
    let (status, body) = server.json("POST", "/v1/push/transactions", &push);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], 1, "{body}");
    drop(server); // stopping flushes the log
    let logged: Vec<_> = std::fs::read_dir(dir.path().join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        logged.len() == 1 && logged[0].starts_with("events-"),
        "{logged:?}"
    );
}
