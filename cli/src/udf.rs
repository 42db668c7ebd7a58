//! `weir udf build|inspect|wit`, and the registry commands
//! (`upload|list|inspect|rm`, in [`crate::remote`]).
//!
//! `build` turns a UDF source directory into a component in the output
//! directory (`target/udfs` by default), named after the operator:
//! * a Cargo crate → `cargo build --target wasm32-wasip2` (its `udf` profile
//!   when the workspace defines one, `--release` otherwise); the output is
//!   named after the package, without a `udf-` prefix;
//! * a directory with `udf.toml` and `language = "python"` → componentize-py
//!   against the WIT package and the Python SDK, both built into this binary,
//!   so it works outside the weir repository too.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::Deserialize;
use weir_sandbox::{Sandbox, SandboxConfig};

/// The WIT package, as compiled into this binary.
const WIT_FILES: &[(&str, &str)] = &[
    ("types.wit", include_str!("../../wit/types.wit")),
    ("stateless.wit", include_str!("../../wit/stateless.wit")),
    ("windows.wit", include_str!("../../wit/windows.wit")),
    ("keyed.wit", include_str!("../../wit/keyed.wit")),
    ("migration.wit", include_str!("../../wit/migration.wit")),
];

/// The Python guest SDK.
const PYTHON_SDK: &str = include_str!("../../guest-sdk/python/weir_udf.py");

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
    /// Validate a component file and show what it is; or, given
    /// `NAME[@VERSION]` that is not a file, show that module of the
    /// server's registry.
    Inspect {
        /// The component file, or a registry module.
        file: PathBuf,
        #[command(flatten)]
        conn: crate::client::Connect,
    },
    /// Upload a component to the server's registry as `NAME@VERSION`.
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
        conn: crate::client::Connect,
    },
    /// List the modules in the server's registry.
    List {
        #[command(flatten)]
        conn: crate::client::Connect,
    },
    /// Delete `NAME@VERSION` from the registry (refused while a running job
    /// uses it).
    Rm {
        /// `NAME@VERSION`.
        module: String,
        #[command(flatten)]
        conn: crate::client::Connect,
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
                let built = build(&dir, &out)
                    .with_context(|| format!("cannot build UDF `{}`", dir.display()))?;
                let size = std::fs::metadata(&built).map(|m| m.len()).unwrap_or(0);
                eprintln!("built {} ({} KiB)", built.display(), size / 1024);
            }
            Ok(ExitCode::SUCCESS)
        }
        UdfCommand::Upload {
            file,
            name,
            module_version,
            conn,
        } => crate::remote::upload(&file, name, &module_version, &conn),
        UdfCommand::List { conn } => crate::remote::list_modules(&conn),
        UdfCommand::Rm { module, conn } => crate::remote::remove_module(&module, &conn),
        UdfCommand::Inspect { file, conn }
            if !file.exists() && !file.to_string_lossy().ends_with(".wasm") =>
        {
            crate::remote::inspect_module(&file.to_string_lossy(), &conn)
        }
        UdfCommand::Inspect { file, conn } => {
            let json = conn.json;
            let sandbox = Sandbox::new(SandboxConfig {
                cache_dir: Some(crate::run::default_cache_dir()),
                max_instances: 4,
                ..SandboxConfig::default()
            })?;
            let m = sandbox.load_file(&file)?;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
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
            }
            Ok(ExitCode::SUCCESS)
        }
        UdfCommand::Wit { dir } => {
            write_wit(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write_wit(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in WIT_FILES {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UdfManifest {
    name: String,
    language: String,
    world: String,
    #[serde(default = "default_module")]
    module: String,
}

fn default_module() -> String {
    "app".into()
}

fn build(dir: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    if dir.join("Cargo.toml").is_file() {
        return build_rust(dir, out);
    }
    let manifest = dir.join("udf.toml");
    if manifest.is_file() {
        let text = std::fs::read_to_string(&manifest)?;
        let m: UdfManifest =
            toml::from_str(&text).with_context(|| format!("in `{}`", manifest.display()))?;
        return match m.language.as_str() {
            "python" => build_python(dir, out, &m),
            other => bail!(
                "`{}`: language `{other}` is not supported yet (supported: rust via Cargo.toml, python)",
                manifest.display()
            ),
        };
    }
    bail!("no Cargo.toml or udf.toml in `{}`", dir.display())
}

fn build_rust(dir: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let profile = if ancestors_define_udf_profile(dir) {
        "--profile=udf"
    } else {
        "--release"
    };
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // Guest code generation that measured faster in the sandbox (see
    // docs/benchmarks.md): SIMD128, which wasmtime supports, and more
    // inlining, since every Wasm function entry pays an epoch (CPU deadline)
    // check. Users' own RUSTFLAGS win.
    if std::env::var_os("RUSTFLAGS").is_none() && std::env::var_os(GUEST_RUSTFLAGS_VAR).is_none() {
        cargo.env(GUEST_RUSTFLAGS_VAR, GUEST_RUSTFLAGS);
    }
    let output = cargo
        .args([
            "build",
            profile,
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!("cargo build failed (is the target installed? `rustup target add wasm32-wasip2`)");
    }
    let mut found = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let manifest_path = msg["manifest_path"].as_str().map(PathBuf::from);
        let same = manifest_path
            .and_then(|p| p.canonicalize().ok())
            .zip(manifest.canonicalize().ok())
            .is_some_and(|(a, b)| a == b);
        if !same {
            continue;
        }
        let name = msg["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(wasm) = msg["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"))
        {
            found = Some((name, PathBuf::from(wasm)));
        }
    }
    let (name, wasm) = found.context("cargo produced no .wasm; is the crate-type `cdylib`?")?;
    let name = name.replace('_', "-");
    let name = name.strip_prefix("udf-").unwrap_or(&name);
    let dest = out.join(format!("{name}.wasm"));
    std::fs::copy(&wasm, &dest).with_context(|| format!("cannot copy to `{}`", dest.display()))?;
    Ok(dest)
}

/// Cargo's per-target flags variable for Wasm guests.
const GUEST_RUSTFLAGS_VAR: &str = "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS";
/// Default code generation flags of Rust guests.
const GUEST_RUSTFLAGS: &str = "-C target-feature=+simd128 -C llvm-args=-inline-threshold=1000";

fn ancestors_define_udf_profile(dir: &Path) -> bool {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    abs.ancestors().any(|d| {
        std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[profile.udf]"))
    })
}

fn build_python(dir: &Path, out: &Path, m: &UdfManifest) -> anyhow::Result<PathBuf> {
    let tmp = tempfile::tempdir()?;
    let wit = tmp.path().join("wit");
    write_wit(&wit)?;
    let sdk = tmp.path().join("sdk");
    std::fs::create_dir_all(&sdk)?;
    std::fs::write(sdk.join("weir_udf.py"), PYTHON_SDK)?;
    let dest = out.join(format!("{}.wasm", m.name));
    let status = Command::new("componentize-py")
        .arg("-d")
        .arg(&wit)
        .args(["-w", &m.world, "componentize", &m.module, "-p"])
        .arg(dir)
        .arg("-p")
        .arg(&sdk)
        .arg("-o")
        .arg(&dest)
        .stdout(Stdio::null())
        .status()
        .context(
            "cannot run componentize-py (install it with `pip install componentize-py==0.25.0`)",
        )?;
    if !status.success() {
        bail!("componentize-py failed");
    }
    Ok(dest)
}
