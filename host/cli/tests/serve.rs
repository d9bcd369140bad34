//! `skewless serve`, `upload` and `apply` as a user runs them, and `kill -9` in the middle
//! of a push loop: after a restart every acknowledged write is there.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use skewless_test_artifacts as artifacts;

const DEFS: &str = r#"
project: durability
entities: [{name: user, join_keys: [user_id]}]
sources: [{name: events}]
feature_views:
  - {name: counts, entities: [user], source: events, features: [{name: n, dtype: int64}]}
feature_services: [{name: all, features: ["counts:*"]}]
"#;

fn start(data_dir: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_skewless"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        // Snapshot often, so the kill also lands around snapshots and log rotation.
        .args(["--snapshot-after-mib", "1", "--snapshot-interval-secs", "1"])
        .env("SKEWLESS_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("skewless serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("serve prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");
    (child, addr)
}

/// One HTTP/1.1 request on its own connection; `None` if the server went away.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

fn cli(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_skewless"))
        .args(args)
        .output()
        .expect("skewless runs");
    assert!(
        output.status.success(),
        "skewless {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn kill_9_during_a_push_loop_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let defs = dir.path().join("defs.yaml");
    std::fs::write(&defs, DEFS).unwrap();
    let (mut server, addr) = start(&data);
    let url = format!("http://{addr}");
    // The CLI's own upload and apply, against the running server.
    cli(&[
        "upload",
        artifacts::ECHO,
        "--name",
        "echo",
        "--version",
        "1",
        "--server",
        &url,
    ]);
    cli(&["apply", defs.to_str().unwrap(), "--server", &url]);

    // Four writers push batches of 50 users each, and record what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4i64)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut batch = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<i64> = (0..50).map(|i| (w * 1_000_000) + batch * 50 + i).collect();
                    let body = format!(
                        r#"{{"columns": {{"user_id": {ids:?}, "event_timestamp": {ts:?}, "n": {ids:?}}}}}"#,
                        ts = vec![1; ids.len()]
                    );
                    match http(addr, "POST", "/v1/push/events", &body) {
                        Some((200, _)) => acked.extend(ids),
                        Some((status, text)) => panic!("push refused: {status} {text}"),
                        None => break,
                    }
                    batch += 1;
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    server.kill().expect("kill -9");
    let _ = server.wait();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<i64> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    assert!(
        acked.len() >= 500,
        "only {} writes acknowledged before the kill",
        acked.len()
    );

    let started = Instant::now();
    let (mut server, addr) = start(&data);
    let recovered = started.elapsed();
    for chunk in acked.chunks(1000) {
        let body = format!(
            r#"{{"feature_service": "all", "entities": {{"user_id": {chunk:?}}}, "request_time": 10}}"#
        );
        let (status, text) = http(addr, "POST", "/v1/features", &body).expect("server answers");
        assert_eq!(status, 200, "{text}");
        let response: serde_json::Value = serde_json::from_str(&text).unwrap();
        let values = response["results"][0]["values"].as_array().unwrap();
        for (id, value) in chunk.iter().zip(values) {
            assert_eq!(
                value.as_i64(),
                Some(*id),
                "acknowledged write for user {id} lost"
            );
        }
    }
    eprintln!(
        "{} acknowledged writes all present after kill -9; restart took {recovered:?}",
        acked.len()
    );
    server.kill().ok();
    let _ = server.wait();
}
