//! A JSON Lines file as a source.
//!
//! Each non-empty line is one record (see [`weir_record::json`] for the
//! `value` and `envelope` formats). A malformed line fails the job with the
//! file name and line number; nothing after it is read.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use weir_record::codec::{Reader, Writer};

use serde::Deserialize;
use weir_engine::{BoxError, Source, SourceFactory, SubtaskInfo};
use weir_record::json::{LineFormat, decode_line};
use weir_record::{BatchBuilder, DEFAULT_BATCH_ROWS, RecordBatch};

/// Options of `kind = "file"` (source).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceOptions {
    /// The file; relative paths are relative to the job file.
    pub path: PathBuf,
    /// Line format.
    #[serde(default)]
    pub format: LineFormat,
    /// For `value` lines: the top-level field holding the key.
    #[serde(default)]
    pub key_field: Option<String>,
    /// For `value` lines: the top-level field holding the event time (ms).
    /// Records without one get the time they were read (ingestion time).
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// Records per batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Parallel subtasks: a file is read by one subtask.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

fn default_batch() -> usize {
    DEFAULT_BATCH_ROWS
}

/// Opens the file on the (single) subtask.
pub struct FileSourceFactory {
    options: FileSourceOptions,
}

impl FileSourceFactory {
    /// A factory for `options`, whose path must already be resolved.
    pub fn new(options: FileSourceOptions) -> Self {
        Self { options }
    }
}

impl SourceFactory for FileSourceFactory {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Source>, BoxError> {
        if info.parallelism != 1 {
            return Err("a file source is read by one subtask; set parallelism = 1".into());
        }
        let path = &self.options.path;
        let mut file =
            File::open(path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        // Restored: continue after the last line read before the checkpoint.
        let (mut offset, mut line_no) = (0u64, 0u64);
        if let Some(s) = info.restored_state()?
            && !s.operator.is_empty()
        {
            let mut r = Reader::new("file source position", &s.operator);
            offset = r.u64("offset")?;
            line_no = r.u64("line")?;
            use std::io::Seek;
            file.seek(std::io::SeekFrom::Start(offset))
                .map_err(|e| format!("cannot seek in `{}`: {e}", path.display()))?;
        }
        Ok(Box::new(FileSource {
            options: self.options.clone(),
            reader: BufReader::with_capacity(1 << 16, file),
            line_no,
            offset,
            line: String::new(),
        }))
    }
}

struct FileSource {
    options: FileSourceOptions,
    reader: BufReader<File>,
    line_no: u64,
    /// Bytes consumed so far.
    offset: u64,
    line: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Source for FileSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, BoxError> {
        let o = &self.options;
        let mut b = BatchBuilder::with_capacity(o.batch_size, o.batch_size * 128);
        let now = now_ms();
        while b.len() < o.batch_size.max(1) {
            self.line.clear();
            let n = self.reader.read_line(&mut self.line).map_err(|e| {
                format!(
                    "`{}` line {}: cannot read: {e}",
                    o.path.display(),
                    self.line_no + 1
                )
            })?;
            if n == 0 {
                break;
            }
            self.line_no += 1;
            self.offset += n as u64;
            let line = self.line.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            let rec = decode_line(
                line,
                o.format,
                o.key_field.as_deref(),
                o.timestamp_field.as_deref(),
            )
            .map_err(|e| format!("`{}` line {}: {e}", o.path.display(), self.line_no))?;
            b.push_with_headers(
                &rec.key,
                &rec.value,
                rec.timestamp.unwrap_or(now),
                rec.headers
                    .iter()
                    .map(|(n, v)| (n.as_slice(), v.as_slice())),
            );
        }
        Ok((!b.is_empty()).then(|| b.finish()))
    }

    fn position(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(16);
        p.put_u64(self.offset);
        p.put_u64(self.line_no);
        p
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn reads_lines_and_names_the_bad_one() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, r#"{{"u":"a","t":5}}"#).unwrap();
        writeln!(f).unwrap();
        writeln!(f, r#"{{"u":"b","t":6}}"#).unwrap();
        writeln!(f, r#"{{"u":"c","t":"late"}}"#).unwrap();
        let opts = FileSourceOptions {
            path: f.path().to_path_buf(),
            format: LineFormat::Value,
            key_field: Some("u".into()),
            timestamp_field: Some("t".into()),
            batch_size: 2,
            parallelism: None,
        };
        let info = SubtaskInfo::new("j", "n", 0, 1);
        let mut s = FileSourceFactory::new(opts).create(&info).unwrap();
        let b = s.next_batch().unwrap().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b.record(1).key(), b"b");
        assert_eq!(b.timestamps, vec![5, 6]);
        let err = s.next_batch().unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("not an integer"), "{err}");
    }
}
