//! A compiled, validated operator component.

use std::fmt;
use std::sync::Arc;

use wasmtime::component::{Component, InstancePre};

use crate::bindings::{aggregate, filter, flat_map, keyed, map, migration, process_window};
use crate::error::SandboxError;
use crate::guest::GuestState;
use crate::instance::{InstanceLabel, InstanceLimits, OperatorInstance};
use crate::runtime::Sandbox;

/// The sha256 of a component's bytes: its identity everywhere in weir.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModuleDigest(pub [u8; 32]);

impl ModuleDigest {
    /// The digest of a component's bytes.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(bytes).into())
    }

    /// Lower-case hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ModuleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for ModuleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The export of a module that migrates state of earlier versions.
pub const STATE_MIGRATION: &str = "weir:udf/state-migration@0.1.0";

/// Which operator world a component implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperatorKind {
    /// `filter-operator`: keeps some records.
    Filter,
    /// `map-operator`: one record out per record in.
    Map,
    /// `flat-map-operator`: zero or more records out per record in.
    FlatMap,
    /// `aggregate-operator`: an incremental window aggregate.
    Aggregate,
    /// `process-window-operator`: a function over all records of a window.
    ProcessWindow,
    /// `keyed-process-operator`: records of one key, with keyed state and
    /// timers.
    KeyedProcess,
}

impl OperatorKind {
    /// All kinds, in WIT order.
    pub const ALL: [OperatorKind; 6] = [
        Self::Filter,
        Self::Map,
        Self::FlatMap,
        Self::Aggregate,
        Self::ProcessWindow,
        Self::KeyedProcess,
    ];

    /// The exported interface that identifies the kind.
    pub fn export_name(self) -> &'static str {
        match self {
            Self::Filter => "weir:udf/filter@0.1.0",
            Self::Map => "weir:udf/mapper@0.1.0",
            Self::FlatMap => "weir:udf/flat-mapper@0.1.0",
            Self::Aggregate => "weir:udf/aggregator@0.1.0",
            Self::ProcessWindow => "weir:udf/window-processor@0.1.0",
            Self::KeyedProcess => "weir:udf/keyed-processor@0.1.0",
        }
    }

    /// The WIT world a guest builds against.
    pub fn world(self) -> &'static str {
        match self {
            Self::Filter => "filter-operator",
            Self::Map => "map-operator",
            Self::FlatMap => "flat-map-operator",
            Self::Aggregate => "aggregate-operator",
            Self::ProcessWindow => "process-window-operator",
            Self::KeyedProcess => "keyed-process-operator",
        }
    }

    /// The name used in job files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Map => "map",
            Self::FlatMap => "flat-map",
            Self::Aggregate => "aggregate",
            Self::ProcessWindow => "process-window",
            Self::KeyedProcess => "keyed-process",
        }
    }
}

impl fmt::Display for OperatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) enum KindPre {
    Filter(filter::FilterOperatorPre<GuestState>),
    Map(map::MapOperatorPre<GuestState>),
    FlatMap(flat_map::FlatMapOperatorPre<GuestState>),
    Aggregate(aggregate::AggregateOperatorPre<GuestState>),
    ProcessWindow(process_window::ProcessWindowOperatorPre<GuestState>),
    KeyedProcess(keyed::KeyedProcessOperatorPre<GuestState>),
}

/// A component that passed every check and is ready to instantiate: compiled
/// (or loaded from the cache), its world identified, its imports resolved.
/// Instantiating it again is cheap (a few µs with the pooling allocator).
pub struct OperatorModule {
    pub(crate) sandbox: Sandbox,
    name: String,
    digest: ModuleDigest,
    kind: OperatorKind,
    imports: Vec<String>,
    exports: Vec<String>,
    pub(crate) pre: KindPre,
    /// Where the `state-migration` export is, for a module that has it.
    pub(crate) migrator: Option<(InstancePre<GuestState>, migration::StateMigratorIndices)>,
}

impl fmt::Debug for OperatorModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorModule")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("kind", &self.kind)
            .finish()
    }
}

