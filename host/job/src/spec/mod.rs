//! Reading a job file into typed node specs: the `[job]` table here, one
//! parser per node section beside it ([`source`], [`operator`], [`sink`]),
//! and the [`NodeContext`] that locates every error at its line.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use weir_connectors::file::FileSourceOptions;
use weir_connectors::file_sink::FileSinkOptions;
use weir_connectors::generator::GeneratorOptions;
use weir_connectors::nexmark::NexmarkOptions;
use weir_connectors::stdout::StdoutOptions;
use weir_engine::assigner::WindowAssigner;
use weir_engine::watermark::WatermarkStrategy;
use weir_operators::{Evictor, TimeMode, Trigger, WindowSpec};
use weir_sandbox::{InstanceLimits, OperatorKind};

use crate::error::JobError;
use crate::locate::{key_at, key_line, line_of};

mod operator;
mod sink;
mod source;

/// Makes a path in a job file relative to the file's directory `dir`.
fn resolve(dir: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = dir.join(&*p);
    }
}

/// Why `kind = "kafka"` is refused by a build without Kafka.
#[cfg(not(feature = "kafka"))]
const KAFKA_UNAVAILABLE: &str = "this weir was built without Kafka (the `kafka` feature); the full build (`cargo build --release -p weir-cli`, run by `bash .ci/setup`) has it";

/// A parsed job file. Nodes keep the order of the file.
#[derive(Debug)]
pub struct JobSpec {
    /// The file it came from.
    pub file: PathBuf,
    pub(crate) text: String,
    /// Job name (`[job] name`, or the file's stem).
    pub name: String,
    /// Default parallelism of nodes.
    pub parallelism: usize,
    /// Capacity of channels between tasks, in batches.
    pub channel_capacity: usize,
    /// Number of key groups (the most subtasks a keyed operator can have).
    pub max_parallelism: u32,
    /// Where keyed state lives (`[job] state_backend`): the heap, or RocksDB
    /// under the system's temporary directory (`weir run --state-dir` moves
    /// it under the state directory).
    pub state_backend: weir_state::Backend,
    /// Sources.
    pub sources: Vec<Node<SourceSpec>>,
    /// Operators.
    pub operators: Vec<Node<OperatorSpec>>,
    /// Sinks.
    pub sinks: Vec<Node<SinkSpec>>,
}

/// A named node and where it is defined.
#[derive(Debug)]
pub struct Node<T> {
    /// The node's name (its table's key).
    pub name: String,
    /// What it is.
    pub spec: T,
    /// Whether its input is partitioned by record key (`partition = "key"`).
    pub key_by: bool,
    /// Sources: how watermarks are generated.
    pub watermark: WatermarkSpec,
    pub(crate) header: Range<usize>,
}

/// A source's `watermark` table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatermarkSpec {
    /// The strategy.
    pub strategy: WatermarkStrategy,
    /// Idle timeout of each split.
    pub idle_timeout: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatermark {
    strategy: String,
    #[serde(default)]
    max_out_of_orderness_ms: Option<u64>,
    #[serde(default)]
    idle_timeout_ms: Option<u64>,
}

/// A source table.
#[derive(Debug)]
pub enum SourceSpec {
    /// `kind = "nexmark"`.
    Nexmark(NexmarkOptions),
    /// `kind = "generator"`.
    Generator(GeneratorOptions),
    /// `kind = "file"`.
    File(FileSourceOptions),
    /// `kind = "kafka"`.
    #[cfg(feature = "kafka")]
    Kafka(weir_kafka::KafkaSourceOptions),
}

impl SourceSpec {
    /// Parallelism set in the table, if any.
    pub fn parallelism(&self) -> Option<usize> {
        match self {
            Self::Nexmark(o) => o.parallelism,
            Self::Generator(o) => o.parallelism,
            Self::File(o) => o.parallelism,
            #[cfg(feature = "kafka")]
            Self::Kafka(o) => o.parallelism,
        }
    }
}

