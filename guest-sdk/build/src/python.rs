//! Python: componentize-py over the WIT package and the Python SDK
//! (`guest-sdk/python`).

use std::path::Path;
use std::process::{Command, Stdio};

use super::UdfManifest;

/// The Python guest SDK.
const PYTHON_SDK: &str = include_str!("../../python/weir_udf.py");

pub(super) fn build(dir: &Path, dest: &Path, m: &UdfManifest) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let wit = tmp.path().join("wit");
    super::write_wit(&wit)?;
    let sdk = tmp.path().join("sdk");
    std::fs::create_dir_all(&sdk)?;
    std::fs::write(sdk.join("weir_udf.py"), PYTHON_SDK)?;
    super::run_tool(
        Command::new("componentize-py")
            .arg("-d")
            .arg(&wit)
            .args(["-w", &m.world, "componentize", &m.module, "-p"])
            .arg(dir)
            .arg("-p")
            .arg(&sdk)
            .arg("-o")
            .arg(dest)
            .stdout(Stdio::null()),
        "componentize-py",
        "pip install componentize-py==0.25.0",
    )
}
