//! `weir savepoint --state-dir DIR`: asks the job running with that state
//! directory for a savepoint and waits for it.
//!
//! The request is a file in the state directory that the job's checkpoint
//! coordinator watches; the answer (the savepoint's path, or why it failed)
//! comes back in `<request>.done`. A savepoint is a complete, self-contained
//! snapshot, organized by operator and key group: start a job from it with
//! `weir run --from-savepoint PATH`, at another parallelism or with a newer
//! module version.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Args;

/// Arguments of `weir savepoint`.
#[derive(Args)]
pub struct SavepointArgs {
    /// The running job's state directory (its `weir run --state-dir`).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// How long to wait for the savepoint.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// The request file in a state directory.
pub fn request_file(state_dir: &std::path::Path) -> PathBuf {
    weir_engine::checkpoint::savepoint_request_file(state_dir)
}

/// Requests a savepoint and prints its path.
pub fn run(args: SavepointArgs) -> anyhow::Result<ExitCode> {
    if !args.state_dir.is_dir() {
        bail!(
            "state directory `{}` does not exist (start the job with `weir run --state-dir {}`)",
            args.state_dir.display(),
            args.state_dir.display()
        );
    }
    match weir_engine::checkpoint::request_savepoint(
        &request_file(&args.state_dir),
        args.timeout,
        false,
    ) {
        Ok(path) => {
            println!("{path}");
            Ok(ExitCode::SUCCESS)
        }
        Err(weir_engine::checkpoint::SavepointError::NoAnswer(_)) => bail!(
            "no savepoint within {}: is a job running with `weir run --state-dir {}`?",
            humantime::format_duration(args.timeout),
            args.state_dir.display()
        ),
        Err(e) => bail!("{e}"),
    }
}