/// An operator table.
#[derive(Debug)]
pub struct OperatorSpec {
    /// Names of the input nodes.
    pub inputs: Vec<String>,
    /// Module name or path, as written.
    pub module: String,
    /// Expected kind, if given.
    pub kind: Option<OperatorKind>,
    /// Flattened `config` table.
    pub config: Vec<(String, String)>,
    /// Parallelism, if set.
    pub parallelism: Option<usize>,
    /// Whether the operator may be fused with its input.
    pub chain: bool,
    /// Sandbox limits of each instance.
    pub limits: InstanceLimits,
    /// Windowing, for aggregate and process-window operators. The late side
    /// output's port is filled in when the dataflow is built.
    pub window: Option<WindowSpec>,
    /// Names of the side outputs (a window's late output, a keyed process
    /// function's declared outputs), readable as `NODE.NAME`.
    pub side_outputs: Vec<String>,
    /// Time-to-live of keyed states by name (`*` for all), for keyed
    /// process operators.
    pub state_ttl: Vec<(String, Duration)>,
}

/// A sink table.
#[derive(Debug)]
pub struct SinkSpec {
    /// Names of the input nodes.
    pub inputs: Vec<String>,
    /// The sink itself.
    pub kind: SinkKind,
}

/// Sink kinds.
#[derive(Debug)]
pub enum SinkKind {
    /// `kind = "stdout"`.
    Stdout(StdoutOptions),
    /// `kind = "file"`.
    File(FileSinkOptions),
    /// `kind = "kafka"`.
    #[cfg(feature = "kafka")]
    Kafka(weir_kafka::KafkaSinkOptions),
    /// `kind = "upsert"`.
    Upsert(weir_connectors::upsert::UpsertSinkOptions),
    /// `kind = "discard"`: drops everything (benchmarks).
    Discard(weir_connectors::discard::DiscardOptions),
}

