//! A JSON Lines file as a sink.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use weir_record::codec::Reader;

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
        // Restored from a checkpoint: cut the file back to what the
        // checkpoint covered (later lines will be written again), so the
        // file holds every record exactly once.
        let restored = info.restored_state()?.filter(|s| !s.operator.is_empty());
        let (file, written) = match restored {
            Some(s) => {
                let len = Reader::new("file sink position", &s.operator).u64("length")?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
                f.set_len(len)
                    .map_err(|e| format!("cannot truncate `{}`: {e}", path.display()))?;
                use std::io::Seek;
                f.seek(std::io::SeekFrom::End(0))
                    .map_err(|e| format!("cannot seek in `{}`: {e}", path.display()))?;
                (f, len)
            }
            None => (
                File::create(path)
                    .map_err(|e| format!("cannot create `{}`: {e}", path.display()))?,
                0,
            ),
        };
        Ok(Box::new(FileSink {
            writer: BufWriter::with_capacity(1 << 16, file),
            format: self.options.format,
            path: path.clone(),
            buf: Vec::new(),
            written,
        }))
    }
}

struct FileSink {
    writer: BufWriter<File>,
    format: LineFormat,
    path: PathBuf,
    buf: Vec<u8>,
    /// Bytes written so far (after a restore: from the checkpointed length).
    written: u64,
}

impl Sink for FileSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), BoxError> {
        self.buf.clear();
        for r in batch.records() {
            encode_line(&r, self.format, &mut self.buf);
        }
        self.written += self.buf.len() as u64;
        self.writer
            .write_all(&self.buf)
            .map_err(|e| format!("cannot write `{}`: {e}", self.path.display()).into())
    }

    fn snapshot(&mut self, _checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        let fail = |e: std::io::Error| format!("cannot write `{}`: {e}", self.path.display());
        self.writer.flush().map_err(fail)?;
        self.writer.get_ref().sync_data().map_err(fail)?;
        Ok(self.written.to_le_bytes().to_vec())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.writer
            .flush()
            .map_err(|e| format!("cannot write `{}`: {e}", self.path.display()).into())
    }
}
