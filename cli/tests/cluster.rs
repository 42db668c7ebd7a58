//! `weir worker` and `weir cluster` against a real etcd on loopback.

#![allow(clippy::unwrap_used)]

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir_tests::etcd::EtcdServer;

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// A `weir` process whose output lines (stdout and stderr) are collected.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = weir()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for pipe in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `text`; panics with what was seen.
    fn wait_for(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with `{text}` within {within:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "weir did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workers(etcd: &str) -> String {
    let out = weir()
        .args(["cluster", "workers", "--etcd", etcd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn worker(etcd: &str, id: &str, slots: &str) -> Running {
    let mut w = Running::start(&[
        "worker",
        "--etcd",
        etcd,
        "--id",
        id,
        "--slots",
        slots,
        "--lease-ttl",
        "2s",
    ]);
    w.wait_for(
        &format!("`{id}` joined the cluster"),
        Duration::from_secs(30),
    );
    w
}

#[test]
fn workers_join_leave_and_expire_with_their_lease() {
    let etcd = EtcdServer::start();
    let url = etcd.url.as_str();
    let mut w1 = worker(url, "w1", "2");
    let w2 = worker(url, "w2", "3");
    let list = workers(url);
    assert!(list.contains("w1") && list.contains("w2"), "{list}");
    assert!(list.contains("2 worker(s), 5 slot(s)"), "{list}");
    assert!(list.contains("ready"), "{list}");

    // A second worker with a live worker's id is refused, naming it.
    let out = weir()
        .args(["worker", "--etcd", url, "--id", "w1", "--lease-ttl", "2s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`w1` is registered already"), "{err}");

    // SIGTERM: the worker leaves at once (its lease is revoked).
    w1.signal("TERM");
    assert!(w1.wait(Duration::from_secs(10)).success());
    let list = workers(url);
    assert!(!list.contains("w1") && list.contains("w2"), "{list}");

    // SIGKILL: nothing leaves on its behalf; the lease expires.
    w2.signal("KILL");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = workers(url);
        if list.contains("no workers registered") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a killed worker is still listed after 15 s:\n{list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_worker_cut_off_from_etcd_leaves_and_joins_again() {
    let etcd = EtcdServer::start();
    let mut w = worker(&etcd.url, "lonely", "1");
    etcd.pause();
    w.wait_for("lost its membership", Duration::from_secs(20));
    etcd.resume();
    w.wait_for("joined the cluster again", Duration::from_secs(30));
    assert!(workers(&etcd.url).contains("lonely"));
}

#[test]
fn an_unreachable_etcd_is_a_clear_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let out = weir()
        .args([
            "worker",
            "--etcd",
            &url,
            "--etcd-timeout",
            "2s",
            "--id",
            "w",
        ])
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("worker `w` cannot join the cluster"), "{err}");
    assert!(err.contains(&url), "{err}");
    let out = weir()
        .args(["cluster", "workers", "--etcd", &url, "--etcd-timeout", "2s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&url));
}
