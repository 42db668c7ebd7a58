//! The UDF toolchain driver behind `weir udf build`: one UDF source
//! directory in, one component out, named after the operator, in the output
//! directory (`target/udfs` by default).
//!
//! * a Cargo crate → [`rust`] (`cargo build --target wasm32-wasip2`);
//! * a directory with `udf.toml` → the builder of its `language`:
//!   [`python`] (componentize-py), [`js`] (componentize-js), [`c`] and
//!   [`zig`] (zig's compiler, over bindings from `wit-bindgen-c`), [`go`]
//!   (Go's wasip1 port, over bindings from `wit-bindgen-go`).
//!
//! The WIT package and every language's SDK are compiled into this crate
//! (and so into the `weir` binary), so a build works outside the weir
//! repository too. Core modules (C, Zig, Go)
//! become components in [`componentize`], with `wit-component`, not with an
//! external `wasm-tools`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Deserialize;

mod c;
mod componentize;
mod go;
mod js;
mod python;
mod rust;
mod zig;

/// The WIT package, as compiled into this crate.
pub const WIT_FILES: &[(&str, &str)] = &[
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("stateless.wit", include_str!("../../../wit/stateless.wit")),
    ("windows.wit", include_str!("../../../wit/windows.wit")),
    ("keyed.wit", include_str!("../../../wit/keyed.wit")),
    ("migration.wit", include_str!("../../../wit/migration.wit")),
];

/// Languages with a `udf.toml` build, as spelled in its `language` field.
pub const LANGUAGES: &[&str] = &["python", "js", "c", "zig", "go"];

/// `udf.toml`: how a non-Rust UDF directory is built.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdfManifest {
    /// The operator's name: the component is `NAME.wasm`.
    pub name: String,
    /// One of [`LANGUAGES`].
    pub language: String,
    /// The WIT world the operator implements (`map-operator`, …).
    pub world: String,
    /// The entry module, without extension: `app` (`app.py`, `app.js`,
    /// `app.zig`). C and Go build every `.c` / `.go` file of the directory.
    #[serde(default = "default_module")]
    pub module: String,
}

fn default_module() -> String {
    "app".into()
}

/// Builds the UDF in `dir` into `out`; returns the component's path.
pub fn build(dir: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    if dir.join("Cargo.toml").is_file() {
        return rust::build(dir, out);
    }
    let manifest = dir.join("udf.toml");
    if !manifest.is_file() {
        bail!("no Cargo.toml or udf.toml in `{}`", dir.display());
    }
    let text = std::fs::read_to_string(&manifest)?;
    let m: UdfManifest =
        toml::from_str(&text).with_context(|| format!("in `{}`", manifest.display()))?;
    if !WORLDS.contains(&m.world.as_str()) {
        bail!(
            "`{}`: unknown world `{}` (one of: {})",
            manifest.display(),
            m.world,
            WORLDS.join(", ")
        );
    }
    let dest = out.join(format!("{}.wasm", m.name));
    match m.language.as_str() {
        "python" => python::build(dir, &dest, &m)?,
        "js" | "javascript" => js::build(dir, &dest, &m)?,
        "c" => c::build(dir, &dest, &m)?,
        "zig" => zig::build(dir, &dest, &m)?,
        "go" => go::build(dir, &dest, &m)?,
        other => bail!(
            "`{}`: language `{other}` is not supported (supported: rust via Cargo.toml, {})",
            manifest.display(),
            LANGUAGES.join(", ")
        ),
    }
    Ok(dest)
}

/// The operator worlds a `udf.toml` may name. (State migration,
/// `migrating-…`, has an SDK in Rust only so far.)
pub const WORLDS: &[&str] = &[
    "filter-operator",
    "map-operator",
    "flat-map-operator",
    "aggregate-operator",
    "process-window-operator",
    "keyed-process-operator",
];

/// Writes the WIT package into `dir`.
pub fn write_wit(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in WIT_FILES {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// Writes embedded files (`(relative path, contents)`) under `dir`.
fn write_files(dir: &Path, files: &[(&str, &str)]) -> anyhow::Result<()> {
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    Ok(())
}

/// Runs a build tool; a failure names the tool and how to install it.
fn run_tool(cmd: &mut Command, what: &str, install: &str) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {what} (install it with `{install}`)"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// The files of `dir` whose name ends with `.{ext}`, sorted.
fn sources(dir: &Path, ext: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == ext) && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    if found.is_empty() {
        bail!("no .{ext} file in `{}`", dir.display());
    }
    Ok(found)
}

/// `zig`, from PATH, or the one the `ziglang` Python package carries.
fn zig() -> Command {
    if let Ok(path) = std::env::var("WEIR_ZIG") {
        return Command::new(path);
    }
    if Command::new("zig")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Command::new("zig");
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "ziglang"]);
    cmd
}

/// How to install zig when it is missing.
const ZIG_INSTALL: &str = "pip install ziglang==0.17.1";
