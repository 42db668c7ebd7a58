//! Rust: `cargo build --target wasm32-wasip2` of the crate (its `udf`
//! profile when the workspace defines one, `--release` otherwise); the
//! component is named after the package, without a `udf-` prefix.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

pub(super) fn build(dir: &Path, out: &Path) -> anyhow::Result<PathBuf> {
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