impl SinkKind {
    /// Parallelism set in the table, if any.
    pub fn parallelism(&self) -> Option<usize> {
        match self {
            Self::Stdout(o) => o.parallelism,
            Self::File(o) => o.parallelism,
            #[cfg(feature = "kafka")]
            Self::Kafka(o) => o.parallelism,
            Self::Upsert(o) => o.parallelism,
            Self::Discard(o) => o.parallelism,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    #[serde(default)]
    job: JobSection,
    #[serde(default)]
    source: IndexMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    operator: IndexMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    sink: IndexMap<String, Spanned<toml::Table>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSection {
    name: Option<String>,
    parallelism: Option<usize>,
    channel_capacity: Option<usize>,
    max_parallelism: Option<u32>,
    state_backend: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Inputs {
    One(String),
    Many(Vec<String>),
}

impl Inputs {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// Reads and parses a job file.
///
/// # Errors
/// [`JobError::Read`] if the file cannot be read, [`JobError::At`] for
/// anything wrong in it.
pub fn read_job(path: &Path) -> Result<JobSpec, JobError> {
    let text = std::fs::read_to_string(path).map_err(|source| JobError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse_job(path, &text)
}

/// Parses job file `text`, read from `path` (used in messages and to resolve
/// relative paths).
///
/// # Errors
/// [`JobError::At`] naming the line, node and field of the first problem.
pub fn parse_job(path: &Path, text: &str) -> Result<JobSpec, JobError> {
    let at = |line: usize, message: String| JobError::At {
        file: path.to_path_buf(),
        line,
        message,
    };
    let raw: RawJob = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        at(line, e.message().trim().to_string())
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = raw.job.name.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "job".into())
    });
    // Keys of the [job] table are looked up from its header.
    let job_header = text.find("[job]").map_or(0..0, |i| i..i + 5);
    let job_line = key_line(text, &job_header, "parallelism");
    let parallelism = raw.job.parallelism.unwrap_or(1);
    if parallelism == 0 {
        return Err(at(job_line, "[job] parallelism must be at least 1".into()));
    }

    let max_parallelism = raw
        .job
        .max_parallelism
        .unwrap_or(weir_engine::key_group::DEFAULT_MAX_PARALLELISM);
    if max_parallelism == 0 {
        return Err(at(
            key_line(text, &job_header, "max_parallelism"),
            "[job] max_parallelism must be at least 1".into(),
        ));
    }
    let state_backend = match raw.job.state_backend.as_deref() {
        None | Some("heap") => weir_state::Backend::Heap,
        Some("rocksdb") if !weir_state::ROCKSDB_AVAILABLE => {
            return Err(at(
                key_line(text, &job_header, "state_backend"),
                weir_state::ROCKSDB_UNAVAILABLE.to_string(),
            ));
        }
        Some("rocksdb") => weir_state::Backend::RocksDb {
            dir: std::env::temp_dir().join("weir-rocksdb"),
        },
        Some(other) => {
            return Err(at(
                key_line(text, &job_header, "state_backend"),
                format!("[job] state_backend `{other}` is unknown; expected `heap` or `rocksdb`"),
            ));
        }
    };
    let mut seen: Vec<(String, Range<usize>)> = Vec::new();
    let mut check_name = |name: &str, header: &Range<usize>| {
        if let Some((_, first)) = seen.iter().find(|(n, _)| n == name) {
            return Err(at(
                line_of(text, header.start),
                format!(
                    "node name `{name}` is used twice (first at line {}); names must be unique across sources, operators and sinks",
                    line_of(text, first.start)
                ),
            ));
        }
        seen.push((name.to_string(), header.clone()));
        Ok(())
    };

    let ctx = |role: &'static str, name: &str, header: &Range<usize>| NodeContext {
        path,
        text,
        role,
        name: name.to_string(),
        header: header.clone(),
    };

    let mut sources = Vec::new();
    for (name, table) in raw.source {
        let header = table.span();
        check_name(&name, &header)?;
        let c = ctx("source", &name, &header);
        let (spec, watermark) = source::parse(&c, table.into_inner(), dir)?;
        sources.push(Node {
            name,
            spec,
            key_by: false,
            watermark,
            header,
        });
    }

    let mut operators = Vec::new();
    for (name, table) in raw.operator {
        let header = table.span();
        check_name(&name, &header)?;
        let c = ctx("operator", &name, &header);
        let (spec, key_by) = operator::parse(&c, table.into_inner())?;
        operators.push(Node {
            name,
            spec,
            key_by,
            watermark: WatermarkSpec::default(),
            header,
        });
    }

    let mut sinks = Vec::new();
    for (name, table) in raw.sink {
        let header = table.span();
        check_name(&name, &header)?;
        let c = ctx("sink", &name, &header);
        let (spec, key_by) = sink::parse(&c, table.into_inner(), dir)?;
        sinks.push(Node {
            name,
            spec,
            key_by,
            watermark: WatermarkSpec::default(),
            header,
        });
    }

    if sources.is_empty() {
        return Err(at(
            1,
            "the job has no source; add a [source.NAME] table".into(),
        ));
    }
    if sinks.is_empty() {
        return Err(at(1, "the job has no sink; add a [sink.NAME] table".into()));
    }
    Ok(JobSpec {
        file: path.to_path_buf(),
        text: text.to_string(),
        name,
        parallelism,
        channel_capacity: raw.job.channel_capacity.unwrap_or(16).max(1),
        max_parallelism,
        state_backend,
        sources,
        operators,
        sinks,
    })
}

impl JobSpec {
    /// An error about `field` of the node called `name`, at the line that
    /// sets it (for checks made outside this crate, such as a tenant's
    /// quotas).
    pub fn error_at(&self, name: &str, field: &str, message: String) -> JobError {
        let found = self
            .sources
            .iter()
            .find(|n| n.name == name)
            .map(|n| ("source", &n.header))
            .or_else(|| {
                self.operators
                    .iter()
                    .find(|n| n.name == name)
                    .map(|n| ("operator", &n.header))
            })
            .or_else(|| {
                self.sinks
                    .iter()
                    .find(|n| n.name == name)
                    .map(|n| ("sink", &n.header))
            });
        let (role, header) = found.unwrap_or(("node", &(0..0)));
        NodeContext {
            path: &self.file,
            text: &self.text,
            role,
            name: name.to_string(),
            header: header.clone(),
        }
        .error(field, message)
    }

    /// The local files the job reads or writes, by node name: file sources,
    /// file and upsert sinks (for a server to keep them in a tenant's area).
    pub fn local_files_mut(&mut self) -> Vec<(String, &mut PathBuf)> {
        let mut files = Vec::new();
        for n in &mut self.sources {
            if let SourceSpec::File(o) = &mut n.spec {
                files.push((n.name.clone(), &mut o.path));
            }
        }
        for n in &mut self.sinks {
            match &mut n.spec.kind {
                SinkKind::File(o) => files.push((n.name.clone(), &mut o.path)),
                SinkKind::Upsert(o) => files.push((n.name.clone(), &mut o.path)),
                _ => {}
            }
        }
        files
    }
}

/// Where a node is, for its error messages.
pub(crate) struct NodeContext<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
    pub(crate) role: &'static str,
    pub(crate) name: String,
    pub(crate) header: Range<usize>,
}

impl NodeContext<'_> {
    /// An error about `field` of this node, at the line that sets it.
    pub(crate) fn error(&self, field: &str, message: String) -> JobError {
        JobError::At {
            file: self.path.to_path_buf(),
            line: key_line(self.text, &self.header, field),
            message: format!("{} `{}`: {message}", self.role, self.name),
        }
    }

