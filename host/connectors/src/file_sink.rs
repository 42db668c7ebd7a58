//! A JSON Lines file as a sink.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Deserialize;
use weir_engine::{BoxError, Sink, SinkFactory, SubtaskInfo};
use weir_record::RecordBatch;
use weir_record::json::{LineFormat, encode_line};

/// Options of `kind = "file"` (sink).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkOptions {
    /// The file, created or truncated; relative paths are relative to the job
    /// file. Parent directories are created.
    pub path: PathBuf,
    /// Line format.
    #[serde(default)]
    pub format: LineFormat,
    /// Parallel subtasks: a file is written by one subtask.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

/// Creates the file on the (single) subtask.
pub struct FileSinkFactory {
    options: FileSinkOptions,
}

impl FileSinkFactory {
    /// A factory for `options`, whose path must already be resolved.
    pub fn new(options: FileSinkOptions) -> Self {
        Self { options }
    }
}

impl SinkFactory for FileSinkFactory {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Sink>, BoxError> {
        if info.parallelism != 1 {
            return Err("a file sink is written by one subtask; set parallelism = 1".into());
        }
        let path = &self.options.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        }
        let file =
            File::create(path).map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
        Ok(Box::new(FileSink {
            writer: BufWriter::with_capacity(1 << 16, file),
            format: self.options.format,
            path: path.clone(),
            buf: Vec::new(),
        }))
    }
}

struct FileSink {
    writer: BufWriter<File>,
    format: LineFormat,
    path: PathBuf,
    buf: Vec<u8>,
}

impl Sink for FileSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), BoxError> {
        self.buf.clear();
        for r in batch.records() {
            encode_line(&r, self.format, &mut self.buf);
        }
        self.writer
            .write_all(&self.buf)
            .map_err(|e| format!("cannot write `{}`: {e}", self.path.display()).into())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.writer
            .flush()
            .map_err(|e| format!("cannot write `{}`: {e}", self.path.display()).into())
    }
}
