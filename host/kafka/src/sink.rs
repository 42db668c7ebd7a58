//! The Kafka sink, with a chosen delivery guarantee.
//!
//! * `none` — records are handed to the producer; nothing waits for them.
//! * `at-least-once` — at every checkpoint barrier the producer is flushed
//!   and every record acknowledged before the sink acknowledges the
//!   checkpoint; a failure may write records again after recovery.
//! * `exactly-once` — Kafka transactions, one per sink subtask per
//!   checkpoint, under a transactional id per subtask
//!   (`<transactional_id_prefix>-<subtask>`), which also fences an older
//!   instance of the same subtask (a zombie):
//!   1. records are written into the open transaction as they come;
//!   2. at the barrier of checkpoint *N* the transaction is flushed
//!      (pre-committed) and its records are kept, in the checkpoint too;
//!      records after the barrier wait in memory while *N* is pending
//!      (librdkafka runs one transaction at a time per producer);
//!   3. when checkpoint *N* completes the transaction is committed, with a
//!      marker inside it: the offset *N* committed to the consumer group
//!      `<transactional id>` on partition 0 of the topic, visible only if
//!      the transaction commits;
//!   4. on recovery from checkpoint *L*, a new producer with the same id
//!      aborts whatever the old one left open; the marker tells which of
//!      the transactions the checkpoint lists were committed; the others
//!      (a crash between completion and commit) are written again from the
//!      checkpoint and committed. A `read_committed` consumer so sees every
//!      record exactly once.
//!
//!   librdkafka cannot resume another process's transaction (Flink's Java
//!   producer is reopened by reflection for this), hence the records are
//!   kept with the checkpoint: the price is the size of one checkpoint
//!   interval's output in memory and in the checkpoint.
//!
//!   At the natural end of the input everything is committed with a final
//!   marker; a later restore of that job from one of its checkpoints writes
//!   nothing more (everything was delivered). A cancelled job commits
//!   nothing beyond its last completed checkpoint.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use weir_record::codec::{Reader, Truncated, Writer};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use weir_engine::{BoxError, Sink, SinkFactory, SubtaskInfo};
use weir_record::RecordBatch;

/// What the sink promises about each record.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Fire and forget.
    None,
    /// Flushed at every checkpoint; may repeat records after a failure.
    #[default]
    AtLeastOnce,
    /// Transactions committed with the checkpoints.
    ExactlyOnce,
}

/// Options of `kind = "kafka"` (sink).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkOptions {
    /// The cluster, `host:port[,host:port…]`; default `$WEIR_KAFKA`, else
    /// `127.0.0.1:9092`.
    #[serde(default = "crate::default_bootstrap")]
    pub bootstrap_servers: String,
    /// The topic written (it must exist).
    pub topic: String,
    /// Delivery guarantee.
    #[serde(default)]
    pub guarantee: Guarantee,
    /// Prefix of the transactional ids (exactly-once); default
    /// `weir-<job>-<node>`. Two jobs writing at once need different ones.
    #[serde(default)]
    pub transactional_id_prefix: Option<String>,
    /// Further librdkafka settings (`security.protocol`, `linger.ms`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// A named credential of the server's configuration (as a source's).
    #[serde(default)]
    pub credential: Option<String>,
    /// Parallel subtasks.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

/// How long transactional calls may take before the sink fails.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a cancelled sink waits for its open transaction to abort.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// The marker of a transaction committed at the natural end of the input
/// (above every checkpoint id).
const FINAL_MARKER: i64 = 1 << 62;

/// Remembers the first failed delivery.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Builds one producer per sink subtask.
pub struct KafkaSinkFactory {
    options: KafkaSinkOptions,
}

impl KafkaSinkFactory {
    /// A factory for `options`.
    pub fn new(options: KafkaSinkOptions) -> Self {
        Self { options }
    }
}

