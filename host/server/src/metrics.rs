//! The Prometheus endpoint (`GET /metrics`, text format), read off the live
//! jobs at each scrape: per tenant, job and operator.
//!
//! | metric | labels |
//! |---|---|
//! | `weir_records_in_total`, `weir_records_out_total` | tenant, job, operator |
//! | `weir_backpressure_ratio` (time blocked on a full queue / time working or blocked) | tenant, job, operator |
//! | `weir_watermark_lag_seconds` (now − the operator's watermark) | tenant, job, operator |
//! | `weir_sink_event_lag_seconds` (time from a record's timestamp to its write, capped at a week: the latency when event time is the wall clock's) | tenant, job, operator (the sink), quantile (0.5, 0.99) |
//! | `weir_checkpoint_last_duration_seconds`, `weir_checkpoint_last_size_bytes`, `weir_checkpoints_completed_total`, `weir_checkpoints_abandoned_total` | tenant, job |
//! | `weir_job_restarts_total` | tenant, job |
//! | `weir_guest_failures_total`: runs stopped by a guest trap, a CPU deadline interrupt, the memory cap, or another failure | tenant, job, kind |
//! | `weir_job_running` | tenant, job |
//! | `weir_tenant_cpu_seconds_total`: time the tenant's subtasks held a CPU turn (when the server divides the CPU) | tenant |

use std::convert::Infallible;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::Server;

