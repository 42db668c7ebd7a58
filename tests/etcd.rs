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
