//! Not built yet.
use std::path::Path;

pub(super) fn build(_: &Path, _: &Path, m: &super::UdfManifest) -> anyhow::Result<()> {
    anyhow::bail!("language `{}` has no build yet", m.language)
}