/// The metrics text of every job this process runs or ran.
///
/// # Errors
/// Only if the metric definitions are inconsistent (a bug).
pub fn render(server: &Server) -> Result<String, prometheus::Error> {
    let registry = Registry::new();
    let op = &["tenant", "job", "operator"];
    let job = &["tenant", "job"];
    let counter = |name: &str, help: &str, labels: &[&str]| {
        IntCounterVec::new(Opts::new(name, help), labels).and_then(|c| {
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        })
    };
    let gauge = |name: &str, help: &str, labels: &[&str]| {
        GaugeVec::new(Opts::new(name, help), labels).and_then(|g| {
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        })
    };
    let records_in = counter(
        "weir_records_in_total",
        "Records an operator received (sources: produced).",
        op,
    )?;
    let records_out = counter("weir_records_out_total", "Records an operator emitted.", op)?;
    let backpressure = gauge(
        "weir_backpressure_ratio",
        "Share of an operator's time spent blocked on a full downstream queue.",
        op,
    )?;
    let lag = gauge(
        "weir_watermark_lag_seconds",
        "Wall-clock time minus the operator's watermark.",
        op,
    )?;
    let event_lag = gauge(
        "weir_sink_event_lag_seconds",
        "Time from a record's timestamp to its write by the sink (at most a week), quantiles over the run.",
        &["tenant", "job", "operator", "quantile"],
    )?;
    let ckpt_duration = gauge(
        "weir_checkpoint_last_duration_seconds",
        "Duration of the job's latest completed checkpoint.",
        job,
    )?;
    let ckpt_size = gauge(
        "weir_checkpoint_last_size_bytes",
        "Full size of the job's latest completed checkpoint.",
        job,
    )?;
    let ckpt_done = counter(
        "weir_checkpoints_completed_total",
        "Completed checkpoints.",
        job,
    )?;
    let ckpt_abandoned = counter(
        "weir_checkpoints_abandoned_total",
        "Abandoned checkpoints.",
        job,
    )?;
    let restarts = counter(
        "weir_job_restarts_total",
        "Restarts after failures (guest traps, deadline interrupts, other errors).",
        job,
    )?;
    let failures = counter(
        "weir_guest_failures_total",
        "Runs of the job stopped by a failure, by kind: trap (a guest trap), deadline (a CPU deadline interrupt), memory (the memory cap), other.",
        &["tenant", "job", "kind"],
    )?;
    let running = IntGaugeVec::new(Opts::new("weir_job_running", "1 while the job runs."), job)?;
    registry.register(Box::new(running.clone()))?;
    let operators = Operators {
        records_in,
        records_out,
        backpressure,
        lag,
    };

    let jobs = server.inner.all_live();
    let now = crate::now_ms();
    for j in jobs {
        let r = j
            .record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (t, id) = (r.tenant.as_str(), r.id.as_str());
        running
            .with_label_values(&[t, id])
            .set(i64::from(r.state.is_active()));
        restarts
            .with_label_values(&[t, id])
            .inc_by(u64::from(r.restarts));
        for (kind, n) in j
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            failures.with_label_values(&[t, id, kind]).inc_by(*n);
        }
        let metrics = j
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some((m, stats)) = metrics else { continue };
        for n in m.snapshot() {
            let labels = [t, id, n.name.as_str()];
            operators.record(&labels, &n, now);
            if let Some(l) = n.event_lag {
                for (q, ms) in [("0.5", l.p50_ms), ("0.99", l.p99_ms)] {
                    event_lag
                        .with_label_values(&[t, id, n.name.as_str(), q])
                        .set(ms as f64 / 1000.0);
                }
            }
        }
        ckpt_duration
            .with_label_values(&[t, id])
            .set(stats.last_duration_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        ckpt_size
            .with_label_values(&[t, id])
            .set(stats.last_size.load(Ordering::Relaxed) as f64);
        ckpt_done
            .with_label_values(&[t, id])
            .inc_by(stats.completed.load(Ordering::Relaxed));
        ckpt_abandoned
            .with_label_values(&[t, id])
            .inc_by(stats.abandoned.load(Ordering::Relaxed));
    }
    let cpu = GaugeVec::new(
        Opts::new(
            "weir_tenant_cpu_seconds_total",
            "Time the tenant's subtasks held one of the server's CPU turns.",
        ),
        &["tenant"],
    )?;
    registry.register(Box::new(cpu.clone()))?;
    for (tenant, used) in server.cpu_usage() {
        cpu.with_label_values(&[tenant.as_str()])
            .set(used.as_secs_f64());
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The per-operator families both endpoints have (their labels differ).
struct Operators {
    records_in: IntCounterVec,
    records_out: IntCounterVec,
    backpressure: GaugeVec,
    lag: GaugeVec,
}

impl Operators {
    /// Records operator `n`'s figures under `labels`, at `now` (ms).
    fn record(&self, labels: &[&str], n: &weir_engine::NodeSnapshot, now: i64) {
        self.records_in
            .with_label_values(labels)
            .inc_by(n.records_in);
        self.records_out
            .with_label_values(labels)
            .inc_by(n.records_out);
        let total = (n.busy + n.backpressured).as_secs_f64();
        if total > 0.0 {
            self.backpressure
                .with_label_values(labels)
                .set(n.backpressured.as_secs_f64() / total);
        }
        if let Some(wm) = n.watermark.filter(|w| *w != i64::MAX) {
            self.lag
                .with_label_values(labels)
                .set((now - wm) as f64 / 1000.0);
        }
    }
}

/// The share of a job a worker runs, for its metrics.
pub struct PartMetrics {
    /// The job.
    pub job: String,
    /// Its attempt.
    pub attempt: u64,
    /// The counters of the subtasks this worker runs.
    pub metrics: std::sync::Arc<weir_engine::JobMetrics>,
}

/// The metrics text of a worker's parts (`weir worker --metrics-listen`):
/// per job, worker and operator, so that what runs where shows.
///
/// | metric | labels |
/// |---|---|
/// | `weir_records_in_total`, `weir_records_out_total` | job, worker, operator |
/// | `weir_backpressure_ratio` | job, worker, operator |
/// | `weir_watermark_lag_seconds` | job, worker, operator |
/// | `weir_part_running` (1 per part running here) | job, attempt, worker |
///
/// # Errors
/// Only if the metric definitions are inconsistent (a bug).
pub fn render_parts(worker: &str, parts: &[PartMetrics]) -> Result<String, prometheus::Error> {
    let registry = Registry::new();
    let op = &["job", "worker", "operator"];
    let records_in = IntCounterVec::new(
        Opts::new(
            "weir_records_in_total",
            "Records an operator received here.",
        ),
        op,
    )?;
    let records_out = IntCounterVec::new(
        Opts::new(
            "weir_records_out_total",
            "Records an operator emitted here.",
        ),
        op,
    )?;
    let backpressure = GaugeVec::new(
        Opts::new(
            "weir_backpressure_ratio",
            "Share of an operator's time here spent blocked on a full downstream queue or waiting for network credit.",
        ),
        op,
    )?;
    let lag = GaugeVec::new(
        Opts::new(
            "weir_watermark_lag_seconds",
            "Wall-clock time minus the operator's watermark here.",
        ),
        op,
    )?;
    let running = IntGaugeVec::new(
        Opts::new(
            "weir_part_running",
            "1 for each part of a job running on this worker.",
        ),
        &["job", "attempt", "worker"],
    )?;
    for c in [&records_in, &records_out] {
        registry.register(Box::new(c.clone()))?;
    }
    for g in [&backpressure, &lag] {
        registry.register(Box::new(g.clone()))?;
    }
    registry.register(Box::new(running.clone()))?;
    let operators = Operators {
        records_in,
        records_out,
        backpressure,
        lag,
    };
    let now = crate::now_ms();
    for p in parts {
        running
            .with_label_values(&[p.job.as_str(), &p.attempt.to_string(), worker])
            .set(1);
        for n in p.metrics.snapshot() {
            operators.record(&[p.job.as_str(), worker, n.name.as_str()], &n, now);
        }
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// What an endpoint renders at each scrape.
pub type Render = std::sync::Arc<dyn Fn() -> Result<String, prometheus::Error> + Send + Sync>;

/// Serves `GET /metrics` on `listener` until the task is dropped: over TLS
/// when `tls` is given, to the readers `access` allows (401 otherwise).
pub async fn serve(
    server: Server,
    listener: tokio::net::TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    access: crate::tls::HttpAccess,
) {
    serve_text(
        listener,
        tls,
        access,
        std::sync::Arc::new(move || render(&server)),
    )
    .await;
}

/// Serves `GET /metrics` with what `render` gives at each scrape.
pub async fn serve_text(
    listener: tokio::net::TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    access: crate::tls::HttpAccess,
    render: Render,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let render = render.clone();
        let access = access.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let render = render.clone();
                let allowed = access.allows(
                    req.headers()
                        .get(hyper::header::AUTHORIZATION)
                        .map(|v| v.as_bytes()),
                );
                async move {
                    let response = if !allowed {
                        Response::builder()
                            .status(StatusCode::UNAUTHORIZED)
                            .header("www-authenticate", "Bearer")
                            .body(Full::new(Bytes::from(
                                "a token is required: Authorization: Bearer <DATA/metrics.token or the admin token>\n",
                            )))
                    } else if req.uri().path() == "/metrics" {
                        match tokio::task::spawn_blocking(move || render()).await {
                            Ok(Ok(text)) => Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(text))),
                            Ok(Err(e)) => Response::builder()
                                .status(StatusCode::INTERNAL_SERVER_ERROR)
                                .body(Full::new(Bytes::from(e.to_string()))),
                            Err(e) => Response::builder()
                                .status(StatusCode::INTERNAL_SERVER_ERROR)
                                .body(Full::new(Bytes::from(e.to_string()))),
                        }
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from("see /metrics\n")))
                    };
                    Ok::<_, Infallible>(response.unwrap_or_default())
                }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acceptor) => {
                    // A handshake that does not finish in 10 s is dropped.
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await;
                    if let Ok(Ok(tls)) = handshake {
                        let io = hyper_util::rt::TokioIo::new(tls);
                        let _ = http.serve_connection(io, service).await;
                    }
                }
                None => {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = http.serve_connection(io, service).await;
                }
            }
        });
    }
}
