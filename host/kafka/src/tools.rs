//! What `weir kafka` does: create a topic, write a JSON Lines file into a
//! topic, read a topic out — enough to feed a job and look at its results
//! without other tools.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use weir_record::json::{LineFormat, decode_line};

use crate::ClusterError;

/// Why a `weir kafka` tool failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The cluster refused or could not be reached.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The cluster would not create the topic.
    #[error("cannot create topic `{topic}` at `{bootstrap}`: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        bootstrap: String,
        /// The cluster's error.
        code: String,
    },
    /// The input file cannot be opened or read.
    #[error("cannot {op} `{}`: {source}", path.display())]
    File {
        /// `open` or `read`.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line of the input file is not a record.
    #[error("{}:{line}: {source}", path.display())]
    Line {
        /// The file.
        path: std::path::PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        source: weir_record::json::LineError,
    },
    /// The output cannot be written.
    #[error("cannot write: {0}")]
    Write(std::io::Error),
}

/// Creates `topic` with `partitions` partitions (replication factor
/// `replication`).
///
/// # Errors
/// The cluster's refusal or unreachability, named.
pub fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
    properties: &BTreeMap<String, String>,
) -> Result<(), ToolError> {
    let admin: AdminClient<DefaultClientContext> = crate::config(bootstrap, properties)
        .create()
        .map_err(|e| crate::describe(bootstrap, &e))?;
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let opts = AdminOptions::new().request_timeout(Some(crate::METADATA_TIMEOUT));
    let results = // rdkafka's admin futures are completed by its own background thread.
    futures::executor::block_on(admin.create_topics([&t], &opts))
        .map_err(|e| crate::describe(bootstrap, &e))?;
    for r in results {
        r.map_err(|(topic, code)| ToolError::CreateTopic {
            topic,
            bootstrap: bootstrap.to_string(),
            code: code.to_string(),
        })?;
    }
    Ok(())
}

/// Writes each line of a JSON Lines file to `topic` as a record, as the
/// `file` source reads it (`value` lines with optional key and timestamp
/// fields, or `envelope` lines); returns the number written.
///
/// # Errors
/// A malformed line (with file and line number) or a failed delivery.
pub fn produce_file(
    bootstrap: &str,
    topic: &str,
    file: &Path,
    format: LineFormat,
    key_field: Option<&str>,
    timestamp_field: Option<&str>,
    properties: &BTreeMap<String, String>,
) -> Result<u64, ToolError> {
    let producer: BaseProducer = crate::config(bootstrap, properties)
        .set("enable.idempotence", "true")
        .create()
        .map_err(|e| crate::describe(bootstrap, &e))?;
    crate::partitions(producer.client(), bootstrap, properties, topic)?;
    let io = |op, source| ToolError::File {
        op,
        path: file.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(file).map_err(|e| io("open", e))?;
    let mut n = 0;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| io("read", e))?;
        if line.trim().is_empty() {
            continue;
        }
        let r = decode_line(&line, format, key_field, timestamp_field).map_err(|source| {
            ToolError::Line {
                path: file.to_path_buf(),
                line: i + 1,
                source,
            }
        })?;
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: &String::from_utf8_lossy(k),
                value: Some(v),
            });
        }
        let mut record = BaseRecord::to(topic).payload(&r.value).headers(headers);
        if !r.key.is_empty() {
            record = record.key(&r.key);
        }
        if let Some(ts) = r.timestamp {
            record = record.timestamp(ts);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((e, _)) => return Err(crate::describe(bootstrap, &e).into()),
            }
        }
        n += 1;
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| crate::describe(bootstrap, &e))?;
    Ok(n)
}

/// Reads `topic` from the beginning of every partition and writes each
/// record to `out` as a JSON envelope line (`key`, `value`, `timestamp`,
/// `partition`, `offset`), stopping once nothing new came for `idle`.
/// Only committed records are read when `read_committed`.
///
/// # Errors
/// The cluster's unreachability or a missing topic, named.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    read_committed: bool,
    idle: Duration,
    properties: &BTreeMap<String, String>,
    out: &mut dyn Write,
) -> Result<u64, ToolError> {
    let consumer: BaseConsumer = crate::config(bootstrap, properties)
        .set("group.id", "weir-kafka-consume")
        .set("enable.auto.commit", "false")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()
        .map_err(|e| crate::describe(bootstrap, &e))?;
    let partitions = crate::partitions(consumer.client(), bootstrap, properties, topic)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| crate::describe(bootstrap, &e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| crate::describe(bootstrap, &e))?;
    let (mut n, mut last) = (0, Instant::now());
    while last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => return Err(crate::describe(bootstrap, &e).into()),
            Some(Ok(m)) => {
                last = Instant::now();
                let text = |b: Option<&[u8]>| {
                    let b = b.unwrap_or_default();
                    serde_json::from_slice::<serde_json::Value>(b).unwrap_or_else(|_| {
                        serde_json::Value::String(String::from_utf8_lossy(b).into())
                    })
                };
                let mut headers = serde_json::Map::new();
                if let Some(h) = m.headers() {
                    for h in h.iter() {
                        headers.insert(
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into(),
                        );
                    }
                }
                let line = serde_json::json!({
                    "key": text(m.key()),
                    "value": text(m.payload()),
                    "timestamp": m.timestamp().to_millis(),
                    "headers": headers,
                    "partition": m.partition(),
                    "offset": m.offset(),
                });
                writeln!(out, "{line}").map_err(ToolError::Write)?;
                n += 1;
            }
        }
    }
    Ok(n)
}
