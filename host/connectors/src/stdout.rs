//! Standard output as a sink.

use std::io::Write;

use serde::Deserialize;
use weir_engine::{BoxError, Sink, SinkFactory, SubtaskInfo};
use weir_record::RecordBatch;
use weir_record::json::{LineFormat, encode_line};

/// Options of `kind = "stdout"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutOptions {
    /// Line format.
    #[serde(default)]
    pub format: LineFormat,
    /// Print only every n-th record (1 = all): keeps a fast job's console
    /// readable. Counts are per subtask.
    #[serde(default = "one")]
    pub every: u64,
    /// Parallel subtasks (lines of different subtasks interleave by batch).
    #[serde(default)]
    pub parallelism: Option<usize>,
}

fn one() -> u64 {
    1
}

/// Writes to the process's stdout.
pub struct StdoutSinkFactory {
    options: StdoutOptions,
}

impl StdoutSinkFactory {
    /// A factory for `options`.
    pub fn new(options: StdoutOptions) -> Self {
        Self { options }
    }
}

impl SinkFactory for StdoutSinkFactory {
    fn create(&self, _info: &SubtaskInfo) -> Result<Box<dyn Sink>, BoxError> {
        if self.options.every == 0 {
            return Err("`every` must be at least 1".into());
        }
        Ok(Box::new(StdoutSink {
            format: self.options.format,
            every: self.options.every,
            seen: 0,
            buf: Vec::new(),
        }))
    }
}

struct StdoutSink {
    format: LineFormat,
    every: u64,
    seen: u64,
    buf: Vec<u8>,
}

impl Sink for StdoutSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), BoxError> {
        self.buf.clear();
        for r in batch.records() {
            if self.seen.is_multiple_of(self.every) {
                encode_line(&r, self.format, &mut self.buf);
            }
            self.seen += 1;
        }
        // One locked write per batch keeps lines of parallel subtasks whole.
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        std::io::stdout()
            .flush()
            .map_err(|e| format!("cannot write to stdout: {e}").into())
    }
}
