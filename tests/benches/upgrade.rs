//! The pause of a hot swap: how long an operator with large keyed state
//! stops while it is upgraded to another module version. The job keeps
//! running: at the upgrade savepoint's barrier each subtask freezes its
//! state for the savepoint and swaps its instance; the savepoint is
//! written while processing goes on.
//!
//! `cargo bench -p weir-tests --bench upgrade` (after `bash .ci/setup`
//! built the UDFs). For each state backend: a keyed window count
//! (`bid-count`) over `KEYS` keys in a window that never fires, so every
//! key holds an accumulator; once every key is in, the operator is swapped
//! between versions 1 and 2 three times, then to version 3, which migrates
//! every accumulator to a new layout in place. Printed: the savepoint's size
//! on disk and each pause (the longest any subtask stopped at the barrier:
//! snapshot plus swap, plus the migration for version 3).

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use weir_server::{Probation, Quotas, Server, ServerConfig};

const KEYS: u64 = 2_000_000;
const BACKENDS: &[&str] = &["heap", "rocksdb"];

fn job(backend: &str) -> String {
    format!(
        r#"
[job]
name = "big-state-{backend}"
state_backend = "{backend}"

[source.gen]
kind = "generator"
count = 1_000_000_000
keys = {KEYS}
interval_ms = 0
watermark = {{ strategy = "monotonous" }}

[operator.count]
input = "gen"
module = "bid-count@2"
window = {{ type = "tumbling", size = "1h" }}

[sink.out]
input = "count"
kind = "file"
path = "big-{backend}.jsonl"
"#
    )
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

fn records_in(server: &Server, id: &str) -> u64 {
    let (_, live) = server.get_job("bench", id).unwrap();
    live.and_then(|l| l.snapshot())
        .map(|(nodes, _, _)| {
            nodes
                .iter()
                .filter(|n| n.name == "count")
                .map(|n| n.records_in)
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    // The server's log line of each upgrade gives its phases.
    tracing_subscriber::fmt()
        .with_env_filter("weir_server=info,weir_engine=warn")
        .with_writer(std::io::stderr)
        .init();
    let dir =
        tempfile::tempdir_in(std::env::var("WEIR_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))
            .unwrap();
    let mut config = ServerConfig::new(dir.path().to_path_buf());
    config.checkpoint_interval = Duration::from_secs(3600);
    let (server, _) = Server::open(config).unwrap();
    let quotas = Quotas {
        max_memory_mb: 1024,
        ..Quotas::default()
    };
    server
        .create_tenant("bench", quotas, weir_server::Grants::default())
        .unwrap();
    let read = |n: &str| std::fs::read(weir_tests::udf(n)).unwrap();
    server
        .upload_module("bench", "bid-count", "1", &read("bid-count"))
        .unwrap();
    server
        .upload_module("bench", "bid-count", "2", &read("bid-count-v2"))
        .unwrap();
    server
        .upload_module("bench", "bid-count", "3", &read("bid-count-v3"))
        .unwrap();
    let only = std::env::var("WEIR_BENCH_BACKEND").ok();
    for &backend in BACKENDS {
        if only.as_deref().is_some_and(|o| o != backend) {
            continue;
        }
        let (j, _) = server.submit_job("bench", &job(backend), "").unwrap();
        let start = Instant::now();
        while records_in(&server, &j.id) < 2 * KEYS {
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "{} records in after 10 min",
                records_in(&server, &j.id)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut pauses = Vec::new();
        for (i, to) in ["bid-count@1", "bid-count@2", "bid-count@1", "bid-count@3"]
            .iter()
            .enumerate()
        {
            let probation = Probation {
                records: 1,
                time: Duration::from_secs(10),
            };
            let (_, u) = server
                .upgrade_job("bench", &j.id, "count", to, "bench", probation)
                .unwrap();
            assert_eq!(u.outcome, "kept", "{u:?}");
            let sp = u.savepoint.rsplit('/').next().unwrap().to_string();
            let size = dir_size(
                &dir.path()
                    .join("tenants/bench/jobs")
                    .join(&j.id)
                    .join("savepoints")
                    .join(sp),
            );
            println!(
                "{backend}: upgrade {} -> {}: savepoint {:.0} MB, pause {} ms",
                u.from,
                u.to,
                size as f64 / 1e6,
                u.pause_ms
            );
            if i < 3 {
                pauses.push(u.pause_ms);
            }
            if i < 3 {
                std::thread::sleep(Duration::from_secs(2));
            }
        }
        pauses.sort_unstable();
        println!("{backend}: median pause {} ms", pauses[1]);
        server.cancel_job("bench", &j.id, false).unwrap();
    }
    server.detach_jobs();
}
