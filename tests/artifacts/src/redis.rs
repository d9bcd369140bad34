//! A Redis server for the tests of the Redis online store.

/// A `redis-server` of its own on 127.0.0.1, in a temporary directory, that fsyncs every
/// write (`appendonly yes`, `appendfsync always`) unless started otherwise. Killed on drop.
/// `redis-server` must be installed (scripts/test installs it); a test using this fails,
/// never skips, without it.
#[derive(Debug)]
pub struct RedisServer {
    /// The port it listens on.
    pub port: u16,
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().expect("a directory for redis"),
            fsync,
            child: None,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Sends one inline command (`DBSIZE`, `CONFIG SET appendfsync no`) and returns the
    /// first line of the reply, such as `:42` or `+OK`.
    pub fn command(&self, command: &str) -> String {
        use std::io::{BufRead, Write};
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("redis answers");
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .expect("redis takes the command");
        let mut line = String::new();
        std::io::BufReader::new(stream)
            .read_line(&mut line)
            .expect("redis replies");
        line.trim_end().to_owned()
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port and directory, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
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
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let mut reply = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return;
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
