//! C: wit-bindgen's C bindings for the world, the C SDK (`guest-sdk/c`), and
//! every `.c` file of the UDF, compiled by zig's C compiler for
//! `wasm32-wasi` as a reactor, then made a component.

use std::path::Path;
use std::process::Command;

use super::UdfManifest;
use super::componentize::World;

/// The C SDK: its header and its glue.
pub(super) const C_SDK: &[(&str, &str)] = &[
    ("weir_udf.h", include_str!("../../c/weir_udf.h")),
    ("weir_udf.c", include_str!("../../c/weir_udf.c")),
];

pub(super) fn build(dir: &Path, dest: &Path, m: &UdfManifest) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut world = World::load(&m.world)?;
    let sdk = sdk(tmp.path(), &mut world)?;
    let core = tmp.path().join("core.wasm");
    let mut cc = super::zig();
    cc.arg("cc");
    compile_flags(&mut cc, &sdk, &m.world);
    cc.args(super::sources(dir, "c")?)
        .arg("-I")
        .arg(dir)
        .arg("-o")
        .arg(&core);
    super::run_tool(&mut cc, "zig cc", super::ZIG_INSTALL)?;
    world.componentize(&core, dest)
}

/// Writes the world's bindings and the C SDK into `dir/sdk`; returns it.
pub(super) fn sdk(dir: &Path, world: &mut World) -> anyhow::Result<std::path::PathBuf> {
    let sdk = dir.join("sdk");
    std::fs::create_dir_all(&sdk)?;
    let opts = wit_bindgen_c::Opts {
        no_object_file: true,
        rename_world: Some("bindings".into()),
        ..Default::default()
    };
    world.bindings(opts.build(), &sdk)?;
    super::write_files(&sdk, C_SDK)?;
    Ok(sdk)
}

/// Target, optimisation, the SDK's sources and the world's define.
pub(super) fn compile_flags(cc: &mut Command, sdk: &Path, world: &str) {
    cc.args([
        "-target",
        "wasm32-wasi",
        "-mexec-model=reactor",
        "-O2",
        "-g0",
        "-s",
        "-msimd128",
        "-Wall",
        "-Wno-unused-function",
    ])
    .arg(world_define(world))
    .arg("-I")
    .arg(sdk)
    .arg(sdk.join("bindings.c"))
    .arg(sdk.join("weir_udf.c"));
}

/// The define that selects the C SDK's glue for `world`.
pub(super) fn world_define(world: &str) -> String {
    format!("-DWEIR_WORLD_{}", world.replace('-', "_").to_uppercase())
}
