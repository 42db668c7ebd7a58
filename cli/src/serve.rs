//! `weir serve`: the multi-tenant control plane.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use weir_server::tls::{self, HttpAccess, Identity};
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
    /// TLS on the gRPC API and the metrics endpoint: the certificate chain
    /// (PEM). With `--tls-key`.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TLS with a self-signed certificate for localhost, 127.0.0.1 and ::1
    /// (and each `--tls-name`), generated at the first start in
    /// DATA/tls/server.crt; clients pin it with `--ca-cert`.
    #[arg(long)]
    tls_self_signed: bool,
    /// Another name or address for the self-signed certificate.
    #[arg(long, value_name = "NAME", requires = "tls_self_signed")]
    tls_name: Vec<String>,
    /// Serve the API without TLS on an address other than loopback (tokens
    /// then cross the network in the clear).
    #[arg(long)]
    insecure_plaintext: bool,
    /// Subtasks that run at once over all tenants, divided among tenants by
    /// their `--cpu-shares` [default: two per core]; 0 leaves the division
    /// to the operating system (by threads).
    #[arg(long, value_name = "N")]
    cpu_slots: Option<usize>,
    /// Module uploads one tenant may have compiling at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    max_compiles_per_tenant: usize,
    /// Wall-clock time one module may take to compile; its compile helper
    /// process is killed past it.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = humantime::parse_duration)]
    compile_timeout: Duration,
    /// Memory one module may use to compile, in MiB (the kernel's limit on
    /// its compile helper process).
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    compile_memory_mb: usize,
}

/// Runs the server until Ctrl-C or SIGTERM; running jobs stop and resume at
/// the next start.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = ServerConfig::new(args.data_dir.clone());
    config.checkpoint_interval = args.checkpoint_interval;
    config.max_upload_bytes = args.max_upload_mb << 20;
    config.max_restarts = args.max_restarts;
    config.max_compiles_per_tenant = args.max_compiles_per_tenant.max(1);
    config.compile_budget.compile_timeout = args.compile_timeout;
    config.compile_budget.max_memory = args.compile_memory_mb << 20;
    config.compiler = crate::run::compiler();
    if let Some(n) = args.cpu_slots {
        config.cpu_slots = n;
    }
    weir_server::tls::install_default_provider();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Identity::from_files(cert, key)?),
        _ if args.tls_self_signed => Some(Identity::self_signed(&args.data_dir, &args.tls_name)?),
        _ => None,
    };
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
        if tls.is_none() && !tls::is_loopback(&addr) && !args.insecure_plaintext {
            anyhow::bail!(
                "refusing to serve the API on {addr} without TLS: tokens would cross the network in the clear; give --tls-cert/--tls-key or --tls-self-signed (or --insecure-plaintext behind a trusted proxy)"
            );
        }
        if let Some(token) = admin {
            eprintln!(
                "admin token (shown once; also in {}): {token}",
                args.data_dir.join("admin.token").display()
            );
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        let metrics = if args.metrics_listen == "none" {
            None
        } else {
            let l = tokio::net::TcpListener::bind(&args.metrics_listen)
                .await
                .with_context(|| format!("cannot listen on `{}`", args.metrics_listen))?;
            let maddr = l.local_addr()?;
            // Off loopback, /metrics needs the metrics token or the admin's.
            let access = if tls::is_loopback(&maddr) {
                HttpAccess::Open
            } else {
                let metrics_token = tls::metrics_token(&args.data_dir)?;
                let admin = std::fs::read_to_string(args.data_dir.join("admin.token"))
                    .context("cannot read the admin token")?;
                HttpAccess::Tokens(vec![
                    weir_server::tenants::hash_token(&metrics_token),
                    weir_server::tenants::hash_token(admin.trim()),
                ])
            };
            let config = tls
                .as_ref()
                .map(Identity::rustls_config)
                .transpose()
                .map_err(|e| anyhow::anyhow!("TLS for the metrics endpoint: {e}"))?;
            let needs = match access {
                HttpAccess::Open => "",
                HttpAccess::Tokens(_) => " (token: DATA/metrics.token or the admin token)",
            };
            eprintln!("metrics on {scheme}://{maddr}/metrics{needs}");
            Some(tokio::spawn(weir_server::metrics::serve(
                server.clone(),
                l,
                config,
                access,
            )))
        };
        if let Some(id) = &tls {
            eprintln!(
                "TLS certificate {} (SHA-256 {}); clients of a self-signed one: --ca-cert {}",
                id.cert_path.display(),
                id.fingerprint(),
                id.cert_path.display()
            );
        }
        eprintln!(
            "weir serve: listening on {scheme}://{addr} (gRPC, reflection on); data in {}",
            args.data_dir.display()
        );
        weir_server::api::serve(server, listener, tls.as_ref(), shutdown()).await?;
        if let Some(m) = metrics {
            m.abort();
        }
        eprintln!("weir serve: stopped; running jobs resume at the next start");
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves at Ctrl-C or SIGTERM.
pub(crate) async fn shutdown() {
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
