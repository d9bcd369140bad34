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

fn start(data_dir: &Path) -> (Running, SocketAddr) {
    start_with(data_dir, &[])
}

/// `skewless serve` on `data_dir` with `extra` arguments, snapshotting often (so a kill
/// also lands around snapshots and log rotation).
fn start_with(data_dir: &Path, extra: &[&str]) -> (Running, SocketAddr) {
    let mut args = vec!["--snapshot-after-mib", "1", "--snapshot-interval-secs", "1"];
    args.extend_from_slice(extra);
    start_exactly(data_dir, &args)
}

/// The `skewless serve` command line on `data_dir` with `extra` arguments.
fn serve_command(data_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skewless"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("SKEWLESS_LOG", "warn");
    command
}

/// A running `skewless serve`, killed on drop (so a failed test leaves no server behind).
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `skewless serve` on `data_dir` with `extra` arguments and nothing else.
fn start_exactly(data_dir: &Path, extra: &[&str]) -> (Running, SocketAddr) {
    let child = serve_command(data_dir, extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("skewless serve starts");
    listening(child)
}

/// A spawned `skewless serve` (stdout piped) and the address its first line names.
fn listening(mut child: Child) -> (Running, SocketAddr) {
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
    (Running(child), addr)
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

fn write_parquet(path: impl AsRef<Path>, batch: &arrow_array::RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// `skewless upload` of echo@1, then `skewless apply DEFS`, against `url`.
fn upload_echo_and_apply(url: &str, defs: &Path) {
    cli(&[
        "upload",
        artifacts::ECHO,
        "--name",
        "echo",
        "--version",
        "1",
        "--server",
        url,
    ]);
    cli(&["apply", defs.to_str().unwrap(), "--server", url]);
}

/// `skewless upload` of fraud_risk@1.0.0, then `skewless apply DEFS`, against `url`.
fn upload_fraud_risk_and_apply(url: &str, defs: &Path) {
    cli(&[
        "upload",
        artifacts::FRAUD_RISK,
        "--name",
        "fraud_risk",
        "--version",
        "1.0.0",
        "--server",
        url,
    ]);
    cli(&["apply", defs.to_str().unwrap(), "--server", url]);
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
    // The CLI's own upload and apply, against the running server.
    upload_echo_and_apply(&format!("http://{addr}"), &defs);

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
    let (_server, addr) = start(&data);
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
}

const EVENT_DEFS: &str = r#"
project: durability
entities: [{name: user, join_keys: [user_id]}]
sources:
  - {name: transactions, path: transactions/, timestamp_field: event_timestamp,
     created_timestamp_field: ingested_at, allowed_lateness: 1h,
     columns: [{name: seq, dtype: int64}]}
feature_views:
  - name: user_txn
    entities: [user]
    source: transactions
    hop: 1m
    aggregations:
      - {name: n_1h, function: count, window: 1h}
      - {name: seq_sum_1h, function: sum, column: seq, window: 1h}
feature_services: [{name: txn, features: ["user_txn:*"]}]
"#;

/// Every `seq` in the offline log under `dir`, in file order.
/// Waits until the server reports no pushed event outside the offline logs.
fn wait_for_flush(addr: SocketAddr) {
    let started = std::time::Instant::now();
    loop {
        let (status, metrics) = http(addr, "GET", "/metrics", "").expect("server answers");
        assert_eq!(status, 200, "{metrics}");
        if metrics.lines().any(|l| l == "skewless_events_unflushed 0") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "events still unflushed after 30 s:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn logged_seqs(dir: &Path) -> Vec<i64> {
    use arrow_array::cast::AsArray;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    names.sort();
    let mut seqs = Vec::new();
    for path in names {
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch.column_by_name("seq").expect("a seq column");
            seqs.extend(
                column
                    .as_primitive::<arrow_array::types::Int64Type>()
                    .values(),
            );
        }
    }
    seqs
}

#[test]
fn kill_9_during_an_event_push_loop_loses_none_and_counts_none_twice() {
    kill_9_during_an_event_push_loop(None);
}

#[test]
fn kill_9_during_an_event_push_loop_on_redis_loses_none_and_counts_none_twice() {
    let redis = skewless_test_artifacts::RedisServer::start();
    kill_9_during_an_event_push_loop(Some(&redis));
}

/// Pushes from four clients, `skewless serve` killed with -9 among them, restarted: every
/// acknowledged event is in the offline log and the tiles once, nothing else is. On
/// Redis, the tiles and the unflushed events live there, and the restart finds them.
fn kill_9_during_an_event_push_loop(redis: Option<&skewless_test_artifacts::RedisServer>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let defs = dir.path().join("defs.yaml");
    std::fs::write(&defs, EVENT_DEFS).unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let url = redis.map(|r| r.url());
    // Flushes and snapshots every second, so the kill lands among them.
    let mut flags = vec!["--source-root", &root, "--event-flush-secs", "1"];
    if let Some(url) = &url {
        flags.extend(["--redis", url]);
    }
    let (mut server, addr) = start_with(&data, &flags);
    cli(&[
        "apply",
        defs.to_str().unwrap(),
        "--server",
        &format!("http://{addr}"),
    ]);
    const USERS: i64 = 10;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4i64)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut acked, mut in_flight) = (Vec::new(), Vec::new());
                let mut batch = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let seqs: Vec<i64> = (0..50).map(|i| w * 10_000_000 + batch * 50 + i).collect();
                    let users: Vec<i64> = seqs.iter().map(|s| s % USERS).collect();
                    // Event times a second ago; the server stamps arrivals.
                    let at = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_micros() as i64
                        - 1_000_000;
                    let body = format!(
                        r#"{{"columns": {{"user_id": {users:?}, "event_timestamp": {ts:?}, "seq": {seqs:?}}}}}"#,
                        ts = vec![at; seqs.len()]
                    );
                    match http(addr, "POST", "/v1/push/transactions", &body) {
                        Some((200, _)) => acked.extend(seqs),
                        Some((status, text)) => panic!("push refused: {status} {text}"),
                        None => {
                            in_flight.extend(seqs);
                            break;
                        }
                    }
                    batch += 1;
                }
                (acked, in_flight)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(3000));
    server.kill().expect("kill -9");
    let _ = server.wait();
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut in_flight) = (Vec::new(), Vec::new());
    for w in writers {
        let (a, f) = w.join().expect("writer");
        acked.extend(a);
        in_flight.extend(f);
    }
    assert!(
        acked.len() >= 500,
        "only {} events acknowledged",
        acked.len()
    );

    let (_server, addr) = start_with(&data, &flags);
    // The restart flushed what the kill left in the log only (on Redis, the next flush
    // moves what the kill left in Redis): each event once.
    if redis.is_some() {
        wait_for_flush(addr);
    }
    let logged = logged_seqs(&dir.path().join("transactions"));
    let mut unique = logged.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        logged.len(),
        "an event is in the offline log twice"
    );
    let is_logged = |s: &i64| unique.binary_search(s).is_ok();
    let lost: Vec<&i64> = acked.iter().filter(|s| !is_logged(s)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let pushed: std::collections::HashSet<i64> = acked.iter().chain(&in_flight).copied().collect();
    assert!(
        unique.iter().all(|s| pushed.contains(s)),
        "the log holds an event nobody pushed"
    );
    // The tiles hold exactly the logged events: counts and sums per user.
    let users: Vec<i64> = (0..USERS).collect();
    let body = format!(r#"{{"feature_service": "txn", "entities": {{"user_id": {users:?}}}}}"#);
    let (status, text) = http(addr, "POST", "/v1/features", &body).expect("server answers");
    assert_eq!(status, 200, "{text}");
    let response: serde_json::Value = serde_json::from_str(&text).unwrap();
    for user in 0..USERS {
        let mine: Vec<i64> = unique
            .iter()
            .copied()
            .filter(|s| s % USERS == user)
            .collect();
        let (n, sum) = (
            &response["results"][0]["values"][user as usize],
            &response["results"][1]["values"][user as usize],
        );
        assert_eq!(n.as_i64(), Some(mine.len() as i64), "user {user}: count");
        assert_eq!(
            sum.as_f64(),
            Some(mine.iter().sum::<i64>() as f64),
            "user {user}: sum"
        );
    }
    eprintln!(
        "{} acknowledged events, {} in flight at kill -9; {} logged once each, and served",
        acked.len(),
        in_flight.len(),
        unique.len()
    );
}

/// `--max-connections` and `--header-timeout-secs` reach the accept loop: one
/// connection over the cap is answered 503, and connections that send nothing are closed
/// after the timeout, which frees their slots.
#[test]
fn serve_caps_connections_and_times_out_silent_ones_as_its_flags_say() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = start_exactly(
        &dir.path().join("data"),
        &["--max-connections", "2", "--header-timeout-secs", "1"],
    );
    let mut silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Both are accepted before the third arrives.
    std::thread::sleep(Duration::from_millis(200));
    let (status, body) = http(addr, "GET", "/healthz", "").expect("an answer");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    // The silent ones are closed by the server after about a second.
    for stream in &mut silent {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 64];
        let started = Instant::now();
        let read = stream.read(&mut buf);
        assert!(
            matches!(read, Ok(0))
                || read.is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
            "a silent connection was not closed"
        );
        assert!(started.elapsed() < Duration::from_secs(15));
    }
    let (status, body) = http(addr, "GET", "/healthz", "").expect("an answer");
    assert_eq!(status, 200, "{body}");
}

