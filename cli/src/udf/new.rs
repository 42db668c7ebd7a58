//! `weir udf new --lang L [--kind K] NAME`: a UDF project to start from.
//!
//! The templates are the conformance operators (`udfs/conformance`), so every
//! template is built and checked against the golden pipeline by the test
//! suite: a new project builds with `weir udf build NAME` as it is.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// One template: language, kind, world, and its source files (name in the
/// new project, contents).
struct Template {
    lang: &'static str,
    kind: &'static str,
    world: &'static str,
    files: &'static [(&'static str, &'static str)],
}

macro_rules! template {
    ($lang:literal, $kind:literal, $world:literal, $($file:literal => $src:literal),+) => {
        Template {
            lang: $lang,
            kind: $kind,
            world: $world,
            files: &[$(($file, include_str!(concat!("../../../udfs/conformance/", $lang, "/", $kind, "/", $src)))),+],
        }
    };
}

const TEMPLATES: &[Template] = &[
    template!("rust", "filter", "filter-operator", "src/lib.rs" => "src/lib.rs"),
    template!("rust", "map", "map-operator", "src/lib.rs" => "src/lib.rs"),
    template!("rust", "flat-map", "flat-map-operator", "src/lib.rs" => "src/lib.rs"),
    template!("rust", "aggregate", "aggregate-operator", "src/lib.rs" => "src/lib.rs"),
    template!("rust", "keyed", "keyed-process-operator", "src/lib.rs" => "src/lib.rs"),
    template!("python", "filter", "filter-operator", "app.py" => "app.py"),
    template!("python", "map", "map-operator", "app.py" => "app.py"),
    template!("python", "flat-map", "flat-map-operator", "app.py" => "app.py"),
    template!("python", "aggregate", "aggregate-operator", "app.py" => "app.py"),
    template!("python", "keyed", "keyed-process-operator", "app.py" => "app.py"),
    template!("js", "filter", "filter-operator", "app.js" => "app.js"),
    template!("js", "map", "map-operator", "app.js" => "app.js"),
    template!("js", "flat-map", "flat-map-operator", "app.js" => "app.js"),
    template!("js", "aggregate", "aggregate-operator", "app.js" => "app.js"),
    template!("js", "keyed", "keyed-process-operator", "app.js" => "app.js"),
    template!("c", "filter", "filter-operator", "filter.c" => "filter.c"),
    template!("c", "map", "map-operator", "map.c" => "map.c"),
    template!("c", "flat-map", "flat-map-operator", "flat_map.c" => "flat_map.c"),
    template!("c", "aggregate", "aggregate-operator", "aggregate.c" => "aggregate.c"),
    template!("c", "keyed", "keyed-process-operator", "keyed.c" => "keyed.c"),
    template!("go", "filter", "filter-operator", "filter.go" => "filter.go"),
    template!("go", "map", "map-operator", "map.go" => "map.go"),
    template!("go", "flat-map", "flat-map-operator", "flat_map.go" => "flat_map.go"),
    template!("go", "aggregate", "aggregate-operator", "aggregate.go" => "aggregate.go"),
    template!("go", "keyed", "keyed-process-operator", "keyed.go" => "keyed.go"),
    template!("zig", "filter", "filter-operator", "app.zig" => "app.zig"),
    template!("zig", "map", "map-operator", "app.zig" => "app.zig"),
    template!("zig", "flat-map", "flat-map-operator", "app.zig" => "app.zig"),
    template!("zig", "aggregate", "aggregate-operator", "app.zig" => "app.zig"),
    template!("zig", "keyed", "keyed-process-operator", "app.zig" => "app.zig"),
];

/// The Rust SDK of the weir checkout this binary was built from, for the
/// `path` dependency of a new Rust UDF (`WEIR_RUST_SDK` overrides it).
fn rust_sdk() -> PathBuf {
    std::env::var_os("WEIR_RUST_SDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/rust"))
}

/// Writes the project `dir` (its last component names the operator).
pub(super) fn new(dir: &Path, lang: &str, kind: &str) -> anyhow::Result<()> {
    let lang = if lang == "javascript" { "js" } else { lang };
    let Some(t) = TEMPLATES.iter().find(|t| t.lang == lang && t.kind == kind) else {
        let langs: Vec<&str> = TEMPLATES
            .iter()
            .map(|t| t.lang)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !langs.contains(&lang) {
            bail!(
                "no templates for language `{lang}` (one of: {})",
                langs.join(", ")
            );
        }
        bail!("no `{kind}` template (one of: filter, map, flat-map, aggregate, keyed)");
    };
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .with_context(|| format!("`{}`: the directory's name is the operator's, and must be letters, digits, `-` or `_`", dir.display()))?;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("`{}` exists and is not empty", dir.display());
    }
    let mut files: Vec<(String, String)> = t
        .files
        .iter()
        .map(|(f, src)| (f.to_string(), src.to_string()))
        .collect();
    if lang == "rust" {
        let sdk = std::path::absolute(rust_sdk())?;
        files.push((
            "Cargo.toml".into(),
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
weir-udf = {{ path = "{}" }}

# Small, fast guests: what `weir udf build` uses when no profile is set.
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"

[workspace]
"#,
                sdk.display()
            ),
        ));
    } else {
        files.push((
            "udf.toml".into(),
            format!(
                "# How `weir udf build` builds this operator.\nname = \"{name}\"\nlanguage = \"{lang}\"\nworld = \"{}\"\n",
                t.world
            ),
        ));
    }
    for (file, text) in &files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    eprintln!(
        "wrote `{}`: a {lang} {} operator (world {}), from the conformance operator `{kind}` (udfs/conformance/README.md says what it does); build it with `weir udf build {}`",
        dir.display(),
        t.kind,
        t.world,
        dir.display()
    );
    Ok(())
}
