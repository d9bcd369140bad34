//! A Redis server for the tests of the Redis online store.

/// A `redis-server` of its own on 127.0.0.1, in a temporary directory, that fsyncs every
/// write (`appendonly yes`, `appendfsync always`) unless started otherwise. Killed on drop.
/// `redis-server` must be installed (scripts/test installs it); a test using this fails,
/// never skips, without it. Each server has its own password, so a test can never talk to
/// another test's server that happened to take the same port.
#[derive(Debug)]
pub struct RedisServer {
    /// The port it listens on.
    pub port: u16,
    password: String,
    dir: tempfile::TempDir,
    fsync: &'static str,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one that fsyncs every write.
    pub fn start() -> RedisServer {
        Self::start_fsync("always")
    }

    /// Starts one with `appendfsync` set to `fsync` (`always`, `everysec`, `no`).
    pub fn start_fsync(fsync: &'static str) -> RedisServer {
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut server = RedisServer {
            port: 0,
            password: format!("pw-{}-{n}", std::process::id()),
            dir: tempfile::tempdir().expect("a directory for redis"),
            fsync,
            child: None,
        };
        // A port free a moment ago may be taken by the time redis binds it: try another.
        for _ in 0..10 {
            server.port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if server.launch() {
                return server;
            }
        }
        panic!("redis-server could not bind a port in 10 tries");
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/0", self.password, self.port)
    }

    /// Sends one inline command (`DBSIZE`, `CONFIG SET appendfsync no`) and returns the
    /// first line of the reply, such as `:42` or `+OK`.
    pub fn command(&self, command: &str) -> String {
        use std::io::{BufRead, Write};
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("redis answers");
        stream
            .write_all(format!("AUTH {}\r\n{command}\r\n", self.password).as_bytes())
            .expect("redis takes the command");
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("redis replies");
        assert_eq!(line.trim_end(), "+OK", "AUTH");
        line.clear();
        reader.read_line(&mut line).expect("redis replies");
        line.trim_end().to_owned()
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and directory, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(
            self.launch(),
            "redis-server did not start again on port {}",
            self.port
        );
    }

    /// Starts `redis-server` on `self.port`; false if it exited (the port was taken).
    fn launch(&mut self) -> bool {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--requirepass")
            .arg(&self.password)
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it: apt-get install redis-server)");
        let child = self.child.insert(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if !matches!(child.try_wait(), Ok(None)) {
                self.child = None;
                return false;
            }
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let mut reply = [0u8; 12];
                let hello = format!("AUTH {}\r\nPING\r\n", self.password);
                if stream.write_all(hello.as_bytes()).is_ok()
                    && stream.read_exact(&mut reply).is_ok()
                    && &reply == b"+OK\r\n+PONG\r\n"
                {
                    return true;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