/// A damaged record in the middle of the newest log segment stops `serve` with an error
/// naming the segment, the byte and the flag; `--recover-skip-corrupt` then keeps every
/// intact record after it.
#[test]
fn serve_refuses_a_damaged_log_and_recover_skip_corrupt_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let defs = dir.path().join("defs.yaml");
    std::fs::write(&defs, DEFS).unwrap();
    let (mut server, addr) = start_exactly(&data, &[]);
    upload_echo_and_apply(&format!("http://{addr}"), &defs);
    // Three acknowledged records, one user each.
    for user in 1..=3 {
        let body = format!(
            r#"{{"columns": {{"user_id": [{user}], "event_timestamp": [1], "n": [{user}]}}}}"#
        );
        let (status, text) = http(addr, "POST", "/v1/push/events", &body).expect("an answer");
        assert_eq!(status, 200, "{text}");
    }
    server.kill().expect("kill -9");
    let _ = server.wait();

    // One byte flipped in the payload of the first push's record (records are framed
    // as a u32 length, a u32 checksum and the payload; the pushes are the last three).
    let mut segments: Vec<_> = std::fs::read_dir(data.join("online"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("wal-")
                && std::fs::metadata(p).unwrap().len() > 0
        })
        .collect();
    segments.sort();
    let segment = segments
        .last()
        .expect("a log segment with the pushes")
        .clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    let mut starts = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        starts.push(at);
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    assert_eq!(at, bytes.len(), "the log ends on a record boundary");
    let first_push = starts[starts.len() - 3];
    bytes[first_push + 12] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();

    let refused = serve_command(&data, &[]).output().expect("serve runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    let byte = format!("byte {first_push}");
    for needle in [name.as_str(), byte.as_str(), "--recover-skip-corrupt"] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bytes,
        "the refusal changed the log"
    );

    let (_server, addr) = start_exactly(&data, &["--recover-skip-corrupt"]);
    let body =
        r#"{"feature_service": "all", "entities": {"user_id": [1, 2, 3]}, "request_time": 10}"#;
    let (status, text) = http(addr, "POST", "/v1/features", body).expect("an answer");
    assert_eq!(status, 200, "{text}");
    let response: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        response["results"][0]["values"],
        serde_json::json!([null, 2, 3]),
        "{text}"
    );
}

