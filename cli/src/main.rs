//! `weir`: the command line of the weir stream processor.
//!
//! Thin by design: parse arguments, call the library crates, print. The
//! subcommands live one per module.

mod bench;
#[cfg(feature = "server")]
mod client;
#[cfg(feature = "server")]
mod cluster;
#[cfg(feature = "kafka")]
mod kafka;
mod progress;
#[cfg(feature = "server")]
mod remote;
mod run;
mod savepoint;
#[cfg(feature = "server")]
mod serve;
mod udf;

use std::process::ExitCode;

/// mimalloc: the engine allocates and frees many small objects per record
/// batch on several threads (window panes, timers, state keys), where
/// glibc's allocator spent a sixth of a windowed job's CPU time
/// (docs/benchmarks.md, Nexmark q5).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// weir: stream processing with sandboxed WebAssembly operators.
#[derive(Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    /// Log filter (e.g. `info`, `weir=debug`); also `RUST_LOG`.
    #[arg(long, global = true, env = "WEIR_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job file in this process until its sources end.
    Run(Box<run::RunArgs>),
    /// Take a savepoint of a job running with a state directory.
    Savepoint(savepoint::SavepointArgs),
    /// Build and inspect user operators (UDF components).
    #[command(subcommand)]
    Udf(udf::UdfCommand),
    /// Create Kafka topics, write files into them, read them out.
    #[cfg(feature = "kafka")]
    #[command(subcommand)]
    Kafka(kafka::KafkaCommand),
    /// Benchmarks: `weir bench nexmark`.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the multi-tenant control plane (gRPC API, module registry, job
    /// hosting).
    #[cfg(feature = "server")]
    Serve(serve::ServeArgs),
    /// Manage tenants of a server (admin token).
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Tenant(remote::TenantCommand),
    /// Submit and manage jobs on a server (a tenant's token).
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Job(remote::JobCommand),
    /// Run a worker: offer task slots to the cluster in etcd (Flink's
    /// TaskManager).
    #[cfg(feature = "server")]
    Worker(Box<cluster::WorkerArgs>),
    /// What the cluster in etcd holds: its workers and their slots.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Internal: compiles one component from stdin to an artifact on
    /// stdout, under the limits its parent set (weir_sandbox::compiler).
    #[command(name = "__compile-helper", hide = true)]
    CompileHelper {
        /// The component's size in bytes.
        bytes: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Savepoint(args) => savepoint::run(args),
        Command::Udf(cmd) => udf::run(cmd),
        #[cfg(feature = "kafka")]
        Command::Kafka(cmd) => kafka::run(cmd),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        #[cfg(feature = "server")]
        Command::Tenant(cmd) => remote::tenant(cmd),
        #[cfg(feature = "server")]
        Command::Job(cmd) => remote::job(cmd),
        #[cfg(feature = "server")]
        Command::Worker(args) => cluster::worker(*args),
        #[cfg(feature = "server")]
        Command::Cluster(cmd) => cluster::cluster(cmd),
        Command::CompileHelper { bytes } => return run::compile_helper(bytes),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
