//! CPU cost of moving records between subtasks: an in-process exchange
//! against a network exchange over loopback TCP, measured side by side in
//! one run.
//!
//! ```text
//! cargo bench -p weir-network --bench exchange
//! ```
//!
//! Each case sends the same batches (Nexmark-sized records: 8-byte keys,
//! ~100-byte values, split by key group over 4 consumers as a keyed edge
//! does) from one producer thread to consumer threads that take every
//! message, and reports the process's CPU time (user + system, from
//! `/proc/self/stat`) per record and per MiB, and the ratio of the two.

use std::sync::Arc;
use std::time::Instant;

use weir_engine::channel::{EdgeSender, ExchangeReceiver, ExchangeSender, TaskOutput, local};
use weir_engine::metrics::NodeMetrics;
use weir_engine::plan::Partitioning;
use weir_engine::{Message, Signal};
use weir_network::{ChannelKey, DataServer, Inbound, SocketSettings, connect};
use weir_record::{BatchBuilder, RecordBatch};

const CONSUMERS: usize = 4;
const BATCH: usize = 1024;
const CAPACITY: usize = 16;

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command (which is in parentheses).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

fn batches(n: usize) -> (Vec<RecordBatch>, usize) {
    let mut out = Vec::with_capacity(n);
    let mut bytes = 0;
    for b in 0..n {
        let mut builder = BatchBuilder::default();
        for i in 0..BATCH {
            let key = ((b * BATCH + i) as u64 % 10_007).to_le_bytes();
            let value = format!(
                "{{\"auction\":{},\"bidder\":{},\"price\":{},\"channel\":\"channel-{}\",\"url\":\"https://example.com/{}\"}}",
                i % 1000,
                i % 5000,
                i * 7,
                i % 10,
                i
            );
            bytes += key.len() + value.len() + 8;
            builder.push(&key, value.as_bytes(), i as i64);
        }
        out.push(builder.finish());
    }
    (out, bytes)
}

/// Sends `input` over a keyed edge into `senders`, and drains `receivers`
/// on their own threads; returns wall and CPU seconds.
fn run(
    input: &[RecordBatch],
    senders: Vec<Arc<dyn ExchangeSender>>,
    receivers: Vec<Box<dyn ExchangeReceiver>>,
) -> (f64, f64) {
    let cpu = cpu_seconds();
    let wall = Instant::now();
    let drains: Vec<_> = receivers
        .into_iter()
        .map(|rx| {
            std::thread::spawn(move || {
                let mut rows = 0usize;
                loop {
                    match rx.recv() {
                        Ok((_, Message::Data(b))) => rows += b.len(),
                        Ok((_, Message::Signal(Signal::EndOfData))) | Err(_) => return rows,
                        Ok(_) => {}
                    }
                }
            })
        })
        .collect();
    let metrics = Arc::new(NodeMetrics::new(1));
    let edge = EdgeSender::new(
        senders,
        Partitioning::Hash {
            max_parallelism: 128,
        },
        0,
        0,
        0,
    );
    let mut out = TaskOutput::new(vec![edge], metrics);
    for b in input {
        out.send(b.clone()).expect("consumers alive");
    }
    out.signal(Signal::EndOfData).expect("consumers alive");
    drop(out);
    let rows: usize = drains.into_iter().map(|d| d.join().expect("drain")).sum();
    assert_eq!(rows, input.len() * BATCH);
    (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu)
}

fn local_case(input: &[RecordBatch]) -> (f64, f64) {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..CONSUMERS).map(|_| local(CAPACITY)).unzip();
    run(input, senders, receivers)
}

fn network_case(input: &[RecordBatch], round: u64) -> (f64, f64) {
    let server = DataServer::bind("127.0.0.1:0", SocketSettings::default()).expect("bind");
    let addr = server.local_addr().to_string();
    let mut senders: Vec<Arc<dyn ExchangeSender>> = Vec::new();
    let mut receivers = Vec::new();
    let mut registrations = Vec::new();
    for c in 0..CONSUMERS {
        let key = ChannelKey {
            job: "bench".into(),
            attempt: round,
            task: 1,
            subtask: c as u32,
        };
        let (into, rx) = local(CAPACITY);
        let inbound = Inbound {
            credits: CAPACITY as u32,
            producers: 1,
        };
        registrations.push(server.register(
            key.clone(),
            into,
            inbound,
            Arc::new(|e| panic!("{e}")),
        ));
        receivers.push(rx);
        senders.push(connect(&addr, key, &SocketSettings::default()).expect("connect"));
    }
    // The registrations hold the consumers' exchanges open until the end
    // of data; drop them so the drains see it once the connections close.
    let r = run(input, senders, receivers);
    drop(registrations);
    r
}

fn main() {
    // `cargo bench` passes `--bench`; a filter is not supported.
    let n = std::env::var("WEIR_BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let (input, bytes) = batches(n);
    let records = (n * BATCH) as f64;
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!(
        "keyed exchange to {CONSUMERS} consumers: {n} batches of {BATCH} records, {mib:.0} MiB"
    );
    let mut local_cpu = Vec::new();
    let mut net_cpu = Vec::new();
    // Alternating rounds, so drift on the machine affects both alike.
    for round in 0..5 {
        let (lw, lc) = local_case(&input);
        let (nw, nc) = network_case(&input, round);
        println!(
            "round {round}: in-process {:.0} ns/record CPU ({:.2} s wall), network {:.0} ns/record CPU ({:.2} s wall)",
            lc / records * 1e9,
            lw,
            nc / records * 1e9,
            nw
        );
        local_cpu.push(lc);
        net_cpu.push(nc);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (l, n) = (median(&mut local_cpu), median(&mut net_cpu));
    println!("| exchange | CPU ns / record | CPU ms / MiB |");
    println!("|---|---:|---:|");
    println!(
        "| in-process | {:.0} | {:.1} |",
        l / records * 1e9,
        l / mib * 1e3
    );
    println!(
        "| network (loopback TCP) | {:.0} | {:.1} |",
        n / records * 1e9,
        n / mib * 1e3
    );
    println!(
        "network / in-process CPU per record: {:.2} (medians of 5 rounds)",
        n / l
    );
}
