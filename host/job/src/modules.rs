//! Finding the component a job's `module` refers to.
//!
//! `module = "bid-filter"` is a *name*: `bid-filter.wasm` is looked up in the
//! module path. Anything with a `/` or ending in `.wasm` is a *path*, relative
//! to the job file. (The control plane resolves `name@version` against its
//! registry instead.)

use std::path::{Path, PathBuf};

/// Where a job's `module` references are found: the module path of `weir
/// run`, or a tenant's registry in the control plane.
pub trait ModuleSource {
    /// The component file `module` (as written in the job file at
    /// `job_file`) names.
    ///
    /// # Errors
    /// A message saying what was looked for, and where.
    fn resolve(&self, job_file: &Path, module: &str) -> Result<PathBuf, ModuleLookupError>;

    /// The version `module` resolved to, once resolved, if the source knows
    /// versions (a registry does; a module path does not). Recorded with the
    /// state the module writes, and given to a later version's migration.
    fn version(&self, module: &str) -> Option<String> {
        let _ = module;
        None
    }
}

impl ModuleSource for ModulePath {
    fn resolve(&self, job_file: &Path, module: &str) -> Result<PathBuf, ModuleLookupError> {
        ModulePath::resolve(self, job_file, module)
    }
}

/// Why a module a job file names cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum ModuleLookupError {
    /// A path to a component that is not there.
    #[error("module file `{}` does not exist", .0.display())]
    NoFile(PathBuf),
    /// A name found in none of the directories.
    #[error(
        "module `{module}` not found: no `{module}.wasm` in {}; build it with `weir udf build <dir>` or give a path",
        list(dirs)
    )]
    NotFound {
        /// The name.
        module: String,
        /// Where it was looked for.
        dirs: Vec<PathBuf>,
    },
    /// Another source refused it (a tenant's registry), saying why.
    #[error("{0}")]
    Refused(String),
}

fn list(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| format!("`{}`", d.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Directories where named modules are looked up, in order.
#[derive(Clone, Debug, Default)]
pub struct ModulePath {
    dirs: Vec<PathBuf>,
}

impl ModulePath {
    /// Explicit directories only.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self { dirs }
    }

    /// The default search path for a job file: `extra` (command-line flags),
    /// then `WEIR_MODULE_PATH` (colon-separated), then `target/udfs` under the
    /// current directory, then under the job file's directory and each of its
    /// ancestors — where `weir udf build` puts what it builds.
    pub fn for_job(job_file: &Path, extra: &[PathBuf]) -> Self {
        let mut dirs: Vec<PathBuf> = extra.to_vec();
        if let Some(env) = std::env::var_os("WEIR_MODULE_PATH") {
            dirs.extend(std::env::split_paths(&env));
        }
        dirs.push(PathBuf::from("target/udfs"));
        let abs = std::path::absolute(job_file).unwrap_or_else(|_| job_file.to_path_buf());
        for dir in abs.ancestors().skip(1) {
            dirs.push(dir.join("target/udfs"));
        }
        dirs.dedup();
        Self { dirs }
    }

    /// The directories searched.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Resolves `module` as written in the job file at `job_file`.
    ///
    /// # Errors
    /// A message saying where it looked.
    pub fn resolve(&self, job_file: &Path, module: &str) -> Result<PathBuf, ModuleLookupError> {
        if module.contains('/') || module.ends_with(".wasm") {
            let p = Path::new(module);
            let p = if p.is_relative() {
                job_file.parent().unwrap_or(Path::new(".")).join(p)
            } else {
                p.to_path_buf()
            };
            return if p.is_file() {
                Ok(p)
            } else {
                Err(ModuleLookupError::NoFile(p))
            };
        }
        let file = format!("{module}.wasm");
        self.dirs
            .iter()
            .map(|d| d.join(&file))
            .find(|p| p.is_file())
            .ok_or_else(|| ModuleLookupError::NotFound {
                module: module.to_string(),
                dirs: self.dirs.clone(),
            })
    }
}
