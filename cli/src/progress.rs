//! The live progress line and the end-of-run summary.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use weir_engine::{JobHandle, JobMetrics, NodeRole, NodeSnapshot};

/// Human-friendly counts: 1234567 → "1.23M".
pub fn count(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}K", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// A watermark for people: a UTC time, "end" when the input has ended, "-"
/// before the first one.
pub fn watermark(wm: Option<i64>) -> String {
    match wm {
        None => "-".into(),
        Some(i64::MAX) => "end".into(),
        Some(ms) if ms >= 0 => {
            let t = std::time::UNIX_EPOCH + Duration::from_millis(ms as u64);
            humantime::format_rfc3339_millis(t).to_string()
        }
        Some(ms) => format!("{ms} ms"),
    }
}

fn line(
    m: &JobMetrics,
    ckpt: &weir_engine::checkpoint::CheckpointStats,
    last: &mut (Instant, u64),
) -> String {
    let read = m.records_read();
    let written = m.records_written();
    let now = Instant::now();
    let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
    let rate = (read.saturating_sub(last.1)) as f64 / dt;
    *last = (now, read);
    let id = ckpt.last_completed.load(Ordering::Relaxed);
    let checkpoint = if id == 0 {
        String::new()
    } else {
        format!(
            "  checkpoint {id} ({} ms, {}B, +{}B)",
            ckpt.last_duration_ms.load(Ordering::Relaxed),
            count(ckpt.last_size.load(Ordering::Relaxed) as f64),
            count(ckpt.last_incremental_size.load(Ordering::Relaxed) as f64)
        )
    };
    let restored = match ckpt.restore_ms.load(Ordering::Relaxed) {
        0 => String::new(),
        ms => format!("  restored in {ms} ms"),
    };
    format!(
        "{}: in {}  out {}  {} rec/s  watermark {}{checkpoint}{restored}  {:.1}s",
        m.job,
        count(read as f64),
        count(written as f64),
        count(rate),
        watermark(m.watermark()),
        m.elapsed().as_secs_f64()
    )
}

/// The checkpoint figures after a run (empty when none completed).
pub fn checkpoint_summary(stats: &weir_engine::checkpoint::CheckpointStats) -> String {
    let mut out = String::new();
    let restore = stats.restore_ms.load(Ordering::Relaxed);
    if restore > 0 {
        out.push_str(&format!("state restored in {restore} ms\n"));
    }
    let done = stats.completed.load(Ordering::Relaxed);
    if done > 0 {
        out.push_str(&format!(
            "checkpoints: {done} completed, last {} ({} ms, {} bytes in all, {} bytes new), \
             {} abandoned, longest barrier alignment {} ms, longest snapshot pause {} us\n",
            stats.last_completed.load(Ordering::Relaxed),
            stats.last_duration_ms.load(Ordering::Relaxed),
            stats.last_size.load(Ordering::Relaxed),
            stats.last_incremental_size.load(Ordering::Relaxed),
            stats.abandoned.load(Ordering::Relaxed),
            stats.max_alignment_ms.load(Ordering::Relaxed),
            stats.max_sync_us.load(Ordering::Relaxed),
        ));
    }
    out
}

/// Shows progress until the job ends: a spinner line on a terminal, a plain
/// line every few seconds otherwise. Returns when every task has ended.
pub fn follow(handle: &JobHandle, quiet: bool) {
    let m = handle.metrics().clone();
    let c = handle.checkpoints().clone();
    let mut last = (Instant::now(), 0u64);
    if quiet {
        while !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    }
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        while !handle.is_finished() {
            bar.set_message(line(&m, &c, &mut last));
            bar.tick();
            std::thread::sleep(Duration::from_millis(200));
        }
        bar.finish_and_clear();
    } else {
        let mut next = Instant::now() + Duration::from_secs(2);
        while !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
            if Instant::now() >= next {
                eprintln!("{}", line(&m, &c, &mut last));
                next += Duration::from_secs(2);
            }
        }
    }
}

/// The end-of-run table.
pub fn summary(job: &str, nodes: &[NodeSnapshot], elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    let mut s = format!("job `{job}` finished in {secs:.2}s\n");
    s.push_str(&format!(
        "  {:<20} {:<8} {:>3} {:>10} {:>10} {:>11} {:>9}  {}\n",
        "node", "role", "par", "in", "out", "out rec/s", "backpr.", "watermark"
    ));
    for n in nodes {
        let (i, o) = match n.role {
            NodeRole::Source => (String::from("-"), count(n.records_out as f64)),
            NodeRole::Sink => (count(n.records_in as f64), String::from("-")),
            NodeRole::Operator => (count(n.records_in as f64), count(n.records_out as f64)),
        };
        let rate = match n.role {
            NodeRole::Sink => n.records_in,
            _ => n.records_out,
        } as f64
            / secs;
        let bp = 100.0 * n.backpressured.as_secs_f64() / (secs * n.parallelism as f64);
        s.push_str(&format!(
            "  {:<20} {:<8} {:>3} {:>10} {:>10} {:>11} {:>8.1}%  {}\n",
            n.name,
            n.role.to_string(),
            n.parallelism,
            i,
            o,
            count(rate),
            bp,
            watermark(n.watermark)
        ));
    }
    s
}

/// A byte progress bar for an upload (hidden when stderr is not a terminal
/// or output is JSON).
#[cfg(feature = "server")]
pub fn upload_bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "uploading {msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}
