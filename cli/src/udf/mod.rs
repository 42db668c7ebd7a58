//! `weir udf build|inspect|wit`, and the registry commands
//! (`upload|list|inspect|rm`, in [`crate::remote`]).
//!
//! `build` turns a UDF source directory into a component in the output
//! directory (`target/udfs` by default), named after the operator ([`build`]);
//! `new` writes a UDF project from a language's template ([`new`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use weir_sandbox::{Sandbox, SandboxConfig};

mod new;

#[cfg(feature = "server")]
use crate::client::Connect;

/// A build without the server client: only `--json`.
#[cfg(not(feature = "server"))]
#[derive(clap::Args, Clone, Debug)]
pub struct Connect {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `weir udf …`
#[derive(Subcommand)]
pub enum UdfCommand {
    /// Build UDF directories into components.
    Build {
        /// UDF source directories (a Cargo crate, or a directory with udf.toml).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where components are written.
        #[arg(long, default_value = "target/udfs")]
        out: PathBuf,
    },
    /// Write a new UDF project, from a template, into DIR (named after it).
    New {
        /// The project directory; its name is the operator's.
        dir: PathBuf,
        /// Language: rust, python, js, c, go or zig.
        #[arg(long)]
        lang: String,
        /// Operator kind: filter, map, flat-map, aggregate or keyed.
        #[arg(long, default_value = "map")]
        kind: String,
    },
    /// Validate a component file and show what it is; or, given
    /// `NAME[@VERSION]` that is not a file, show that module of the
    /// server's registry.
    Inspect {
        /// The component file, or a registry module.
        file: PathBuf,
        #[command(flatten)]
        conn: Connect,
    },
    /// Upload a component to the server's registry as `NAME@VERSION`.
    #[cfg(feature = "server")]
    Upload {
        /// The component file.
        file: PathBuf,
        /// The module's name [default: the file's stem].
        #[arg(long)]
        name: Option<String>,
        /// The version to upload as.
        #[arg(long = "version", value_name = "VERSION")]
        module_version: String,
        #[command(flatten)]
        conn: Connect,
    },
    /// List the modules in the server's registry.
    #[cfg(feature = "server")]
    List {
        #[command(flatten)]
        conn: Connect,
    },
    /// Delete `NAME@VERSION` from the registry (refused while a running job
    /// uses it).
    #[cfg(feature = "server")]
    Rm {
        /// `NAME@VERSION`.
        module: String,
        #[command(flatten)]
        conn: Connect,
    },
    /// Write the WIT package this weir implements into a directory (for
    /// bindings generators of other languages).
    Wit {
        /// Target directory.
        dir: PathBuf,
    },
}

/// Runs a `weir udf` subcommand.
pub fn run(cmd: UdfCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UdfCommand::Build { dirs, out } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create `{}`", out.display()))?;
            for dir in dirs {
                let built = weir_udf_build::build(&dir, &out)
                    .with_context(|| format!("cannot build UDF `{}`", dir.display()))?;
                let size = std::fs::metadata(&built).map(|m| m.len()).unwrap_or(0);
                eprintln!("built {} ({} KiB)", built.display(), size / 1024);
            }
            Ok(ExitCode::SUCCESS)
        }
        UdfCommand::New { dir, lang, kind } => {
            new::new(&dir, &lang, &kind)?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "server")]
        UdfCommand::Upload {
            file,
            name,
            module_version,
            conn,
        } => crate::remote::upload(&file, name, &module_version, &conn),
        #[cfg(feature = "server")]
        UdfCommand::List { conn } => crate::remote::list_modules(&conn),
        #[cfg(feature = "server")]
        UdfCommand::Rm { module, conn } => crate::remote::remove_module(&module, &conn),
        #[cfg(feature = "server")]
        UdfCommand::Inspect { file, conn }
            if !file.exists() && !file.to_string_lossy().ends_with(".wasm") =>
        {
            crate::remote::inspect_module(&file.to_string_lossy(), &conn)
        }
        UdfCommand::Inspect { file, conn } => {
            let json = conn.json;
            let sandbox = Sandbox::new(SandboxConfig {
                cache_dir: Some(weir_job::launch::default_cache_dir()),
                max_instances: 4,
                compiler: crate::run::compiler(),
                ..SandboxConfig::default()
            })?;
            let m = sandbox.load_file(&file)?;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            // What it costs to compile, against the compile budget.
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            let shape = weir_sandbox::budget::shape(&file.display().to_string(), &bytes)?;
            let world = if m.migrates_state() {
                format!("migrating-{}", m.kind().world())
            } else {
                m.kind().world().to_string()
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "file": file.display().to_string(),
                        "digest": m.digest().to_string(),
                        "kind": m.kind().name(),
                        "world": format!("weir:udf/{world}@0.1.0"),
                        "migrates_state": m.migrates_state(),
                        "size": size,
                        "shape": {
                            "functions": shape.functions,
                            "largest_function_bytes": shape.largest_function,
                            "core_modules": shape.modules,
                            "instances": shape.instances,
                            "memories": shape.memories,
                            "tables": shape.tables,
                        },
                    })
                );
            } else {
                println!(
                    "{}: {} operator (world weir:udf/{world}@0.1.0), {} bytes, {}",
                    file.display(),
                    m.kind(),
                    size,
                    m.digest()
                );
                println!(
                    "  {} functions (largest {} bytes) in {} core modules; {} instances, {} memories, {} tables",
                    shape.functions,
                    shape.largest_function,
                    shape.modules,
                    shape.instances,
                    shape.memories,
                    shape.tables
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        UdfCommand::Wit { dir } => {
            weir_udf_build::write_wit(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