impl OperatorModule {
    pub(crate) fn new(
        sandbox: Sandbox,
        name: &str,
        digest: ModuleDigest,
        component: Component,
    ) -> Result<Arc<Self>, SandboxError> {
        let engine = &sandbox.inner.engine;
        let kind = detect_kind(name, engine, &component)?;
        let ty = component.component_type();
        let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let pre: InstancePre<GuestState> = sandbox
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| SandboxError::ForbiddenImport {
                module: name.to_string(),
                message: format!("{e:#}"),
            })?;
        let type_err = |e: wasmtime::Error| SandboxError::WrongWorld {
            module: name.to_string(),
            message: format!(
                "it exports `{}` but not with the types of {}: {e:#}",
                kind.export_name(),
                crate::WIT_PACKAGE
            ),
        };
        let migrator = if exports.iter().any(|e: &String| e == STATE_MIGRATION) {
            if !matches!(kind, OperatorKind::Aggregate | OperatorKind::KeyedProcess) {
                return Err(SandboxError::WrongWorld {
                    module: name.to_string(),
                    message: format!(
                        "it exports `{STATE_MIGRATION}`, but a {kind} operator keeps no state \
                         to migrate (only aggregate and keyed-process operators do)"
                    ),
                });
            }
            let indices = migration::StateMigratorIndices::new(&pre).map_err(|e| {
                SandboxError::WrongWorld {
                    module: name.to_string(),
                    message: format!(
                        "it exports `{STATE_MIGRATION}` but not with the types of {}: {e:#}",
                        crate::WIT_PACKAGE
                    ),
                }
            })?;
            Some((pre.clone(), indices))
        } else {
            None
        };
        let pre = match kind {
            OperatorKind::Filter => {
                KindPre::Filter(filter::FilterOperatorPre::new(pre).map_err(type_err)?)
            }
            OperatorKind::Map => KindPre::Map(map::MapOperatorPre::new(pre).map_err(type_err)?),
            OperatorKind::FlatMap => {
                KindPre::FlatMap(flat_map::FlatMapOperatorPre::new(pre).map_err(type_err)?)
            }
            OperatorKind::Aggregate => {
                KindPre::Aggregate(aggregate::AggregateOperatorPre::new(pre).map_err(type_err)?)
            }
            OperatorKind::ProcessWindow => KindPre::ProcessWindow(
                process_window::ProcessWindowOperatorPre::new(pre).map_err(type_err)?,
            ),
            OperatorKind::KeyedProcess => {
                KindPre::KeyedProcess(keyed::KeyedProcessOperatorPre::new(pre).map_err(type_err)?)
            }
        };
        Ok(Arc::new(Self {
            sandbox,
            name: name.to_string(),
            digest,
            kind,
            imports,
            exports,
            pre,
            migrator,
        }))
    }

    /// Display name (the file name, or the registry name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Content hash of the component.
    pub fn digest(&self) -> ModuleDigest {
        self.digest
    }

    /// The operator world the component implements.
    pub fn kind(&self) -> OperatorKind {
        self.kind
    }

    /// The interfaces the component imports (all granted by the sandbox).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// The interfaces the component exports.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// Whether the component exports `state-migration`: it converts state
    /// written by other versions of itself.
    pub fn migrates_state(&self) -> bool {
        self.migrator.is_some()
    }

    /// Creates a warm instance and calls its `init` with `config`.
    ///
    /// # Errors
    /// [`SandboxError::Guest`] if instantiation or `init` fails (including a
    /// guest that rejects its configuration).
    pub fn instantiate(
        self: &Arc<Self>,
        label: InstanceLabel,
        limits: InstanceLimits,
        config: &[(String, String)],
    ) -> Result<OperatorInstance, SandboxError> {
        OperatorInstance::new(self.clone(), label, limits, config)
    }
}

/// Finds the operator interface among the component's exports.
fn detect_kind(
    name: &str,
    engine: &wasmtime::Engine,
    component: &Component,
) -> Result<OperatorKind, SandboxError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(n, _)| n.to_string())
        .collect();
    let found: Vec<OperatorKind> = OperatorKind::ALL
        .into_iter()
        .filter(|k| exports.iter().any(|e| e == k.export_name()))
        .collect();
    match found.as_slice() {
        [kind] => Ok(*kind),
        [] => {
            let ours: Vec<&String> = exports
                .iter()
                .filter(|e| e.starts_with("weir:udf/"))
                .collect();
            let message = if let Some(e) = ours.first() {
                format!(
                    "it exports `{e}`, which this host does not support (it implements {}: \
                     worlds {})",
                    crate::WIT_PACKAGE,
                    worlds()
                )
            } else {
                format!(
                    "it exports {} but no operator interface of {}; build it against one of \
                     the worlds {} in `wit/`",
                    if exports.is_empty() {
                        "nothing".to_string()
                    } else {
                        exports
                            .iter()
                            .map(|e| format!("`{e}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    crate::WIT_PACKAGE,
                    worlds()
                )
            };
            Err(SandboxError::WrongWorld {
                module: name.to_string(),
                message,
            })
        }
        many => Err(SandboxError::WrongWorld {
            module: name.to_string(),
            message: format!(
                "it exports several operator interfaces ({}); an operator component implements \
                 exactly one",
                many.iter()
                    .map(|k| k.export_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// The operator worlds, for messages.
fn worlds() -> String {
    OperatorKind::ALL
        .iter()
        .map(|k| k.world())
        .collect::<Vec<_>>()
        .join(", ")
}
