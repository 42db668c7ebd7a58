//! The Kafka source: a topic's partitions split across subtasks, offsets in
//! checkpoints.
//!
//! Partition `p` is read by subtask `p % parallelism`, assigned directly
//! (no consumer-group rebalancing: the job, not the group, owns the
//! partitions, as in Flink). Each subtask's checkpointed position is the
//! next offset of each partition it reads. On restore every old subtask's
//! offsets are gathered and each new subtask takes those of the partitions
//! it now owns, so the source rescales. Offsets are also committed to the
//! consumer group at each checkpoint, for monitoring only.
//!
//! Records map one to one: Kafka key, value, timestamp (create or append
//! time; the read time when the record has none) and headers. By default
//! only committed records of transactional producers are read
//! (`read_committed`).
//!
//! Watermarks are generated per partition and combined (the minimum over the
//! partitions that are not idle, see `SplitWatermarks` in the engine), so a
//! subtask reading one partition ahead of another does not make the other's
//! records late; with the job's `idle_timeout_ms`, a quiet partition stops
//! holding event time back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use weir_record::codec::{Reader, Truncated, Writer};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use weir_engine::{BoxError, Source, SourceFactory, SubtaskInfo};
use weir_record::{BatchBuilder, DEFAULT_BATCH_ROWS, RecordBatch};

/// Where a partition is first read from, when no checkpoint says.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StartFrom {
    /// The oldest record still in the partition.
    #[default]
    Earliest,
    /// Only records written after the job starts.
    Latest,
    /// The consumer group's committed offsets (earliest where none).
    Committed,
    /// The first record at or after `start_timestamp` (ms).
    Timestamp,
}

/// Options of `kind = "kafka"` (source).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceOptions {
    /// The cluster, `host:port[,host:port…]`; default `$WEIR_KAFKA`, else
    /// `127.0.0.1:9092`.
    #[serde(default = "crate::default_bootstrap")]
    pub bootstrap_servers: String,
    /// The topic to read.
    pub topic: String,
    /// The consumer group offsets are committed to (informational) and
    /// read from with `start = "committed"`; default `weir-<job>-<node>`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Where partitions start when the job does not restore.
    #[serde(default)]
    pub start: StartFrom,
    /// For `start = "timestamp"`: ms since the Unix epoch.
    #[serde(default)]
    pub start_timestamp: Option<i64>,
    /// Read only committed records of transactional producers.
    #[serde(default = "yes")]
    pub read_committed: bool,
    /// End the source once every partition is read up to the end it had
    /// when the subtask started (a bounded read, for backfills and tests).
    #[serde(default)]
    pub stop_at_end: bool,
    /// How often to look for new partitions (ms; 0: never).
    #[serde(default = "default_discovery")]
    pub partition_discovery_ms: u64,
    /// Further librdkafka settings (`security.protocol`, `sasl.*`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// A named credential of the server's configuration, whose settings a
    /// server adds to `properties` (see `weir_server::credentials`); only
    /// a server resolves it.
    #[serde(default)]
    pub credential: Option<String>,
    /// Records per batch at most.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Reads at most this many records per second per subtask (replaying
    /// history at a set pace; unset: as fast as possible).
    #[serde(default)]
    pub rate_limit: Option<u64>,
    /// Parallel subtasks; more than the partitions leaves some idle.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

fn yes() -> bool {
    true
}

fn default_discovery() -> u64 {
    10_000
}

fn default_batch() -> usize {
    DEFAULT_BATCH_ROWS
}

/// How long one poll waits for the first record of a batch.
const POLL: Duration = Duration::from_millis(100);

/// Builds one consumer per source subtask.
pub struct KafkaSourceFactory {
    options: KafkaSourceOptions,
}

impl KafkaSourceFactory {
    /// A factory for `options`.
    pub fn new(options: KafkaSourceOptions) -> Self {
        Self { options }
    }
}

/// Encodes a position: (partition, next offset) pairs.
fn encode_position(next: &BTreeMap<i32, i64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(next.len() * 12);
    for (p, o) in next {
        out.put_i32(*p);
        out.put_i64(*o);
    }
    out
}

fn decode_position(bytes: &[u8]) -> Result<Vec<(i32, i64)>, Truncated> {
    let mut r = Reader::new("Kafka source position", bytes);
    let mut out = Vec::with_capacity(bytes.len() / 12);
    while !r.is_empty() {
        out.push((r.i32("partition")?, r.i64("offset")?));
    }
    Ok(out)
}

