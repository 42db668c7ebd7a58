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

pub mod settings;
pub mod sink;
pub mod source;
pub mod tools;

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

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

/// The partitions of `topic`, with clear errors for an unreachable
/// cluster, a missing topic or a refused client (`properties` are the
/// client's, to tell the last two apart).
fn partitions<C: ClientContext>(
    client: &Client<C>,
    bootstrap: &str,
    properties: &BTreeMap<String, String>,
    topic: &str,
) -> Result<Vec<i32>, ClusterError> {
    let metadata = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| describe_unanswered(bootstrap, properties, &e))?;
    let missing = || ClusterError::NoTopic {
        topic: topic.to_string(),
        bootstrap: bootstrap.to_string(),
    };
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(missing());
    };
    if let Some(e) = t.error() {
        return Err(match e {
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => missing(),
            other => ClusterError::Topic {
                topic: topic.to_string(),
                bootstrap: bootstrap.to_string(),
                code: format!("{other:?}"),
            },
        });
    }
    if t.partitions().is_empty() {
        return Err(missing());
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Remembers a failed sign-in, which librdkafka reports only as a log line
/// and an error event.
#[derive(Default)]
struct SignIn {
    refused: Mutex<Option<String>>,
}

impl SignIn {
    fn refuse(&self, why: &str) {
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(why.to_string());
    }
}

impl ClientContext for SignIn {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        if fac == "FAIL" && message.contains("SASL authentication error") {
            self.refuse(message);
        }
        tracing::debug!(target: "librdkafka", "{fac}: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
        ) {
            self.refuse(reason);
        }
    }
}

impl ProducerContext for SignIn {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Whether the cluster refuses these credentials. A client whose request
/// timed out cannot say: librdkafka reports a failed sign-in only through
/// events that wait for the next poll, while the request just times out.
/// So a short-lived producer (whose polls serve only events) signs in
/// again and is asked.
fn refusal(bootstrap: &str, properties: &BTreeMap<String, String>) -> Option<String> {
    let probe: BaseProducer<SignIn> = config(bootstrap, properties)
        .create_with_context(SignIn::default())
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if probe
            .client()
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok()
        {
            return None;
        }
        probe.poll(Duration::ZERO);
        let refused = probe
            .context()
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if refused.is_some() {
            return refused;
        }
    }
    None
}

/// [`describe`] for a request that got no answer: a refused sign-in is
/// named as such, not as an unreachable cluster.
fn describe_unanswered(
    bootstrap: &str,
    properties: &BTreeMap<String, String>,
    e: &KafkaError,
) -> ClusterError {
    use RDKafkaErrorCode as C;
    let unanswered = matches!(
        e.rdkafka_error_code(),
        Some(C::BrokerTransportFailure | C::AllBrokersDown | C::OperationTimedOut)
    );
    if unanswered
        && properties.keys().any(|k| k.starts_with("sasl."))
        && let Some(why) = refusal(bootstrap, properties)
    {
        return ClusterError::Refused {
            bootstrap: bootstrap.to_string(),
            why,
        };
    }
    describe(bootstrap, e)
}

/// An rdkafka error, classified and naming the cluster.
fn describe(bootstrap: &str, e: &rdkafka::error::KafkaError) -> ClusterError {
    use rdkafka::types::RDKafkaErrorCode as C;
    let bootstrap = bootstrap.to_string();
    match e.rdkafka_error_code() {
        Some(C::BrokerTransportFailure | C::AllBrokersDown | C::OperationTimedOut | C::Resolve) => {
            ClusterError::Unreachable {
                bootstrap,
                source: e.clone(),
            }
        }
        Some(C::Authentication | C::SaslAuthenticationFailed | C::ClusterAuthorizationFailed) => {
            ClusterError::Refused {
                bootstrap,
                why: e.to_string(),
            }
        }
        _ => ClusterError::Other {
            bootstrap,
            source: e.clone(),
        },
    }
}

/// A Kafka cluster's refusal or unreachability, naming it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No broker answered.
    #[error("cannot reach Kafka at `{bootstrap}`: {source}")]
    Unreachable {
        /// The bootstrap servers.
        bootstrap: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The cluster refused the client's credentials.
    #[error("Kafka at `{bootstrap}` refused the client's credentials: {why}")]
    Refused {
        /// The bootstrap servers.
        bootstrap: String,
        /// Why, as the cluster said.
        why: String,
    },
    /// The topic is not there.
    #[error("topic `{topic}` does not exist at `{bootstrap}`")]
    NoTopic {
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        bootstrap: String,
    },
    /// The cluster reported an error for the topic.
    #[error("topic `{topic}` at `{bootstrap}`: {code}")]
    Topic {
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        bootstrap: String,
        /// The error code.
        code: String,
    },
    /// Any other error of the cluster.
    #[error("Kafka at `{bootstrap}`: {source}")]
    Other {
        /// The bootstrap servers.
        bootstrap: String,
        /// librdkafka's error.
        source: KafkaError,
    },
}
