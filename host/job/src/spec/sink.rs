//! A `[sink.NAME]` table.

use super::*;

/// The sink a `[sink.NAME]` table describes, and whether its input is
/// partitioned by key.
pub(super) fn parse(
    c: &NodeContext<'_>,
    mut table: toml::Table,
    dir: &Path,
) -> Result<(SinkSpec, bool), JobError> {
    let kind = c.take_kind(
        &mut table,
        &["stdout", "file", "kafka", "upsert", "discard"],
    )?;
    let key_by = match table.remove("partition") {
        None => false,
        Some(toml::Value::String(p)) => c.partition(Some(&p))?,
        Some(other) => c.partition(Some(&other.to_string()))?,
    };
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
        "discard" => SinkKind::Discard(c.options(table)?),
        #[cfg(feature = "kafka")]
        "kafka" => SinkKind::Kafka(c.options(table)?),
        #[cfg(not(feature = "kafka"))]
        "kafka" => return Err(c.error("kind", KAFKA_UNAVAILABLE.into())),
        "upsert" => {
            let mut o: weir_connectors::upsert::UpsertSinkOptions = c.options(table)?;
            resolve(dir, &mut o.path);
            SinkKind::Upsert(o)
        }
        _ => {
            let mut o: FileSinkOptions = c.options(table)?;
            resolve(dir, &mut o.path);
            SinkKind::File(o)
        }
    };
    c.check_parallelism(kind.parallelism())?;
    Ok((SinkSpec { inputs, kind }, key_by))
}
