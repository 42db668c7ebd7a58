//! Kafka for weir: a source and a sink over librdkafka (the `rdkafka` crate).
//!
//! * [`source`] — a topic's partitions split across the source subtasks
//!   (partition `p` goes to subtask `p % parallelism`, as Flink assigns
//!   them, with no consumer-group rebalancing); the offset of each
//!   partition is the source's checkpointed position, restored on recovery
//!   and redistributed when the parallelism changes; new partitions are
//!   picked up; committing offsets to the consumer group is informational.
//! * [`sink`] — writes records with a chosen guarantee: `none`,
//!   `at-least-once` (flushed at every checkpoint) or `exactly-once` (one
//!   Kafka transaction per sink subtask per checkpoint, committed when the
//!   checkpoint completes; see the module for recovery).
//!
//! * [`tools`] — what `weir kafka` does: create a topic, write a JSON Lines
//!   file into it, read a topic out.
//!
//! Both take `bootstrap_servers`, a `topic` and free-form librdkafka
//! `properties` (security settings and tuning), and name the broker
//! address, topic and node in every error.

pub mod sink;
pub mod source;
pub mod tools;

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientConfig, types::RDKafkaErrorCode};

pub use sink::{Guarantee, KafkaSinkFactory, KafkaSinkOptions};
pub use source::{KafkaSourceFactory, KafkaSourceOptions, StartFrom};

/// How long to wait for the cluster's metadata when a subtask starts.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster a job file names none: `$WEIR_KAFKA`, else the local
/// default.
pub fn default_bootstrap() -> String {
    std::env::var("WEIR_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// A client configuration for `bootstrap` with the user's `properties`.
fn config(bootstrap: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// A client context that remembers why the cluster refused the client.
/// librdkafka reports a failed authentication only through the error
/// callback, while the request that was waiting just times out: without
/// this, bad credentials would read as an unreachable cluster.
#[derive(Default)]
pub(crate) struct Watch {
    refused: Mutex<Option<String>>,
}

impl Watch {
    fn note(&self, error: &KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed
            )
        ) {
            *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason.to_string());
        }
        tracing::warn!(target: "librdkafka", "{error}: {reason}");
    }

    fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A context that carries a [`Watch`].
pub(crate) trait Watched: ClientContext {
    fn watch(&self) -> &Watch;
}

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        self.note(&error, reason);
    }
}

impl ConsumerContext for Watch {}

impl ProducerContext for Watch {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

impl Watched for Watch {
    fn watch(&self) -> &Watch {
        self
    }
}

/// [`describe`], unless the cluster refused the client's credentials.
fn describe_watched<C: Watched>(client: &Client<C>, bootstrap: &str, e: &KafkaError) -> String {
    match client.context().watch().refused() {
        Some(reason) => {
            format!("Kafka at `{bootstrap}` refused the client's credentials: {reason}")
        }
        None => describe(bootstrap, e),
    }
}

/// The partitions of `topic`, with clear errors for an unreachable
/// cluster, a missing topic or a refused client.
fn partitions<C: Watched>(
    client: &Client<C>,
    bootstrap: &str,
    topic: &str,
) -> Result<Vec<i32>, String> {
    let metadata = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| describe_watched(client, bootstrap, &e))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(format!("topic `{topic}` does not exist at `{bootstrap}`"));
    };
    if let Some(e) = t.error() {
        return Err(match e {
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => {
                format!("topic `{topic}` does not exist at `{bootstrap}`")
            }
            other => format!("topic `{topic}` at `{bootstrap}`: {other:?}"),
        });
    }
    if t.partitions().is_empty() {
        return Err(format!("topic `{topic}` does not exist at `{bootstrap}`"));
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// An rdkafka error as a sentence naming the cluster.
fn describe(bootstrap: &str, e: &KafkaError) -> String {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::BrokerTransportFailure | C::AllBrokersDown | C::OperationTimedOut | C::Resolve) => {
            format!("cannot reach Kafka at `{bootstrap}`: {e}")
        }
        Some(C::Authentication | C::SaslAuthenticationFailed | C::ClusterAuthorizationFailed) => {
            format!("Kafka at `{bootstrap}` refused the client's credentials: {e}")
        }
        _ => format!("Kafka at `{bootstrap}`: {e}"),
    }
}