    fn take_kind(&self, table: &mut toml::Table, kinds: &[&str]) -> Result<String, JobError> {
        let expected = kinds
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        match table.remove("kind") {
            None => Err(self.error("kind", format!("missing field `kind` (one of {expected})"))),
            Some(toml::Value::String(k)) if kinds.contains(&k.as_str()) => Ok(k),
            Some(other) => Err(self.error(
                "kind",
                format!(
                    "unknown {} kind {other}; expected one of {expected}",
                    self.role
                ),
            )),
        }
    }

    fn partition(&self, p: Option<&str>) -> Result<bool, JobError> {
        match p {
            None | Some("auto") => Ok(false),
            Some("key") => Ok(true),
            Some(other) => Err(self.error(
                "partition",
                format!("unknown partition `{other}`; expected `key` (by record key) or `auto`"),
            )),
        }
    }

    fn take_watermark(&self, table: &mut toml::Table) -> Result<WatermarkSpec, JobError> {
        let Some(value) = table.remove("watermark") else {
            return Ok(WatermarkSpec::default());
        };
        let mut t = toml::Table::new();
        t.insert("watermark".into(), value);
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wrap {
            watermark: RawWatermark,
        }
        let raw = self.options::<Wrap>(t)?.watermark;
        let ms = Duration::from_millis;
        let strategy = match (raw.strategy.as_str(), raw.max_out_of_orderness_ms) {
            ("none", None) => WatermarkStrategy::None,
            ("monotonous", None) => WatermarkStrategy::Monotonous,
            ("bounded-out-of-orderness", Some(b)) => {
                WatermarkStrategy::BoundedOutOfOrderness(ms(b))
            }
            ("bounded-out-of-orderness", None) => {
                return Err(self.error(
                    "watermark",
                    "`bounded-out-of-orderness` needs `max_out_of_orderness_ms`".into(),
                ));
            }
            ("none" | "monotonous", Some(_)) => {
                return Err(self.error(
                    "max_out_of_orderness_ms",
                    format!(
                        "`max_out_of_orderness_ms` applies to `bounded-out-of-orderness`, not `{}`",
                        raw.strategy
                    ),
                ));
            }
            (other, _) => {
                return Err(self.error(
                    "strategy",
                    format!("unknown watermark strategy `{other}`; expected `none`, `monotonous` or `bounded-out-of-orderness`"),
                ));
            }
        };
        Ok(WatermarkSpec {
            strategy,
            idle_timeout: raw.idle_timeout_ms.map(ms),
        })
    }

