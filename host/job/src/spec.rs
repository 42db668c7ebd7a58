//! Reading a job file into typed node specs.

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
use weir_sandbox::{InstanceLimits, OperatorKind};

use crate::error::JobError;
use crate::locate::{key_at, key_line, line_of};

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
    pub(crate) header: Range<usize>,
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
}

impl SourceSpec {
    /// Parallelism set in the table, if any.
    pub fn parallelism(&self) -> Option<usize> {
        match self {
            Self::Nexmark(o) => o.parallelism,
            Self::Generator(o) => o.parallelism,
            Self::File(o) => o.parallelism,
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
}

impl SinkKind {
    /// Parallelism set in the table, if any.
    pub fn parallelism(&self) -> Option<usize> {
        match self {
            Self::Stdout(o) => o.parallelism,
            Self::File(o) => o.parallelism,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    input: Inputs,
    module: String,
    kind: Option<String>,
    #[serde(default)]
    config: toml::Table,
    parallelism: Option<usize>,
    #[serde(default = "yes")]
    chain: bool,
    #[serde(default)]
    limits: RawLimits,
}

fn yes() -> bool {
    true
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mb: Option<u64>,
    cpu_deadline_ms: Option<u64>,
    init_deadline_ms: Option<u64>,
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
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    };
    let name = raw.job.name.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "job".into())
    });
    let job_line = key_line(text, &(0..0), "parallelism");
    let parallelism = raw.job.parallelism.unwrap_or(1);
    if parallelism == 0 {
        return Err(at(job_line, "[job] parallelism must be at least 1".into()));
    }

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
        let mut table = table.into_inner();
        let kind = c.take_kind(&mut table, &["nexmark", "generator", "file"])?;
        let spec = match kind.as_str() {
            "nexmark" => SourceSpec::Nexmark(c.options(table)?),
            "generator" => SourceSpec::Generator(c.options(table)?),
            _ => {
                let mut o: FileSourceOptions = c.options(table)?;
                resolve(&mut o.path);
                SourceSpec::File(o)
            }
        };
        c.check_parallelism(spec.parallelism())?;
        sources.push(Node { name, spec, header });
    }

    let mut operators = Vec::new();
    for (name, table) in raw.operator {
        let header = table.span();
        check_name(&name, &header)?;
        let c = ctx("operator", &name, &header);
        let raw: RawOperator = c.options(table.into_inner())?;
        let kind = match raw.kind.as_deref() {
            None => None,
            Some(k) => Some(
                OperatorKind::ALL
                    .into_iter()
                    .find(|o| o.name() == k)
                    .ok_or_else(|| {
                        c.error(
                            "kind",
                            format!(
                                "unknown operator kind `{k}`; expected filter, map or flat-map"
                            ),
                        )
                    })?,
            ),
        };
        c.check_parallelism(raw.parallelism)?;
        let defaults = InstanceLimits::default();
        let limits = InstanceLimits {
            memory_bytes: raw.limits.memory_mb.map_or(defaults.memory_bytes, |m| {
                (m as usize).saturating_mul(1 << 20)
            }),
            call_deadline: raw
                .limits
                .cpu_deadline_ms
                .map_or(defaults.call_deadline, Duration::from_millis),
            init_deadline: raw
                .limits
                .init_deadline_ms
                .map_or(defaults.init_deadline, Duration::from_millis),
        };
        if limits.memory_bytes == 0
            || limits.call_deadline.is_zero()
            || limits.init_deadline.is_zero()
        {
            return Err(c.error("limits", "limits must be positive".into()));
        }
        let mut config = Vec::new();
        flatten_config("", &raw.config, &mut config);
        operators.push(Node {
            name,
            spec: OperatorSpec {
                inputs: raw.input.into_vec(),
                module: raw.module,
                kind,
                config,
                parallelism: raw.parallelism,
                chain: raw.chain,
                limits,
            },
            header,
        });
    }

    let mut sinks = Vec::new();
    for (name, table) in raw.sink {
        let header = table.span();
        check_name(&name, &header)?;
        let c = ctx("sink", &name, &header);
        let mut table = table.into_inner();
        let kind = c.take_kind(&mut table, &["stdout", "file"])?;
        let inputs = match table.remove("input") {
            None => {
                return Err(c.error(
                    "input",
                    "missing field `input` (the node it reads from)".into(),
                ));
            }
            Some(v) => Inputs::deserialize(v)
                .map_err(|_| {
                    c.error(
                        "input",
                        "`input` must be a node name or a list of names".into(),
                    )
                })?
                .into_vec(),
        };
        let kind = match kind.as_str() {
            "stdout" => SinkKind::Stdout(c.options(table)?),
            _ => {
                let mut o: FileSinkOptions = c.options(table)?;
                resolve(&mut o.path);
                SinkKind::File(o)
            }
        };
        c.check_parallelism(kind.parallelism())?;
        sinks.push(Node {
            name,
            spec: SinkSpec { inputs, kind },
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
        sources,
        operators,
        sinks,
    })
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
fn flatten_config(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten_config(&key, t, out),
            toml::Value::String(s) => out.push((key, s.clone())),
            toml::Value::Array(_) => out.push((key, serde_json::to_string(v).unwrap_or_default())),
            other => out.push((key, other.to_string())),
        }
    }
}

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
