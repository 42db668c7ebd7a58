//! Zig: the UDF's `app.zig` over the Zig SDK (`guest-sdk/zig`), which wraps
//! the C SDK and wit-bindgen's C bindings; all compiled by `zig build-exe`
//! for `wasm32-wasi` as a reactor, then made a component.

use std::path::Path;

use anyhow::{Context, bail};

use super::UdfManifest;
use super::componentize::World;

/// The Zig SDK: the `weir` module and the root that exports its callbacks.
const ZIG_SDK: &[(&str, &str)] = &[
    ("weir.zig", include_str!("../../zig/weir.zig")),
    ("glue.zig", include_str!("../../zig/glue.zig")),
];

pub(super) fn build(dir: &Path, dest: &Path, m: &UdfManifest) -> anyhow::Result<()> {
    let app = dir.join(format!("{}.zig", m.module));
    if !app.is_file() {
        bail!("no `{}`", app.display());
    }
    let tmp = tempfile::tempdir()?;
    let mut world = World::load(&m.world)?;
    let sdk = super::c::sdk(tmp.path(), &mut world)?;
    super::write_files(&sdk, ZIG_SDK)?;
    let app = std::path::absolute(&app)?;
    // Zig imports C through `zig translate-c` (0.16 dropped `@cImport`).
    let translated = super::zig()
        .args(["translate-c", "-target", "wasm32-wasi", "-lc", "-I"])
        .arg(&sdk)
        .arg(sdk.join("weir_udf.h"))
        .output()
        .with_context(|| format!("cannot run zig (install it with `{}`)", super::ZIG_INSTALL))?;
    if !translated.status.success() {
        bail!(
            "zig translate-c failed on the C SDK: {}",
            String::from_utf8_lossy(&translated.stderr)
        );
    }
    std::fs::write(sdk.join("weir_c.zig"), &translated.stdout)?;
    let core = tmp.path().join("core.wasm");
    let mut zig = super::zig();
    zig.args([
        "build-exe",
        "-target",
        "wasm32-wasi",
        "-mexec-model=reactor",
        "-fno-entry",
        "-O",
        "ReleaseFast",
        "-fstrip",
        "-lc",
        "-cflags",
        "-O2",
        "-g0",
    ])
    .arg(super::c::world_define(&m.world))
    .arg("--")
    .arg("-I")
    .arg(&sdk)
    .arg(sdk.join("bindings.c"))
    .arg(sdk.join("weir_udf.c"))
    .args(["--dep", "weir", "--dep", "app"])
    .arg(format!("-Mroot={}", sdk.join("glue.zig").display()))
    .args(["--dep", "weir"])
    .arg(format!("-Mapp={}", app.display()))
    .args(["--dep", "weir_c"])
    .arg(format!("-Mweir={}", sdk.join("weir.zig").display()))
    .arg(format!("-Mweir_c={}", sdk.join("weir_c.zig").display()))
    .arg(format!("-femit-bin={}", core.display()))
    .current_dir(tmp.path());
    super::run_tool(&mut zig, "zig build-exe", super::ZIG_INSTALL)?;
    world.componentize(&core, dest)
}