impl SourceFactory for KafkaSourceFactory {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Source>, BoxError> {
        let o = &self.options;
        if o.start == StartFrom::Timestamp && o.start_timestamp.is_none() {
            return Err(
                "`start = \"timestamp\"` needs `start_timestamp` (ms since the epoch)".into(),
            );
        }
        let group = o
            .group_id
            .clone()
            .unwrap_or_else(|| format!("weir-{}-{}", info.job, info.node));
        let mut config = crate::config(&o.bootstrap_servers, &o.properties);
        config
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "isolation.level",
                if o.read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            );
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| crate::describe(&o.bootstrap_servers, &e))?;
        // Offsets restored from the checkpoint, from every old subtask.
        let mut restored = BTreeMap::new();
        for state in info.restored_union_state() {
            for (p, off) in decode_position(&state)? {
                restored.insert(p, off);
            }
        }
        let mut source = KafkaSource {
            consumer,
            options: o.clone(),
            subtask: info.subtask,
            parallelism: info.parallelism,
            next: BTreeMap::new(),
            end: BTreeMap::new(),
            restored,
            restoring: info.restored.is_some(),
            last_discovery: Instant::now(),
            started: Instant::now(),
            read: 0,
            assigned: Vec::new(),
            rows: Vec::new(),
        };
        source.discover()?;
        Ok(Box::new(source))
    }
}

struct KafkaSource {
    consumer: BaseConsumer,
    options: KafkaSourceOptions,
    subtask: usize,
    parallelism: usize,
    /// Next offset of each partition this subtask reads.
    next: BTreeMap<i32, i64>,
    /// With `stop_at_end`: where each partition ended when it was assigned.
    end: BTreeMap<i32, i64>,
    /// Offsets from the checkpoint restored from.
    restored: BTreeMap<i32, i64>,
    /// Whether the job restored from a checkpoint (partitions it did not
    /// know are new: read from their start).
    restoring: bool,
    last_discovery: Instant,
    /// For `rate_limit`: when reading started, and records read since.
    started: Instant,
    read: u64,
    /// The partitions being read (finished ones left out), and the
    /// partition of each row of the last batch: watermarks per partition.
    assigned: Vec<u32>,
    rows: Vec<u32>,
}

impl KafkaSource {
    fn err(&self, e: &rdkafka::error::KafkaError) -> String {
        crate::describe(&self.options.bootstrap_servers, e).to_string()
    }

