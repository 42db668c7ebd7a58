//! `weir kafka`: create a topic, write a JSON Lines file into it, read a
//! topic out — to feed a job and look at its results without other tools.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand};

/// Kafka helper commands.
#[derive(Subcommand)]
pub enum KafkaCommand {
    /// Create a topic.
    CreateTopic {
        #[command(flatten)]
        cluster: Cluster,
        /// The topic's name.
        topic: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Replication factor.
        #[arg(long, default_value_t = 1)]
        replication: i32,
    },
    /// Write each line of a JSON Lines file to a topic as a record.
    Produce {
        #[command(flatten)]
        cluster: Cluster,
        /// The topic written.
        #[arg(long)]
        topic: String,
        /// The file (`value` lines, or `envelope` lines with --envelope).
        file: PathBuf,
        /// Top-level field of each line holding the record key.
        #[arg(long)]
        key_field: Option<String>,
        /// Top-level field of each line holding the event time (ms).
        #[arg(long)]
        timestamp_field: Option<String>,
        /// Lines are envelopes (`key`, `value`, `timestamp`, `headers`).
        #[arg(long)]
        envelope: bool,
    },
    /// Print a topic's records as JSON lines, from the beginning, until
    /// nothing new comes for a while.
    Consume {
        #[command(flatten)]
        cluster: Cluster,
        /// The topic read.
        #[arg(long)]
        topic: String,
        /// Also show records of open and aborted transactions.
        #[arg(long)]
        read_uncommitted: bool,
        /// Stop after this long without a new record.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        idle: Duration,
    },
}

/// Where the cluster is.
#[derive(Args)]
pub struct Cluster {
    /// `host:port[,host:port…]`.
    #[arg(long, env = "WEIR_KAFKA", default_value = "127.0.0.1:9092")]
    bootstrap_servers: String,
    /// A librdkafka setting, `key=value` (repeatable): security and tuning.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

impl Cluster {
    fn properties(&self) -> anyhow::Result<BTreeMap<String, String>> {
        self.properties
            .iter()
            .map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| anyhow!("--property `{p}` is not KEY=VALUE"))
            })
            .collect()
    }
}

/// Runs a `weir kafka` command.
pub fn run(cmd: KafkaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KafkaCommand::CreateTopic {
            cluster,
            topic,
            partitions,
            replication,
        } => {
            weir_kafka::tools::create_topic(
                &cluster.bootstrap_servers,
                &topic,
                partitions,
                replication,
                &cluster.properties()?,
            )
            .map_err(|e| anyhow!(e))?;
            eprintln!("created topic `{topic}` with {partitions} partition(s)");
        }
        KafkaCommand::Produce {
            cluster,
            topic,
            file,
            key_field,
            timestamp_field,
            envelope,
        } => {
            let format = if envelope {
                weir_record::json::LineFormat::Envelope
            } else {
                weir_record::json::LineFormat::Value
            };
            let n = weir_kafka::tools::produce_file(
                &cluster.bootstrap_servers,
                &topic,
                &file,
                format,
                key_field.as_deref(),
                timestamp_field.as_deref(),
                &cluster.properties()?,
            )
            .map_err(|e| anyhow!(e))?;
            eprintln!("wrote {n} record(s) to `{topic}`");
        }
        KafkaCommand::Consume {
            cluster,
            topic,
            read_uncommitted,
            idle,
        } => {
            let stdout = std::io::stdout();
            let n = weir_kafka::tools::consume(
                &cluster.bootstrap_servers,
                &topic,
                !read_uncommitted,
                idle,
                &cluster.properties()?,
                &mut stdout.lock(),
            )
            .map_err(|e| anyhow!(e))?;
            eprintln!("read {n} record(s) from `{topic}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}