/// Run out of descriptors (serve under a 128-descriptor limit, 200 held connections):
/// failed accepts are logged and counted, and once the clients go the server answers
/// again.
#[test]
fn serve_out_of_descriptors_logs_counts_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new("prlimit")
        .arg("--nofile=128:128")
        .arg(env!("CARGO_BIN_EXE_skewless"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("SKEWLESS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs skewless serve");
    let stderr = child.stderr.take().unwrap();
    let (mut server, addr) = listening(child);
    let held: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(held.len() > 128, "only {} connections made", held.len());
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    // Answers again once the held connections are gone (the loop retries every 50 ms).
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        if let Some((200, body)) = http(addr, "GET", "/metrics", "") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no answer after the connections closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("skewless_accept_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("skewless_accept_errors_total is exported");
    assert!(errors >= 1, "{metrics}");
    server.kill().ok();
    let _ = server.wait();
    let mut log = String::new();
    BufReader::new(stderr).read_to_string(&mut log).unwrap();
    assert!(
        log.contains("accepting a connection failed") && log.contains("Too many open files"),
        "{log}"
    );
}

/// A tmpfs mounted for a test (root only), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let root = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&root.stdout).trim() != "0" {
            return None;
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A real full disk (a small tmpfs filled up): a push is answered 503 naming the
/// cause, /healthz says the store is not writable, the failure is counted; once space is
/// freed pushes succeed again without a restart, and after kill -9 every acknowledged
/// push is there.
#[test]
fn a_full_disk_refuses_pushes_with_503_and_they_resume_when_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("disk");
    std::fs::create_dir(&mount).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&mount, "32m") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root (scripts/test runs as root in CI)");
        return;
    };
    let data = mount.join("data");
    let defs = dir.path().join("defs.yaml");
    std::fs::write(&defs, DEFS).unwrap();
    let (mut server, addr) = start_exactly(&data, &[]);
    upload_echo_and_apply(&format!("http://{addr}"), &defs);
    let push = |user: i64| {
        let body = format!(
            r#"{{"columns": {{"user_id": [{user}], "event_timestamp": [1], "n": [{user}]}}}}"#
        );
        http(addr, "POST", "/v1/push/events", &body).expect("an answer")
    };
    let mut acked = Vec::new();
    assert_eq!(push(1).0, 200);
    acked.push(1);

    // Fill the disk.
    let filler = mount.join("filler");
    {
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 1 << 16];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
    }
    // The log's last page may still hold a few records; the first write past it fails.
    let mut user = 2;
    let (status, body) = loop {
        let (status, body) = push(user);
        if status != 200 {
            break (status, body);
        }
        acked.push(user);
        user += 1;
        assert!(user < 10_000, "pushes never failed on a full disk");
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("No space left"), "{body}");
    let (_, health) = http(addr, "GET", "/healthz", "").unwrap();
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["store"]["writable"], false, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    let (_, metrics) = http(addr, "GET", "/metrics", "").unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("skewless_online_failed_writes ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Space back: writes resume by themselves.
    std::fs::remove_file(&filler).unwrap();
    for user in user + 1..user + 4 {
        let (status, body) = push(user);
        assert_eq!(status, 200, "{body}");
        acked.push(user);
    }
    let (_, health) = http(addr, "GET", "/healthz", "").unwrap();
    assert!(health.contains(r#""writable":true"#), "{health}");

    server.kill().expect("kill -9");
    let _ = server.wait();
    let (_server, addr) = start_exactly(&data, &[]);
    let body = format!(
        r#"{{"feature_service": "all", "entities": {{"user_id": {acked:?}}}, "request_time": 10}}"#
    );
    let (status, text) = http(addr, "POST", "/v1/features", &body).expect("an answer");
    assert_eq!(status, 200, "{text}");
    let response: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        response["results"][0]["values"],
        serde_json::json!(acked),
        "{text}"
    );
}

#[test]
fn backfill_at_t_equals_serving_at_t_bit_for_bit() {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    const DAY: i64 = 86_400_000_000;
    let t: i64 = 1_795_132_800_000_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let defs = dir.path().join("defs.yaml");
    let fraud_defs =
        artifacts::fraud_defs("path: user_stats.parquet, timestamp_field: event_timestamp");
    std::fs::write(&defs, &fraud_defs).unwrap();
    // History: several rows per user, one of them too old for the TTL at t.
    let users = [1i64, 1, 2, 2, 3];
    let ts = [t - 3 * DAY, t - DAY, t - 2 * DAY, t - 9 * DAY, t - 8 * DAY];
    let avg = [10.0, 0.1 + 0.2, 1e-300, 7.0, 5.0];
    let max = [20.0, f64::MIN_POSITIVE, -0.0, 9.0, 6.0];
    let age = [1i64, 2, 400, 3, 50];
    let history = RecordBatch::try_from_iter(vec![
        (
            "user_id",
            std::sync::Arc::new(Int64Array::from(users.to_vec())) as ArrayRef,
        ),
        (
            "event_timestamp",
            std::sync::Arc::new(TimestampMicrosecondArray::from(ts.to_vec()).with_timezone("UTC")),
        ),
        (
            "txn_amount_avg_7d",
            std::sync::Arc::new(Float64Array::from(avg.to_vec())),
        ),
        (
            "txn_amount_max_7d",
            std::sync::Arc::new(Float64Array::from(max.to_vec())),
        ),
        (
            "account_age_days",
            std::sync::Arc::new(Int64Array::from(age.to_vec())),
        ),
    ])
    .unwrap();
    write_parquet(dir.path().join("user_stats.parquet"), &history);
    let amounts = [150.0, 1e-9, 7.25, 3.0];
    let entities = RecordBatch::try_from_iter(vec![
        (
            "user_id",
            std::sync::Arc::new(Int64Array::from(vec![1i64, 2, 3, 4])) as ArrayRef,
        ),
        (
            "event_timestamp",
            std::sync::Arc::new(TimestampMicrosecondArray::from(vec![t; 4])),
        ),
        (
            "amount",
            std::sync::Arc::new(Float64Array::from(amounts.to_vec())),
        ),
    ])
    .unwrap();
    let entities_path = dir.path().join("entities.parquet");
    write_parquet(&entities_path, &entities);

    // Online: the same history pushed, features requested as of t.
    let (mut server, addr) = start(&data);
    let url = format!("http://{addr}");
    upload_fraud_risk_and_apply(&url, &defs);
    let push = serde_json::json!({"columns": {
        "user_id": users, "event_timestamp": ts, "txn_amount_avg_7d": avg,
        "txn_amount_max_7d": max, "account_age_days": age}});
    let (status, body) = http(addr, "POST", "/v1/push/user_stats", &push.to_string()).unwrap();
    assert_eq!(status, 200, "{body}");
    let request = serde_json::json!({"feature_service": "fraud_v1", "entities": {"user_id": [1, 2, 3, 4]},
        "request_data": {"amount": amounts}, "request_time": t});
    let (status, body) = http(addr, "POST", "/v1/features", &request.to_string()).unwrap();
    assert_eq!(status, 200, "{body}");
    let online: serde_json::Value = serde_json::from_str(&body).unwrap();
    server.kill().ok();
    let _ = server.wait();

    // Materialized instead of pushed: a fresh data directory loaded from the same Parquet
    // history by `skewless materialize` serves the same answer.
    let data2 = dir.path().join("data2");
    let (mut server, addr) = start(&data2);
    let url = format!("http://{addr}");
    upload_fraud_risk_and_apply(&url, &defs);
    let source_root = dir.path().to_str().unwrap();
    let data2_arg = data2.to_str().unwrap();
    let t_arg = t.to_string();
    let locked = Command::new(env!("CARGO_BIN_EXE_skewless"))
        .args(["materialize", "--start", "2026-01-01", "--end", &t_arg])
        .args(["--data-dir", data2_arg, "--source-root", source_root])
        .output()
        .unwrap();
    assert!(!locked.status.success());
    let stderr = String::from_utf8_lossy(&locked.stderr);
    assert!(
        stderr.contains("--server"),
        "says how to materialize into a running server: {stderr}"
    );
    server.kill().ok();
    let _ = server.wait();
    // `skewless materialize` of the whole history up to t into `data_dir`'s store, or
    // into the Redis store that `extra` names.
    let materialize = |data_dir: &str, extra: &[&str]| {
        let mut args = vec!["materialize", "--start", "2026-01-01", "--end", &t_arg];
        args.extend(["--data-dir", data_dir, "--source-root", source_root]);
        args.extend(extra);
        cli(&args);
    };
    materialize(data2_arg, &[]);
    // Incremental from the watermark (t) to t: nothing new in the window.
    let incremental = Command::new(env!("CARGO_BIN_EXE_skewless"))
        .args(["materialize-incremental", "--end", &t_arg])
        .args(["--data-dir", data2_arg, "--source-root", source_root])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&incremental.stdout);
    assert!(
        incremental.status.success(),
        "{}",
        String::from_utf8_lossy(&incremental.stderr)
    );
    assert!(
        stdout.contains("user_stats: 0 rows in the window"),
        "starts at the watermark: {stdout}"
    );
    let (mut server, addr) = start(&data2);
    let (status, body) = http(addr, "POST", "/v1/features", &request.to_string()).unwrap();
    assert_eq!(status, 200, "{body}");
    let materialized: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        materialized, online,
        "materialized rows serve what pushed rows serve"
    );

    // `skewless verify`: the rows just served, recomputed offline on this side from the
    // same Parquet history, at the watermark (t), agree bit for bit.
    let verify = |defs: &Path| {
        Command::new(env!("CARGO_BIN_EXE_skewless"))
            .args([
                "verify",
                "--service",
                "fraud_v1",
                "--server",
                &format!("http://{addr}"),
            ])
            .arg("--defs")
            .arg(defs)
            .env("SKEWLESS_CACHE_DIR", dir.path().join("cache"))
            .output()
            .unwrap()
    };
    let agreed = verify(&defs);
    let stdout = String::from_utf8_lossy(&agreed.stdout);
    assert!(
        agreed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&agreed.stderr)
    );
    assert!(
        stdout.contains(
            "at 2026-11-20T00:00:00.000000Z: 4 rows x 7 features = 28 values, 0 mismatches"
        ),
        "{stdout}"
    );
    // Data that drifted from what the server materialized is caught: user 2's latest
    // average differs in this copy of the history.
    let mut changed = avg;
    changed[2] = 2e-300;
    let copy = dir.path().join("changed");
    std::fs::create_dir_all(&copy).unwrap();
    let history = RecordBatch::try_new(
        history.schema(),
        history
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 2 {
                    std::sync::Arc::new(Float64Array::from(changed.to_vec())) as ArrayRef
                } else {
                    c.clone()
                }
            })
            .collect(),
    )
    .unwrap();
    write_parquet(copy.join("user_stats.parquet"), &history);
    std::fs::write(copy.join("defs.yaml"), &fraud_defs).unwrap();
    let differed = verify(&copy.join("defs.yaml"));
    let stdout = String::from_utf8_lossy(&differed.stdout);
    let stderr = String::from_utf8_lossy(&differed.stderr);
    assert!(!differed.status.success(), "{stdout}");
    assert!(
        stdout.contains("user_stats:txn_amount_avg_7d: 1 mismatches"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"{"user_id":2} user_stats:txn_amount_avg_7d: 1e-300 (PRESENT) | 2e-300"#),
        "{stdout}"
    );
    assert!(
        stderr.contains("values differ between serving and the offline path"),
        "{stderr}"
    );
    server.kill().ok();
    let _ = server.wait();

    // The store in Redis. `serve --redis` refuses a Redis that does not fsync every write.
    // With one that does, `materialize --redis` fills it while the server runs, and the
    // server serves what the pushed store served.
    let data3 = dir.path().join("data3");
    let lax = artifacts::RedisServer::start_fsync("everysec");
    let refused = Command::new(env!("CARGO_BIN_EXE_skewless"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data3)
        .args(["--redis", &lax.url()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("appendfsync always"), "{stderr}");
    // Redis options without --redis are a mistake, not silently ignored.
    let stray = Command::new(env!("CARGO_BIN_EXE_skewless"))
        .args(["materialize", "--end", "now", "--redis-prefix", "p"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&stray.stderr);
    assert!(!stray.status.success(), "{stderr}");
    assert!(stderr.contains("--redis <REDIS>"), "{stderr}");
    let redis = artifacts::RedisServer::start();
    let (mut server, addr) = start_with(&data3, &["--redis", &redis.url()]);
    upload_fraud_risk_and_apply(&format!("http://{addr}"), &defs);
    materialize(data3.to_str().unwrap(), &["--redis", &redis.url()]);
    let (status, body) = http(addr, "POST", "/v1/features", &request.to_string()).unwrap();
    assert_eq!(status, 200, "{body}");
    let from_redis: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        from_redis, online,
        "rows materialized into Redis serve what pushed rows serve"
    );
    server.kill().ok();
    let _ = server.wait();

    // Offline: the backfill command over the Parquet history.
    let out = dir.path().join("training.parquet");
    cli(&[
        "backfill",
        "--defs",
        defs.to_str().unwrap(),
        "--service",
        "fraud_v1",
        "--entities",
        entities_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&out).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let offline: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let offline = &offline[0];
    let names = online["metadata"]["feature_names"].as_array().unwrap();
    let columns: Vec<String> = offline
        .schema()
        .fields()
        .iter()
        .skip(3)
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
        columns,
        "same columns, same order"
    );
    for (i, name) in names.iter().enumerate() {
        let name = name.as_str().unwrap();
        let column = offline.column_by_name(name).unwrap();
        let values = online["results"][i]["values"].as_array().unwrap();
        for (row, value) in values.iter().enumerate() {
            use arrow_array::Array;
            use arrow_array::cast::AsArray;
            let served = match column.data_type() {
                arrow_schema::DataType::Float64 => column.is_valid(row).then(|| {
                    column
                        .as_primitive::<arrow_array::types::Float64Type>()
                        .value(row)
                        .to_bits()
                        .to_string()
                }),
                arrow_schema::DataType::Int64 => column.is_valid(row).then(|| {
                    column
                        .as_primitive::<arrow_array::types::Int64Type>()
                        .value(row)
                        .to_string()
                }),
                arrow_schema::DataType::Boolean => column
                    .is_valid(row)
                    .then(|| column.as_boolean().value(row).to_string()),
                other => panic!("unexpected {other}"),
            };
            let online_value = match value {
                serde_json::Value::Null => None,
                serde_json::Value::Number(n)
                    if column.data_type() == &arrow_schema::DataType::Float64 =>
                {
                    Some(n.as_f64().unwrap().to_bits().to_string())
                }
                serde_json::Value::String(s)
                    if column.data_type() == &arrow_schema::DataType::Float64 =>
                {
                    let v = match s.as_str() {
                        "Infinity" => f64::INFINITY,
                        "-Infinity" => f64::NEG_INFINITY,
                        _ => f64::NAN,
                    };
                    Some(v.to_bits().to_string())
                }
                other => Some(other.to_string()),
            };
            assert_eq!(
                online_value, served,
                "{name} row {row}: online {value} vs offline"
            );
        }
    }
}
