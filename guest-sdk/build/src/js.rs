//! JavaScript: componentize-js (StarlingMonkey) over the UDF's `app.js`
//! and the JavaScript SDK (`guest-sdk/js`), copied beside it so that
//! `import … from "./weir.js"` resolves. WASI features the operator does
//! not need (stdio, random, clocks, http) are left out: the component
//! imports the weir world only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::UdfManifest;

/// The JavaScript SDK.
const JS_SDK: &[(&str, &str)] = &[
    ("weir.js", include_str!("../../js/weir.js")),
    ("weir-keyed.js", include_str!("../../js/weir-keyed.js")),
];

/// The componentize-js version `.ci/setup` installs.
const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

pub(super) fn build(dir: &Path, dest: &Path, m: &UdfManifest) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("src");
    copy_dir(dir, &src)?;
    super::write_files(&src, JS_SDK)?;
    let wit = tmp.path().join("wit");
    super::write_wit(&wit)?;
    let app = src.join(format!("{}.js", m.module));
    if !app.is_file() {
        bail!("no `{}.js` in `{}`", m.module, dir.display());
    }
    let dest = std::path::absolute(dest)?;
    super::run_tool(
        componentize_js()
            .arg(&app)
            .arg("--wit")
            .arg(&wit)
            .args(["--world-name", &m.world])
            .args(["-d", "stdio", "random", "clocks", "http", "fetch-event"])
            .arg("-o")
            .arg(&dest)
            .current_dir(tmp.path())
            .stdout(Stdio::null()),
        "componentize-js",
        &format!("npm install --prefix ~/.cache/weir/js {COMPONENTIZE_JS}"),
    )
}

/// `componentize-js`: `$WEIR_COMPONENTIZE_JS`, the one `.ci/setup`
/// installs under `~/.cache/weir/js`, or PATH's.
fn componentize_js() -> Command {
    if let Some(path) = std::env::var_os("WEIR_COMPONENTIZE_JS") {
        return Command::new(path);
    }
    let cached = std::env::var_os("HOME")
        .map(PathBuf::from)
        .map(|h| h.join(".cache/weir/js/node_modules/.bin/componentize-js"));
    match cached {
        Some(path) if path.is_file() => Command::new(path),
        _ => Command::new("componentize-js"),
    }
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read `{}`", from.display()))?
    {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "node_modules" {
                copy_dir(&src, &dst)?;
            }
        } else {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("cannot copy `{}`", src.display()))?;
        }
    }
    Ok(())
}