impl SinkFactory for KafkaSinkFactory {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Sink>, BoxError> {
        let o = &self.options;
        let bootstrap = &o.bootstrap_servers;
        let prefix = o
            .transactional_id_prefix
            .clone()
            .unwrap_or_else(|| format!("weir-{}-{}", info.job, info.node));
        let txn_id = format!("{prefix}-{}", info.subtask);
        let mut config = crate::config(bootstrap, &o.properties);
        if o.guarantee == Guarantee::ExactlyOnce {
            config
                .set("transactional.id", &txn_id)
                .set("transaction.timeout.ms", "600000");
        } else {
            config.set("enable.idempotence", "true");
        }
        let producer: BaseProducer<Deliveries> = config
            .create_with_context(Deliveries::default())
            .map_err(|e| crate::describe(bootstrap, &e))?;
        crate::partitions(producer.client(), bootstrap, &o.properties, &o.topic)
            .map_err(|e| format!("kafka sink: {e}"))?;
        let mut sink = KafkaSink {
            producer,
            options: o.clone(),
            txn_id,
            marker: None,
            epochs: VecDeque::from([Epoch::default()]),
            in_txn: false,
            discard: false,
        };
        if o.guarantee == Guarantee::ExactlyOnce {
            sink.start_transactions(info)?;
        }
        Ok(Box::new(sink))
    }
}

/// The records between two checkpoint barriers: one transaction.
#[derive(Default)]
struct Epoch {
    /// The checkpoint whose barrier ended it (`None`: still open).
    closed_by: Option<u64>,
    batches: Vec<RecordBatch>,
}

struct KafkaSink {
    producer: BaseProducer<Deliveries>,
    options: KafkaSinkOptions,
    txn_id: String,
    /// Exactly-once: the consumer whose group holds the commit marker.
    marker: Option<BaseConsumer>,
    /// Exactly-once: epochs not yet committed, oldest first; the last one is
    /// open. Only the first has a Kafka transaction.
    epochs: VecDeque<Epoch>,
    /// Whether the first epoch's transaction is open in Kafka.
    in_txn: bool,
    /// The job had delivered everything before it was restored.
    discard: bool,
}

