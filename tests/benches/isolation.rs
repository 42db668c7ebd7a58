//! Tenant isolation: how much of its throughput a quiet tenant's job keeps
//! beside a noisy tenant on the same server.
//!
//! `cargo bench -p weir-tests --bench isolation` (after `bash .ci/setup`
//! built the UDFs). Each figure is the median of three runs of the quiet
//! job: a keyed 1 s window count over generated records, as fast as it
//! goes. Neighbours:
//! * runaway — two jobs of another tenant whose UDFs loop forever (stopped
//!   at the CPU deadline) or allocate without end (stopped at the memory
//!   cap), restarted by the server again and again;
//! * greedy — another tenant's valid, CPU-bound job running flat out;
//! * a crowd — four such jobs of another tenant at once, more busy subtasks
//!   than cores, with the server dividing the CPU by tenant (equal
//!   `cpu_shares`) and, side by side in the same run, a second server that
//!   leaves the division to the operating system (`cpu_slots = 0`). The
//!   quiet tenant runs a steady job (generated at 100,000 records/s, less
//!   than its share) and the flat-out job.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use weir_server::{Quotas, Server, ServerConfig};

const RECORDS: u64 = 3_000_000;

/// The steady quiet job's rate and length.
const PACED_RATE: u64 = 100_000;
const PACED_RECORDS: u64 = 500_000;

fn count_job(name: &str, count: u64, out: &str) -> String {
    paced_job(name, count, None, out)
}

fn paced_job(name: &str, count: u64, rate: Option<u64>, out: &str) -> String {
    let rate = rate.map_or(String::new(), |r| format!("rate = {r}"));
    format!(
        r#"
[job]
name = "{name}"

[source.gen]
kind = "generator"
count = {count}
{rate}
keys = 1000
interval_ms = 1
watermark = {{ strategy = "monotonous" }}

[operator.count]
input = "gen"
module = "bid-count"
window = {{ type = "tumbling", size = "1s" }}

[sink.out]
input = "count"
kind = "file"
path = "{out}"
"#
    )
}

fn misbehaving_job(mode: &str) -> String {
    format!(
        r#"
[job]
name = "noisy-{mode}"

[source.gen]
kind = "generator"
count = 100_000_000
keys = 10
rate = 1000

[operator.bad]
input = "gen"
module = "misbehave"
config = {{ mode = "{mode}", trigger = "seq" }}

[sink.out]
input = "bad"
kind = "file"
path = "{mode}.jsonl"
"#
    )
}

fn wait_finished(server: &Server, tenant: &str, id: &str) {
    loop {
        let (r, _) = server.get_job(tenant, id).unwrap();
        match r.state.name() {
            "finished" => return,
            "running" => std::thread::sleep(Duration::from_millis(10)),
            other => panic!("quiet job {id} is {other}: {}", r.error),
        }
    }
}

fn quiet_run(server: &Server, n: usize, rate: Option<u64>) -> f64 {
    let records = if rate.is_some() {
        PACED_RECORDS
    } else {
        RECORDS
    };
    let (job, _) = server
        .submit_job(
            "quiet",
            &paced_job("quiet", records, rate, &format!("q{n}.jsonl")),
            "",
        )
        .unwrap();
    let start = Instant::now();
    wait_finished(server, "quiet", &job.id);
    records as f64 / start.elapsed().as_secs_f64()
}

fn median_of(server: &Server, base: usize, rate: Option<u64>) -> f64 {
    let mut v: Vec<f64> = (0..3).map(|i| quiet_run(server, base + i, rate)).collect();
    v.sort_by(f64::total_cmp);
    v[1]
}

fn median(server: &Server, base: usize) -> f64 {
    median_of(server, base, None)
}

/// A server with the two tenants and their modules; `cpu_slots` 0 leaves
/// the CPU to the operating system.
fn server(dir: &std::path::Path, cpu_slots: Option<usize>) -> Server {
    let mut config = ServerConfig::new(dir.to_path_buf());
    config.max_restarts = 1_000_000;
    config.checkpoint_interval = Duration::from_secs(10);
    if let Some(n) = cpu_slots {
        config.cpu_slots = n;
    }
    let (server, _) = Server::open(config).unwrap();
    let quotas = Quotas {
        max_cpu_deadline_ms: 100,
        max_memory_mb: 64,
        ..Quotas::default()
    };
    server
        .create_tenant("quiet", quotas, weir_server::Grants::default())
        .unwrap();
    server
        .create_tenant("noisy", quotas, weir_server::Grants::default())
        .unwrap();
    let read = |n: &str| std::fs::read(weir_tests::udf(n)).unwrap();
    server
        .upload_module("quiet", "bid-count", "1", &read("bid-count"))
        .unwrap();
    server
        .upload_module("noisy", "bid-count", "1", &read("bid-count"))
        .unwrap();
    server
        .upload_module("noisy", "misbehave", "1", &read("misbehave"))
        .unwrap();
    server
}

