//! An idempotent upsert sink: a table keyed by (record key, window), kept in
//! a JSON Lines file — "effectively exactly-once" for targets without
//! transactions.
//!
//! Each record replaces the row of its key and window (the `window.start` and
//! `window.end` headers a window operator sets; by key alone for records
//! without them, a changelog's latest value per key). After a failure the job
//! restarts from its checkpoint and computes the same results again, which
//! overwrite the rows they wrote before: the table ends as if nothing had
//! failed, without transactions. The file is rewritten atomically (a
//! temporary file, synced, renamed) at every checkpoint and at the end, so a
//! crash never leaves half a table. The price: the whole table is written
//! each time, and it is held in memory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde::Deserialize;
use weir_engine::{BoxError, Sink, SinkFactory, SubtaskInfo};
use weir_record::RecordBatch;
use weir_record::json::{LineFormat, decode_line, encode_line};

/// Options of `kind = "upsert"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertSinkOptions {
    /// The table file (JSON Lines envelopes, one row per key and window);
    /// relative paths are relative to the job file.
    pub path: PathBuf,
    /// Parallel subtasks: the table is written by one subtask.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

/// Opens the table on the (single) subtask.
pub struct UpsertSinkFactory {
    options: UpsertSinkOptions,
}

impl UpsertSinkFactory {
    /// A factory for `options`, whose path must already be resolved.
    pub fn new(options: UpsertSinkOptions) -> Self {
        Self { options }
    }
}

/// A row's identity: the record key and its window headers.
type RowKey = (Vec<u8>, Vec<u8>, Vec<u8>);

fn row_key<'a>(key: &[u8], headers: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> RowKey {
    let (mut start, mut end) = (Vec::new(), Vec::new());
    for (k, v) in headers {
        match k {
            b"window.start" => start = v.to_vec(),
            b"window.end" => end = v.to_vec(),
            _ => {}
        }
    }
    (key.to_vec(), start, end)
}

impl SinkFactory for UpsertSinkFactory {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Sink>, BoxError> {
        if info.parallelism != 1 {
            return Err(
                "an upsert sink's table is written by one subtask; set parallelism = 1".into(),
            );
        }
        let path = self.options.path.clone();
        let mut rows = BTreeMap::new();
        // Restored: the table as last written (perhaps after the checkpoint;
        // the rows recomputed since will be overwritten with the same).
        if info.restored.is_some() && path.is_file() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let r = decode_line(line, LineFormat::Envelope, None, None)
                    .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
                let key = row_key(
                    &r.key,
                    r.headers.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
                );
                rows.insert(key, format!("{line}\n").into_bytes());
            }
        }
        Ok(Box::new(UpsertSink { path, rows }))
    }
}

struct UpsertSink {
    path: PathBuf,
    rows: BTreeMap<RowKey, Vec<u8>>,
}

impl UpsertSink {
    /// Rewrites the table atomically.
    fn write(&self) -> Result<(), BoxError> {
        let fail = |e: std::io::Error| format!("cannot write `{}`: {e}", self.path.display());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(fail)?);
        for line in self.rows.values() {
            f.write_all(line).map_err(fail)?;
        }
        let f = f.into_inner().map_err(|e| fail(e.into_error()))?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)?;
        Ok(())
    }
}

impl Sink for UpsertSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), BoxError> {
        for r in batch.records() {
            let mut line = Vec::new();
            encode_line(&r, LineFormat::Envelope, &mut line);
            self.rows.insert(row_key(r.key(), r.headers()), line);
        }
        Ok(())
    }

    fn snapshot(&mut self, _checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        self.write()?;
        Ok(Vec::new())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.write()
    }
}
