//! An S3-compatible server for the tests: moto's (`.ci/setup` installs it),
//! on loopback.

use std::time::{Duration, Instant};

/// An S3-compatible server (moto's, installed by `.ci/setup`) on loopback,
/// killed when dropped.
pub struct S3Server {
    child: std::process::Child,
    /// Its loopback port.
    pub port: u16,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// Starts a server with one bucket, `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start python3 -m moto.server (run .ci/setup to install moto)");
        let server = S3Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                // Create the bucket (the server does not check signatures).
                use std::io::{Read, Write};
                write!(
                c,
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
                let mut answer = String::new();
                let _ = c.read_to_string(&mut answer);
                assert!(
                    answer.starts_with("HTTP/1.1 200"),
                    "creating the bucket: {answer}"
                );
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "the S3 server (python3 -m moto.server) did not start; run .ci/setup to install moto"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `AWS_*` variables that point a client at it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "weir".into()),
            ("AWS_SECRET_ACCESS_KEY", "weir-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}
