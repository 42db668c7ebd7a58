//! A `[source.NAME]` table.

use super::*;

/// The source a `[source.NAME]` table describes, and its watermarks.
pub(super) fn parse(
    c: &NodeContext<'_>,
    mut table: toml::Table,
    dir: &Path,
) -> Result<(SourceSpec, WatermarkSpec), JobError> {
    let kind = c.take_kind(&mut table, &["nexmark", "generator", "file", "kafka"])?;
    let watermark = c.take_watermark(&mut table)?;
    let spec = match kind.as_str() {
        "nexmark" => SourceSpec::Nexmark(c.options(table)?),
        "generator" => SourceSpec::Generator(c.options(table)?),
        #[cfg(feature = "kafka")]
        "kafka" => SourceSpec::Kafka(c.options(table)?),
        #[cfg(not(feature = "kafka"))]
        "kafka" => return Err(c.error("kind", KAFKA_UNAVAILABLE.into())),
        _ => {
            let mut o: FileSourceOptions = c.options(table)?;
            resolve(dir, &mut o.path);
            SourceSpec::File(o)
        }
    };
    c.check_parallelism(spec.parallelism())?;
    Ok((spec, watermark))
}
