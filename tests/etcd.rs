//! A real etcd for the tests (Debian's `etcd-server`, which `.ci/setup`
//! installs), one member on loopback ports, its data in a temporary
//! directory.

use std::time::{Duration, Instant};

/// One etcd member on loopback, killed when dropped.
pub struct EtcdServer {
    child: std::process::Child,
    _data: tempfile::TempDir,
    /// Its client URL (`http://127.0.0.1:PORT`).
    pub url: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl EtcdServer {
    /// Starts a single-member cluster and waits until it serves clients.
    ///
    /// # Panics
    /// When `etcd` is not installed (run `.ci/setup`) or does not come up
    /// within 30 s.
    pub fn start() -> EtcdServer {
        let data = tempfile::tempdir().expect("a temporary directory");
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = std::process::Command::new("etcd")
            .args(["--name", "weir-test", "--data-dir"])
            .arg(data.path())
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("weir-test={peer_url}"),
                "--log-level",
                "error",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start etcd (run .ci/setup to install Debian's etcd-server)");
        let server = EtcdServer {
            child,
            _data: data,
            url,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.healthy() {
            assert!(Instant::now() < deadline, "etcd did not come up in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Whether it answers `GET /health` with `"health":"true"`.
    pub fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://");
        let Ok(mut c) = std::net::TcpStream::connect(addr) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        if write!(
            c,
            "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        answer.contains("\"health\":\"true\"")
    }

    /// Freezes the process (SIGSTOP): etcd neither answers nor closes its
    /// connections, as when a network partition cuts it off.
    pub fn pause(&self) {
        signal(self.child.id(), "STOP");
    }

    /// Resumes a paused etcd (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "CONT");
    }
}

fn signal(pid: u32, name: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{name} {pid}");
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EtcdServer {
    /// Writes `value` at `key` through etcd's JSON gateway (`/v3/kv/put`),
    /// as any client with access to etcd could.
    pub fn put(&self, key: &str, value: &[u8]) {
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://");
        let body = format!(
            "{{\"key\":\"{}\",\"value\":\"{}\"}}",
            base64(key.as_bytes()),
            base64(value)
        );
        let mut c = std::net::TcpStream::connect(addr).expect("etcd answers");
        write!(
            c,
            "POST /v3/kv/put HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write to etcd");
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "etcd put: {answer}");
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
