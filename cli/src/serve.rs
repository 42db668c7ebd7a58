//! `weir serve`: the multi-tenant control plane.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use weir_server::{Credentials, Quotas, Server, ServerConfig};

/// Arguments of `weir serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Where tenants, modules, jobs, checkpoints and savepoints are kept.
    #[arg(
        long,
        value_name = "DIR",
        env = "WEIR_DATA_DIR",
        default_value = "weir-data"
    )]
    data_dir: PathBuf,
    /// The gRPC address (`:0` picks a free port; the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: String,
    /// The Prometheus endpoint's address (`GET /metrics`); `none` for no
    /// endpoint.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    metrics_listen: String,
    /// Time between each job's checkpoints.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    checkpoint_interval: Duration,
    /// The largest module upload, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    max_upload_mb: u64,
    /// Restarts of a failing job (from its latest checkpoint) before it is
    /// failed.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_restarts: u32,
    /// Default quota of new tenants: running jobs.
    #[arg(long, value_name = "N")]
    default_max_jobs: Option<u32>,
    /// Default quota of new tenants: subtasks of all running jobs.
    #[arg(long, value_name = "N")]
    default_max_parallelism: Option<u32>,
    /// Named connector credentials (TOML: one table of librdkafka settings
    /// per name) that the admin may grant to tenants with `weir tenant
    /// grant --credential NAME`. Keep the file readable by the server only.
    #[arg(long, value_name = "FILE", env = "WEIR_CREDENTIALS")]
    credentials: Option<PathBuf>,
}

/// Runs the server until Ctrl-C or SIGTERM; running jobs stop and resume at
/// the next start.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = ServerConfig::new(args.data_dir.clone());
    config.checkpoint_interval = args.checkpoint_interval;
    config.max_upload_bytes = args.max_upload_mb << 20;
    config.max_restarts = args.max_restarts;
    if let Some(file) = &args.credentials {
        config.credentials = Credentials::load(file)?;
    }
    let defaults = Quotas::default();
    config.default_quotas = Quotas {
        max_jobs: args.default_max_jobs.unwrap_or(defaults.max_jobs),
        max_parallelism: args
            .default_max_parallelism
            .unwrap_or(defaults.max_parallelism),
        ..defaults
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the server runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on `{}`", args.listen))?;
        let (server, admin) = tokio::task::spawn_blocking(move || Server::open(config))
            .await
            .context("server start")??;
        let addr = listener.local_addr()?;
        if let Some(token) = admin {
            eprintln!(
                "admin token (shown once; also in {}): {token}",
                args.data_dir.join("admin.token").display()
            );
        }
        let metrics = if args.metrics_listen == "none" {
            None
        } else {
            let l = tokio::net::TcpListener::bind(&args.metrics_listen)
                .await
                .with_context(|| format!("cannot listen on `{}`", args.metrics_listen))?;
            eprintln!("metrics on http://{}/metrics", l.local_addr()?);
            Some(tokio::spawn(weir_server::metrics::serve(server.clone(), l)))
        };
        eprintln!(
            "weir serve: listening on {addr} (gRPC, reflection on); data in {}",
            args.data_dir.display()
        );
        weir_server::api::serve(server, listener, shutdown()).await?;
        if let Some(m) = metrics {
            m.abort();
        }
        eprintln!("weir serve: stopped; running jobs resume at the next start");
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves at Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await,
            };
        tokio::select! {
            () = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