impl KafkaSink {
    fn fail(&self, what: &str, e: &rdkafka::error::KafkaError) -> BoxError {
        let fenced = matches!(
            e.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::ProducerFenced)
                | Some(rdkafka::types::RDKafkaErrorCode::InvalidProducerEpoch)
        );
        if fenced {
            return format!(
                "kafka sink on topic `{}`: fenced: another instance with transactional id `{}` \
                 took over ({e})",
                self.options.topic, self.txn_id
            )
            .into();
        }
        format!(
            "kafka sink on topic `{}` ({what}): {}",
            self.options.topic,
            crate::describe(&self.options.bootstrap_servers, e)
        )
        .into()
    }

    /// Exactly-once start: fence the previous instance (aborting its open
    /// transaction), then write again what a restored checkpoint lists and
    /// the marker says was not committed.
    fn start_transactions(&mut self, info: &SubtaskInfo) -> Result<(), BoxError> {
        self.producer
            .init_transactions(TXN_TIMEOUT)
            .map_err(|e| self.fail("init transactions", &e))?;
        let consumer: BaseConsumer =
            crate::config(&self.options.bootstrap_servers, &self.options.properties)
                .set("group.id", &self.txn_id)
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .create()
                .map_err(|e| crate::describe(&self.options.bootstrap_servers, &e))?;
        self.marker = Some(consumer);
        let Some(restored) = info.restored_state()? else {
            return Ok(());
        };
        let committed = self.read_marker()?;
        if committed >= FINAL_MARKER {
            tracing::info!(
                transactional_id = %self.txn_id,
                "kafka sink: the job had delivered all its output; nothing more is written"
            );
            self.discard = true;
            return Ok(());
        }
        for (id, batches) in decode_epochs(&restored.operator)? {
            if id as i64 <= committed {
                continue;
            }
            tracing::info!(
                transactional_id = %self.txn_id,
                checkpoint = id,
                "kafka sink: writing again the output of a completed checkpoint whose transaction was lost"
            );
            self.begin()?;
            for b in &batches {
                self.produce(b)?;
            }
            self.commit(id as i64)?;
        }
        Ok(())
    }

    /// The last committed checkpoint marker (-1 for none).
    fn read_marker(&self) -> Result<i64, BoxError> {
        let Some(consumer) = &self.marker else {
            return Ok(-1);
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.options.topic, 0);
        let got = consumer
            .committed_offsets(tpl, TXN_TIMEOUT)
            .map_err(|e| self.fail("read commit marker", &e))?;
        Ok(got
            .find_partition(&self.options.topic, 0)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(-1))
    }

    fn begin(&mut self) -> Result<(), BoxError> {
        if !self.in_txn {
            self.producer
                .begin_transaction()
                .map_err(|e| self.fail("begin transaction", &e))?;
            self.in_txn = true;
        }
        Ok(())
    }

    /// Commits the open transaction with marker `marker`.
    fn commit(&mut self, marker: i64) -> Result<(), BoxError> {
        let Some(consumer) = &self.marker else {
            return Ok(());
        };
        let metadata = consumer
            .group_metadata()
            .ok_or("kafka sink: no consumer group metadata for the commit marker")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.options.topic, 0, Offset::Offset(marker))
            .map_err(|e| self.fail("commit marker", &e))?;
        self.producer
            .send_offsets_to_transaction(&tpl, &metadata, TXN_TIMEOUT)
            .map_err(|e| self.fail("commit marker", &e))?;
        weir_engine::share::blocking(|| self.producer.commit_transaction(TXN_TIMEOUT))
            .map_err(|e| self.fail("commit transaction", &e))?;
        self.in_txn = false;
        self.check_deliveries()
    }

    /// Hands a batch's records to the producer.
    fn produce(&self, batch: &RecordBatch) -> Result<(), BoxError> {
        let topic = &self.options.topic;
        for r in batch.records() {
            let mut headers = None;
            for (k, v) in r.headers() {
                let h = headers.take().unwrap_or_else(OwnedHeaders::new);
                headers = Some(h.insert(Header {
                    key: &String::from_utf8_lossy(k),
                    value: Some(v),
                }));
            }
            let mut record = BaseRecord::to(topic)
                .payload(r.value())
                .timestamp(r.timestamp());
            if !r.key().is_empty() {
                record = record.key(r.key());
            }
            if let Some(h) = headers {
                record = record.headers(h);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((e, back))
                        if e.rdkafka_error_code()
                            == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                    {
                        // Backpressure: wait for deliveries to drain the queue.
                        self.producer.poll(Duration::from_millis(10));
                        record = back;
                    }
                    Err((e, _)) => return Err(self.fail("send", &e)),
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    fn check_deliveries(&self) -> Result<(), BoxError> {
        let failed = self
            .producer
            .context()
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match failed {
            Some(e) => Err(format!(
                "kafka sink on topic `{}` at `{}`: a record was not delivered: {e}",
                self.options.topic, self.options.bootstrap_servers
            )
            .into()),
            None => Ok(()),
        }
    }

    fn flush(&self) -> Result<(), BoxError> {
        weir_engine::share::blocking(|| self.producer.flush(TXN_TIMEOUT))
            .map_err(|e| self.fail("flush", &e))?;
        self.check_deliveries()
    }

    fn exactly_once(&self) -> bool {
        self.options.guarantee == Guarantee::ExactlyOnce
    }

    /// Commits the first epoch's transaction (writing its records first if
    /// they only waited in memory) and drops the epoch.
    fn commit_first(&mut self, marker: i64) -> Result<(), BoxError> {
        let Some(epoch) = self.epochs.pop_front() else {
            return Ok(());
        };
        if !epoch.batches.is_empty() {
            if !self.in_txn {
                self.begin()?;
                for b in &epoch.batches {
                    self.produce(b)?;
                }
            }
            self.commit(marker)?;
        }
        if self.epochs.is_empty() {
            self.epochs.push_back(Epoch::default());
        }
        Ok(())
    }

    /// Writes the records of the (new) first epoch that waited in memory
    /// into a new transaction.
    fn start_first(&mut self) -> Result<(), BoxError> {
        if self.in_txn {
            return Ok(());
        }
        let batches = match self.epochs.front() {
            Some(e) if !e.batches.is_empty() => e.batches.clone(),
            _ => return Ok(()),
        };
        self.begin()?;
        for b in &batches {
            self.produce(b)?;
        }
        Ok(())
    }
}

impl Sink for KafkaSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), BoxError> {
        if self.discard || batch.is_empty() {
            return Ok(());
        }
        if !self.exactly_once() {
            self.produce(batch)?;
            return self.check_deliveries();
        }
        let only = self.epochs.len() == 1;
        if only {
            self.begin()?;
            self.produce(batch)?;
        }
        if let Some(open) = self.epochs.back_mut() {
            open.batches.push(batch.clone());
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint: u64) -> Result<Vec<u8>, BoxError> {
        match self.options.guarantee {
            Guarantee::None => Ok(Vec::new()),
            Guarantee::AtLeastOnce => {
                self.flush()?;
                Ok(Vec::new())
            }
            Guarantee::ExactlyOnce => {
                // Pre-commit: everything of the open transaction is in Kafka.
                if self.in_txn {
                    self.flush()?;
                }
                if let Some(open) = self.epochs.back_mut() {
                    open.closed_by = Some(checkpoint);
                }
                self.epochs.push_back(Epoch::default());
                Ok(encode_epochs(&self.epochs))
            }
        }
    }

    fn checkpoint_complete(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        if !self.exactly_once() {
            return Ok(());
        }
        while let Some(id) = self.epochs.front().and_then(|e| e.closed_by) {
            if id > checkpoint {
                break;
            }
            self.commit_first(id as i64)?;
        }
        self.start_first()
    }

    fn awaiting_commit(&self) -> bool {
        self.epochs.len() > 1
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        if !self.exactly_once() {
            return self.flush();
        }
        // The natural end of the input: everything is delivered.
        while self.epochs.len() > 1 {
            let id = self.epochs.front().and_then(|e| e.closed_by).unwrap_or(0);
            self.commit_first(id as i64)?;
            self.start_first()?;
        }
        if self.discard {
            return Ok(());
        }
        self.start_first()?;
        self.begin()?;
        self.commit(FINAL_MARKER)?;
        self.epochs = VecDeque::from([Epoch::default()]);
        Ok(())
    }

    fn cancel(&mut self) -> Result<(), BoxError> {
        if self.in_txn {
            // What follows the last completed checkpoint is written again
            // after a restart, and the next producer with this
            // transactional id aborts whatever is left open (fencing this
            // one): the abort is a courtesy, and must not hold up the end
            // of a failed or stopped job. Purged first, since aborting
            // flushes what is still queued or in flight and could wait on
            // it for the whole transaction timeout (seen: a minute, when a
            // worker of a spread job died).
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let _ = self.producer.abort_transaction(CANCEL_TIMEOUT);
            self.in_txn = false;
        }
        Ok(())
    }
}

/// Encodes the closed epochs: (checkpoint id, their records) each.
fn encode_epochs(epochs: &VecDeque<Epoch>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in epochs {
        let Some(id) = e.closed_by else { continue };
        if e.batches.is_empty() {
            continue;
        }
        out.put_u64(id);
        out.put_long_bytes(&weir_engine::checkpoint::encode_records(&e.batches));
    }
    out
}

#[allow(clippy::type_complexity)]
fn decode_epochs(bytes: &[u8]) -> Result<Vec<(u64, Vec<RecordBatch>)>, Truncated> {
    let mut r = Reader::new("Kafka sink state", bytes);
    let mut out = Vec::new();
    while !r.is_empty() {
        let id = r.u64("checkpoint id")?;
        let batch = weir_engine::checkpoint::decode_records(r.long_bytes("records")?)?;
        out.push((id, vec![batch]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_epochs_round_trip_through_the_checkpoint_state() {
        let mut b = weir_record::BatchBuilder::default();
        b.push(b"k", b"v", 7);
        let batch = b.finish();
        let epochs = VecDeque::from([
            Epoch {
                closed_by: Some(3),
                batches: vec![batch.clone()],
            },
            Epoch {
                closed_by: Some(4),
                batches: Vec::new(),
            },
            Epoch {
                closed_by: None,
                batches: vec![batch.clone()],
            },
        ]);
        let decoded = decode_epochs(&encode_epochs(&epochs)).unwrap();
        assert_eq!(decoded.len(), 1, "empty and open epochs are not kept");
        assert_eq!(decoded[0].0, 3);
        assert_eq!(decoded[0].1.iter().map(RecordBatch::len).sum::<usize>(), 1);
        assert!(decode_epochs(&[1, 2]).is_err());
    }
}