/// The quiet tenant's steady and flat-out jobs: alone, then beside four
/// greedy jobs of the noisy tenant. Returns (steady alone, steady in the
/// crowd, flat-out alone, flat-out in the crowd, the crowd's records/s).
fn crowd(server: &Server, base: usize) -> [f64; 5] {
    let held = |tenant: &str| {
        server
            .cpu_usage()
            .into_iter()
            .find(|(t, _)| t == tenant)
            .map_or(0.0, |(_, d)| d.as_secs_f64())
    };
    let steady_alone = median_of(server, base, Some(PACED_RATE));
    let flat_alone = median_of(server, base + 3, None);
    let greedy: Vec<String> = (0..4)
        .map(|i| {
            server
                .submit_job(
                    "noisy",
                    &count_job(
                        &format!("crowd{i}"),
                        1_000_000_000,
                        &format!("crowd{i}.jsonl"),
                    ),
                    "",
                )
                .unwrap()
                .0
                .id
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let read = || -> (u64, Instant) {
        let n = greedy
            .iter()
            .map(|id| {
                server
                    .get_job("noisy", id)
                    .unwrap()
                    .1
                    .and_then(|l| l.snapshot())
                    .map_or(0, |(nodes, _, _)| {
                        nodes.iter().map(|n| n.records_in).max().unwrap_or(0)
                    })
            })
            .sum();
        (n, Instant::now())
    };
    let before = read();
    let (quiet0, noisy0) = (held("quiet"), held("noisy"));
    let steady = median_of(server, base + 6, Some(PACED_RATE));
    let flat = median_of(server, base + 9, None);
    let after = read();
    let wall = (after.1 - before.1).as_secs_f64();
    if server.config().cpu_slots > 0 {
        println!(
            "CPU turns held while the quiet jobs ran beside the crowd ({wall:.1} s on {} turns): quiet {:.1} s, noisy {:.1} s",
            server.config().cpu_slots,
            held("quiet") - quiet0,
            held("noisy") - noisy0
        );
    }
    for id in &greedy {
        let _ = server.cancel_job("noisy", id, false);
    }
    for id in &greedy {
        while server.get_job("noisy", id).unwrap().0.state.name() == "running" {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let crowd_rate = (after.0 - before.0) as f64 / (after.1 - before.1).as_secs_f64();
    [steady_alone, steady, flat_alone, flat, crowd_rate]
}

fn main() {
    // First the crowd, with and without CPU shares, side by side.
    let off_dir = tempfile::tempdir().unwrap();
    let off = server(off_dir.path(), Some(0));
    let without = crowd(&off, 100);
    off.detach_jobs();
    drop(off);
    let dir = tempfile::tempdir().unwrap();
    // WEIR_CPU_SLOTS: the server's turns (default: the server's, two per core).
    let slots = std::env::var("WEIR_CPU_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok());
    let server = server(dir.path(), slots);
    let with = crowd(&server, 200);
    let pct = |a: f64, b: f64| 100.0 * a / b;
    println!("the quiet tenant beside four greedy jobs of another tenant (records/s):");
    println!(
        "| quiet job | CPU divided by | alone | beside the crowd | share of alone | the crowd meanwhile |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (label, r) in [
        ("the operating system (by thread)", without),
        ("weir, equal shares", with),
    ] {
        println!(
            "| steady ({PACED_RATE}/s) | {label} | {:.0} | {:.0} | {:.0}% | {:.0} |",
            r[0],
            r[1],
            pct(r[1], r[0]),
            r[4]
        );
        println!(
            "| flat out | {label} | {:.0} | {:.0} | {:.0}% | |",
            r[2],
            r[3],
            pct(r[3], r[2])
        );
    }

    let alone = median(&server, 0);
    println!("quiet alone: {alone:.0} records/s");

    let mut noisy = Vec::new();
    for mode in ["spin", "hog"] {
        let (j, _) = server
            .submit_job("noisy", &misbehaving_job(mode), "")
            .unwrap();
        noisy.push(j.id);
    }
    // Both have failed (and been restarted) before the quiet job starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    while noisy
        .iter()
        .any(|id| server.get_job("noisy", id).unwrap().0.restarts == 0)
    {
        assert!(Instant::now() < deadline, "the noisy jobs never failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let runaway = median(&server, 10);
    let restarts: u32 = noisy
        .iter()
        .map(|id| server.get_job("noisy", id).unwrap().0.restarts)
        .sum();
    println!(
        "quiet beside runaway UDFs: {runaway:.0} records/s ({:.0}% of alone; the runaway jobs restarted {restarts} times)",
        100.0 * runaway / alone
    );
    for id in &noisy {
        let _ = server.cancel_job("noisy", id, false);
    }

    let (greedy, _) = server
        .submit_job(
            "noisy",
            &count_job("greedy", 1_000_000_000, "greedy.jsonl"),
            "",
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let read = || {
        let (r, live) = server.get_job("noisy", &greedy.id).unwrap();
        let n: u64 = live
            .and_then(|l| l.snapshot())
            .map(|(nodes, _, _)| nodes.iter().map(|n| n.records_in).max().unwrap_or(0))
            .unwrap_or(0);
        (r.state.name(), n, Instant::now())
    };
    let before = read();
    let beside_greedy = median(&server, 20);
    let after = read();
    println!(
        "quiet beside a greedy valid job: {beside_greedy:.0} records/s ({:.0}% of alone; the greedy job is {} and ran at {:.0} records/s meanwhile)",
        100.0 * beside_greedy / alone,
        after.0,
        (after.1 - before.1) as f64 / (after.2 - before.2).as_secs_f64()
    );
    let _ = server.cancel_job("noisy", &greedy.id, false);
    server.detach_jobs();
}
