//! Core module → component: generate a language's bindings for a world, and
//! wrap the compiled core module into a component of that world (the WIT
//! metadata embedded, WASI preview 1 imports adapted to preview 2).

use std::path::Path;

use anyhow::{Context, anyhow};
use wit_bindgen_core::{Files, WorldGenerator};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{Resolve, WorldId};

/// The WIT package resolved, with the world `world` selected.
pub(super) struct World {
    resolve: Resolve,
    id: WorldId,
}

impl World {
    pub(super) fn load(world: &str) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        super::write_wit(tmp.path())?;
        let mut resolve = Resolve::default();
        let (pkg, _) = resolve
            .push_dir(tmp.path())
            .map_err(|e| anyhow!("the built-in WIT package does not parse: {e:#}"))?;
        let id = resolve
            .select_world(&[pkg], Some(world))
            .map_err(|e| anyhow!("world `{world}`: {e:#}"))?;
        Ok(Self { resolve, id })
    }

    /// Writes the bindings `generator` makes for this world into `dir`.
    pub(super) fn bindings(
        &mut self,
        mut generator: Box<dyn WorldGenerator>,
        dir: &Path,
    ) -> anyhow::Result<()> {
        let mut files = Files::default();
        generator
            .generate(&mut self.resolve, self.id, &mut files)
            .map_err(|e| anyhow!("cannot generate bindings: {e:#}"))?;
        for (name, bytes) in files.iter() {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
        }
        Ok(())
    }

    /// Turns the core module at `core` into a component at `dest`. Its WASI
    /// preview 1 imports, if any, go through wasmtime's reactor adapter; the
    /// host gives them no files, no network and no environment.
    pub(super) fn componentize(&self, core: &Path, dest: &Path) -> anyhow::Result<()> {
        let mut module =
            std::fs::read(core).with_context(|| format!("cannot read `{}`", core.display()))?;
        wit_component::embed_component_metadata(
            &mut module,
            &self.resolve,
            self.id,
            StringEncoding::UTF8,
            false,
        )
        .map_err(|e| anyhow!("cannot embed the WIT world: {e:#}"))?;
        let component = ComponentEncoder::default()
            .validate(true)
            .module(&module)
            .map_err(|e| anyhow!("not a core module of this world: {e:#}"))?
            .adapter(
                "wasi_snapshot_preview1",
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
            .map_err(|e| anyhow!("the WASI adapter: {e:#}"))?
            .encode()
            .map_err(|e| anyhow!("cannot make a component: {e:#}"))?;
        std::fs::write(dest, component)
            .with_context(|| format!("cannot write `{}`", dest.display()))
    }
}