    fn duration(&self, field: &str, text: &str) -> Result<Duration, JobError> {
        humantime::parse_duration(text).map_err(|e| {
            self.error(
                field,
                format!("`{field}` = \"{text}\" is not a duration ({e}); write e.g. \"10s\", \"1m\", \"500ms\""),
            )
        })
    }

    /// The `window`, `trigger`, `evictor` and `allowed_lateness` fields.
    fn check_parallelism(&self, p: Option<usize>) -> Result<(), JobError> {
        if p == Some(0) {
            return Err(self.error("parallelism", "parallelism must be at least 1".into()));
        }
        Ok(())
    }

    /// Deserializes the rest of the table into `T`, refusing unknown fields.
    /// The table is re-serialized so that toml reports which key is wrong;
    /// that key is then found in the original file.
    fn options<T: DeserializeOwned>(&self, table: toml::Table) -> Result<T, JobError> {
        let synth = toml::to_string(&table)
            .map_err(|e| self.error("", format!("cannot read table: {e}")))?;
        toml::from_str::<T>(&synth).map_err(|e| {
            let key = e.span().and_then(|s| key_at(&synth, s)).unwrap_or_default();
            let message = e.message().trim().to_string();
            let message = if key.is_empty() || message.contains(&format!("`{key}`")) {
                message
            } else {
                format!("field `{key}`: {message}")
            };
            self.error(&key, message)
        })
    }
}

/// Flattens a `config` table into the string pairs operators receive (see
/// `wit/types.wit`): nested tables become dotted names, arrays JSON text.
#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_job(Path::new("job.toml"), text)
            .unwrap_err()
            .to_string()
    }

    const GOOD: &str = r#"
[job]
name = "t"

[source.nums]
kind = "generator"
count = 10

[operator.keep]
input = "nums"
module = "bid-filter"
config = { min_price = 5, nested = { a = true }, list = [1, 2], s = "x" }
limits = { memory_mb = 32, cpu_deadline_ms = 50 }