    /// Assigns the partitions of this subtask not yet assigned (all at the
    /// start, new ones later), each at a concrete offset.
    fn discover(&mut self) -> Result<(), BoxError> {
        self.last_discovery = Instant::now();
        let o = &self.options;
        let all = crate::partitions(
            self.consumer.client(),
            &o.bootstrap_servers,
            &o.properties,
            &o.topic,
        )
        .map_err(|e| format!("kafka source: {e}"))?;
        let first = self.next.is_empty() && self.end.is_empty();
        let mine: BTreeSet<i32> = all
            .into_iter()
            .filter(|p| (*p as usize) % self.parallelism == self.subtask)
            .filter(|p| !self.next.contains_key(p))
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        let timeout = crate::METADATA_TIMEOUT;
        let mut committed = BTreeMap::new();
        if o.start == StartFrom::Committed {
            let mut tpl = TopicPartitionList::new();
            for &p in &mine {
                tpl.add_partition(&o.topic, p);
            }
            let got = self
                .consumer
                .committed_offsets(tpl, timeout)
                .map_err(|e| self.err(&e))?;
            for e in got.elements() {
                if let Offset::Offset(off) = e.offset() {
                    committed.insert(e.partition(), off);
                }
            }
        }
        let mut by_time = BTreeMap::new();
        if let (StartFrom::Timestamp, Some(ts)) = (o.start, o.start_timestamp) {
            let mut tpl = TopicPartitionList::new();
            for &p in &mine {
                tpl.add_partition_offset(&o.topic, p, Offset::Offset(ts))
                    .map_err(|e| self.err(&e))?;
            }
            let got = self
                .consumer
                .offsets_for_times(tpl, timeout)
                .map_err(|e| self.err(&e))?;
            for e in got.elements() {
                if let Offset::Offset(off) = e.offset() {
                    by_time.insert(e.partition(), off);
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &mine {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&o.topic, p, timeout)
                .map_err(|e| self.err(&e))?;
            let start = if let Some(&off) = self.restored.get(&p) {
                off
            } else if !first || self.restoring {
                // A partition created while the job ran: all of it is new.
                low
            } else {
                match o.start {
                    StartFrom::Earliest => low,
                    StartFrom::Latest => high,
                    StartFrom::Committed => committed.get(&p).copied().unwrap_or(low),
                    StartFrom::Timestamp => by_time.get(&p).copied().unwrap_or(high),
                }
            };
            let start = start.clamp(low, high.max(low));
            self.next.insert(p, start);
            if o.stop_at_end {
                self.end.insert(p, high);
            }
            tpl.add_partition_offset(&o.topic, p, Offset::Offset(start))
                .map_err(|e| self.err(&e))?;
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| self.err(&e))?;
        self.update_assigned();
        Ok(())
    }

    /// The partitions still to read: all of them, or with `stop_at_end`
    /// those not yet read to their end.
    fn update_assigned(&mut self) {
        self.assigned = self
            .next
            .iter()
            .filter(|(p, next)| self.end.get(p).is_none_or(|end| *next < end))
            .map(|(p, _)| *p as u32)
            .collect();
    }

    /// With `stop_at_end`: whether every partition is read up to its end.
    fn at_end(&self) -> bool {
        let Ok(positions) = self.consumer.position() else {
            return false;
        };
        self.end.iter().all(|(p, end)| {
            let next = self.next.get(p).copied().unwrap_or(0);
            let fetched = positions
                .find_partition(&self.options.topic, *p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            next.max(fetched) >= *end
        })
    }
}

/// Errors after which reading cannot go on; others (a broker restarting,
/// a connection lost) are retried by librdkafka.
fn fatal(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::Authentication
                | C::SaslAuthenticationFailed
                | C::OffsetOutOfRange
        )
    )
}

impl Source for KafkaSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, BoxError> {
        self.rows.clear();
        let discovery = self.options.partition_discovery_ms;
        if discovery > 0
            && self.last_discovery.elapsed() >= Duration::from_millis(discovery)
            && let Err(e) = self.discover()
        {
            // A metadata failure now is a broker away, not a reason to stop
            // reading the partitions already assigned.
            tracing::warn!(topic = %self.options.topic, "kafka source: {e}");
        }
        let mut limit = self.options.batch_size;
        if let Some(rate) = self.options.rate_limit.filter(|r| *r > 0) {
            // Records due by now at `rate`; ahead of it, wait (a little,
            // so barriers and timers keep flowing).
            let due = (self.started.elapsed().as_secs_f64() * rate as f64) as u64;
            if due <= self.read {
                let wait = Duration::from_secs_f64((self.read + 1 - due) as f64 / rate as f64);
                weir_engine::share::blocking(|| std::thread::sleep(wait.min(POLL)));
                return Ok(Some(RecordBatch::default()));
            }
            limit = limit.min((due - self.read) as usize);
        }
        let mut batch = BatchBuilder::with_capacity(limit, 0);
        let deadline = Instant::now() + POLL;
        while batch.len() < limit {
            let wait = if batch.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            // Waiting on the broker is not using the CPU.
            let polled = if wait.is_zero() {
                self.consumer.poll(wait)
            } else {
                weir_engine::share::blocking(|| self.consumer.poll(wait))
            };
            match polled {
                None => break,
                Some(Err(e)) if fatal(&e) => {
                    return Err(format!(
                        "kafka source on topic `{}`: {}",
                        self.options.topic,
                        self.err(&e)
                    )
                    .into());
                }
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.options.topic, "kafka source: {}", self.err(&e));
                    break;
                }
                Some(Ok(m)) => {
                    let ts = m.timestamp().to_millis().unwrap_or_else(now_ms);
                    let headers: Vec<(&[u8], &[u8])> = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.as_bytes(), h.value.unwrap_or_default()))
                                .collect()
                        })
                        .unwrap_or_default();
                    batch.push_with_headers(
                        m.key().unwrap_or_default(),
                        m.payload().unwrap_or_default(),
                        ts,
                        headers,
                    );
                    self.next.insert(m.partition(), m.offset() + 1);
                    self.rows.push(m.partition() as u32);
                }
            }
        }
        if batch.is_empty() && self.options.stop_at_end && self.at_end() {
            return Ok(None);
        }
        self.read += batch.len() as u64;
        if self.options.stop_at_end && !batch.is_empty() {
            self.update_assigned();
        }
        Ok(Some(batch.finish()))
    }

    fn splits(&self) -> Option<weir_engine::SplitInfo<'_>> {
        Some(weir_engine::SplitInfo {
            assigned: &self.assigned,
            rows: &self.rows,
        })
    }

    fn position(&self) -> Vec<u8> {
        // Informational: the group's offsets follow the checkpoints.
        let mut tpl = TopicPartitionList::new();
        for (&p, &off) in &self.next {
            let _ = tpl.add_partition_offset(&self.options.topic, p, Offset::Offset(off));
        }
        if tpl.count() > 0 {
            let _ = self
                .consumer
                .commit(&tpl, rdkafka::consumer::CommitMode::Async);
        }
        encode_position(&self.next)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        let next: BTreeMap<i32, i64> = [(0, 5), (3, 1 << 40)].into_iter().collect();
        assert_eq!(
            decode_position(&encode_position(&next)).unwrap(),
            vec![(0, 5), (3, 1 << 40)]
        );
        assert!(decode_position(&[1, 2, 3]).is_err());
    }
}