[sink.out]
input = "keep"
kind = "stdout"
"#;

    #[test]
    fn parses_nodes_and_flattens_config() {
        let job = parse_job(Path::new("/jobs/job.toml"), GOOD).unwrap();
        assert_eq!(job.name, "t");
        assert_eq!(job.sources.len(), 1);
        let op = &job.operators[0].spec;
        assert_eq!(op.inputs, vec!["nums"]);
        assert_eq!(op.limits.memory_bytes, 32 << 20);
        assert_eq!(op.limits.call_deadline, Duration::from_millis(50));
        assert_eq!(
            op.config,
            vec![
                ("min_price".into(), "5".into()),
                ("list".into(), "[1,2]".into()),
                ("s".into(), "x".into()),
                ("nested.a".into(), "true".into()),
            ]
        );
    }

    #[test]
    fn unknown_fields_name_file_line_and_field() {
        let e = err(&GOOD.replace("count = 10", "count = 10\ncuont = 3"));
        assert!(e.starts_with("job.toml:8: source `nums`"), "{e}");
        assert!(e.contains("unknown field `cuont`"), "{e}");

        let e = err(&GOOD.replace(
            "module = \"bid-filter\"",
            "module = \"bid-filter\"\nparalelism = 2",
        ));
        assert!(e.starts_with("job.toml:12: operator `keep`"), "{e}");
        assert!(e.contains("`paralelism`"), "{e}");

        let e = err(&GOOD.replace("[job]", "[jobb]"));
        assert!(e.starts_with("job.toml:2:"), "{e}");
        assert!(e.contains("unknown field `jobb`"), "{e}");

        let e = err(&GOOD.replace("memory_mb = 32", "memory_mib = 32"));
        assert!(e.starts_with("job.toml:13: operator `keep`"), "{e}");
        assert!(e.contains("memory_mib"), "{e}");
    }

    #[test]
    fn watermarks_partitioning_and_max_parallelism() {
        let text = GOOD
            .replace("count = 10", "count = 10\nwatermark = { strategy = \"bounded-out-of-orderness\", max_out_of_orderness_ms = 10000, idle_timeout_ms = 500 }")
            .replace("module = \"bid-filter\"", "module = \"bid-filter\"\npartition = \"key\"")
            .replace("name = \"t\"", "name = \"t\"\nmax_parallelism = 32");
        let job = parse_job(Path::new("job.toml"), &text).unwrap();
        assert_eq!(job.max_parallelism, 32);
        let wm = job.sources[0].watermark;
        assert_eq!(
            wm.strategy,
            WatermarkStrategy::BoundedOutOfOrderness(Duration::from_secs(10))
        );
        assert_eq!(wm.idle_timeout, Some(Duration::from_millis(500)));
        assert!(job.operators[0].key_by);
        assert!(!job.sinks[0].key_by);

        let e = err(&GOOD.replace(
            "count = 10",
            "count = 10\nwatermark = { strategy = \"bounded-out-of-orderness\" }",
        ));
        assert!(e.starts_with("job.toml:8: source `nums`"), "{e}");
        assert!(e.contains("needs `max_out_of_orderness_ms`"), "{e}");
        let e = err(&GOOD.replace(
            "count = 10",
            "count = 10\nwatermark = { strategy = \"eventually\" }",
        ));
        assert!(e.contains("unknown watermark strategy `eventually`"), "{e}");
        let e = err(&GOOD.replace(
            "count = 10",
            "count = 10\nwatermark = { strategy = \"monotonous\", lateness = 3 }",
        ));
        assert!(e.contains("unknown field `lateness`"), "{e}");
        let e = err(&GOOD.replace(
            "module = \"bid-filter\"",
            "module = \"bid-filter\"\npartition = \"hash\"",
        ));
        assert!(
            e.starts_with("job.toml:12: operator `keep`: unknown partition `hash`"),
            "{e}"
        );
    }

    #[test]
    fn job_section_errors_point_into_the_job_table() {
        let text = format!(
            "# a comment\n# another\n{}",
            GOOD.replace("name = \"t\"", "name = \"t\"\nparallelism = 0")
        );
        let e = err(&text);
        assert!(
            e.starts_with("job.toml:6: [job] parallelism must be at least 1"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_and_kinds_are_located() {
        let e = err(&GOOD.replace("count = 10", "count = \"ten\""));
        assert!(e.starts_with("job.toml:7: source `nums`"), "{e}");
        let e = err(&GOOD.replace("kind = \"generator\"", "kind = \"kafkaa\""));
        assert!(
            e.starts_with("job.toml:6: source `nums`: unknown source kind"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "kind = \"stdout\"",
            "kind = \"stdout\"\nevery = 0\nparallelism = 0",
        ));
        assert!(
            e.contains("job.toml:19: sink `out`: parallelism must be at least 1"),
            "{e}"
        );
        let e = err(&GOOD.replace("[sink.out]", "[sink.keep]"));
        assert!(e.contains("node name `keep` is used twice"), "{e}");
        let e = err("[job]\nname = \"x\"\n[source.a]\nkind = \"generator\"\ncount = 1\n");
        assert!(e.contains("no sink"), "{e}");
        let e = err("[source.a\n");
        assert!(e.starts_with("job.toml:1:"), "{e}");
    }
}
