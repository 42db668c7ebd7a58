//! Workers joining and leaving: records under etcd leases.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use crate::{ClusterError, PREFIX, PROTOCOL};

/// What a worker tells the cluster about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Unique among live workers.
    pub id: String,
    /// Task slots it offers.
    pub slots: u32,
    /// Where producers on other workers send it data
    /// (`weir_network::DataServer`).
    pub data_addr: String,
    /// The `weir` version it runs.
    pub version: String,
    /// Its controller–worker protocol ([`PROTOCOL`] of its build).
    pub protocol: u32,
    /// When it registered (ms since the Unix epoch).
    pub started_ms: u64,
    /// Its incarnation: the etcd lease it registered under (set by
    /// [`Membership::register`]). A worker that rejoins, or restarts with
    /// the same id, is another incarnation, and parts placed on an earlier
    /// one are not run by it.
    #[serde(default)]
    pub lease: i64,
}

impl WorkerInfo {
    /// A record for this build of weir.
    pub fn new(id: &str, slots: u32, data_addr: &str) -> Self {
        Self {
            id: id.to_string(),
            slots,
            data_addr: data_addr.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL,
            started_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            lease: 0,
        }
    }

    /// Whether a controller of this build can give it work.
    pub fn compatible(&self) -> bool {
        self.protocol == PROTOCOL
    }
}

/// A connection to the cluster's etcd.
#[derive(Clone)]
pub struct Membership {
    client: Client,
    endpoints: String,
    timeout: Duration,
}

/// What happened to a worker's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseEvent {
    /// Renewed; the worker is a member.
    Alive,
    /// Expired or unreachable for its whole time to live: the cluster no
    /// longer counts the worker, which must stop its work (another worker
    /// may be running it already).
    Lost(String),
}

/// A worker's membership: its lease, kept alive in the background until
/// revoked, dropped or lost.
pub struct WorkerLease {
    id: i64,
    key: String,
    events: watch::Receiver<LeaseEvent>,
    keeper: tokio::task::JoinHandle<()>,
    membership: Membership,
}

fn worker_key(id: &str) -> String {
    format!("{PREFIX}workers/{id}")
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Membership {
    /// Connects to etcd at `endpoints` (`http://host:port`, or `host:port`)
    /// and checks that it answers within `within`.
    ///
    /// # Errors
    /// [`ClusterError::Timeout`] or [`ClusterError::Etcd`], naming the
    /// endpoints.
    pub async fn connect(endpoints: &[String], within: Duration) -> Result<Self, ClusterError> {
        let named = endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(within)
            .with_timeout(within)
            .with_keep_alive(Duration::from_secs(5), within);
        let connecting = Client::connect(endpoints, Some(options));
        let mut client = match timeout(within, connecting).await {
            Err(_) => {
                return Err(ClusterError::Timeout {
                    endpoints: named,
                    timeout: within,
                });
            }
            Ok(r) => r.map_err(|e| etcd(&named, e))?,
        };
        match timeout(within, client.status()).await {
            Err(_) => Err(ClusterError::Timeout {
                endpoints: named,
                timeout: within,
            }),
            Ok(Err(e)) => Err(etcd(&named, e)),
            Ok(Ok(_)) => Ok(Self {
                client,
                endpoints: named,
                timeout: within,
            }),
        }
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// Registers `info` under a lease of `ttl` (whole seconds, at least 1)
    /// and keeps the lease alive until the returned [`WorkerLease`] is
    /// revoked or dropped, or is lost.
    ///
    /// # Errors
    /// A bad id, a live worker with the same id, or etcd failing.
    pub async fn register(
        &self,
        info: &WorkerInfo,
        ttl: Duration,
    ) -> Result<WorkerLease, ClusterError> {
        if !valid_id(&info.id) {
            return Err(ClusterError::BadId(info.id.clone()));
        }
        let ttl_s = ttl.as_secs().max(1) as i64;
        let mut client = self.client.clone();
        let lease = self.call(client.lease_grant(ttl_s, None)).await?.id();
        let key = worker_key(&info.id);
        let info = WorkerInfo {
            lease,
            ..info.clone()
        };
        let value = serde_json::to_vec(&info).map_err(|e| ClusterError::BadRecord {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        // Put only if no live worker holds the id: a duplicate must not
        // take over another's record.
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let answer = self.call(client.txn(txn)).await?;
        if !answer.succeeded() {
            let _ = self.call(client.lease_revoke(lease)).await;
            let data_addr = answer
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                        serde_json::from_slice::<WorkerInfo>(kv.value())
                            .map_or_else(|_| "?".to_string(), |w| w.data_addr)
                    }),
                    _ => None,
                })
                .unwrap_or_else(|| "?".to_string());
            return Err(ClusterError::DuplicateWorker {
                id: info.id.clone(),
                data_addr,
            });
        }
        let (tx, events) = watch::channel(LeaseEvent::Alive);
        let keeper = tokio::spawn(keep_alive(
            self.client.clone(),
            lease,
            Duration::from_secs(ttl_s as u64),
            tx,
        ));
        tracing::info!(worker = %info.id, lease, ttl_s, "registered in etcd");
        Ok(WorkerLease {
            id: lease,
            key,
            events,
            keeper,
            membership: self.clone(),
        })
    }

    /// The workers registered now, by id.
    ///
    /// # Errors
    /// etcd failing, or a record that is not a worker's.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, ClusterError> {
        let mut workers: Vec<WorkerInfo> = self
            .list_json::<WorkerInfo>(&format!("{PREFIX}workers/"))
            .await?
            .into_iter()
            .map(|(_, w)| w)
            .collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(workers)
    }

    /// Every JSON record under `prefix`: the rest of its key, and the
    /// record.
    pub(crate) async fn list_json<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, ClusterError> {
        let mut client = self.client.clone();
        let answer = self
            .call(client.get(prefix, Some(GetOptions::new().with_prefix())))
            .await?;
        answer
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let rest = key.strip_prefix(prefix).unwrap_or_default().to_string();
                serde_json::from_slice::<T>(kv.value())
                    .map(|record| (rest, record))
                    .map_err(|e| ClusterError::BadRecord {
                        key,
                        reason: e.to_string(),
                    })
            })
            .collect()
    }

    /// The record at `key`, if there is one.
    ///
    /// # Errors
    /// etcd failing, or a record that is not a `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, ClusterError> {
        let mut client = self.client.clone();
        let answer = self.call(client.get(key, None)).await?;
        answer
            .kvs()
            .first()
            .map(|kv| {
                serde_json::from_slice::<T>(kv.value()).map_err(|e| ClusterError::BadRecord {
                    key: key.to_string(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// A handle on the client (cheap: a shared channel).
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs one etcd call with this connection's timeout.
    pub(crate) async fn call<T>(
        &self,
        f: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, ClusterError> {
        match timeout(self.timeout, f).await {
            Err(_) => Err(ClusterError::Timeout {
                endpoints: self.endpoints.clone(),
                timeout: self.timeout,
            }),
            Ok(r) => r.map_err(|e| etcd(&self.endpoints, e)),
        }
    }
}

fn etcd(endpoints: &str, e: etcd_client::Error) -> ClusterError {
    ClusterError::Etcd {
        endpoints: endpoints.to_string(),
        message: describe(&e),
    }
}

/// A one-line account of a client error: gRPC's message and the innermost
/// cause (the client's own `Display` repeats the whole chain).
fn describe(e: &etcd_client::Error) -> String {
    let head = match e {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{} ({})", status.message(), status.code().description())
        }
        other => other.to_string(),
    };
    // The system's error (connection refused, timed out) if there is one.
    let mut cause: &dyn std::error::Error = e;
    let mut io = None;
    while let Some(next) = cause.source() {
        if let Some(e) = next.downcast_ref::<std::io::Error>() {
            io = Some(e.to_string());
        }
        cause = next;
    }
    let root = io.unwrap_or_default();
    if root.is_empty() || head.contains(&root) {
        head
    } else {
        format!("{head}: {root}")
    }
}

/// Renews `lease` every third of its time to live. The lease is surely
/// alive until `ttl` after the last renewal was *sent*; past that without a
/// renewal, or when etcd says it expired, it is lost.
async fn keep_alive(client: Client, lease: i64, ttl: Duration, events: watch::Sender<LeaseEvent>) {
    let period = ttl / 3;
    let mut alive_until = Instant::now() + ttl;
    let mut stream = None;
    loop {
        let sent = Instant::now();
        let renewed = timeout(period.max(Duration::from_millis(200)), async {
            if stream.is_none() {
                stream = Some(client.clone().lease_keep_alive(lease).await?);
            }
            let (keeper, answers) = stream.as_mut().ok_or_else(|| {
                etcd_client::Error::LeaseKeepAliveError("no keep-alive stream".into())
            })?;
            keeper.keep_alive().await?;
            answers.message().await
        })
        .await;
        match renewed {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                alive_until = sent + Duration::from_secs(answer.ttl() as u64);
                let _ = events.send(LeaseEvent::Alive);
            }
            Ok(Ok(Some(_))) => {
                let _ = events.send(LeaseEvent::Lost(format!(
                    "lease {lease} expired in etcd (the worker was unreachable for its time to live)"
                )));
                return;
            }
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                stream = None;
                if Instant::now() >= alive_until {
                    let _ = events.send(LeaseEvent::Lost(format!(
                        "etcd did not renew lease {lease} within its time to live of {ttl:?}"
                    )));
                    return;
                }
            }
        }
        tokio::time::sleep_until((sent + period).min(alive_until)).await;
    }
}

impl WorkerLease {
    /// The etcd lease id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Events of the lease, the latest first.
    pub fn events(&self) -> watch::Receiver<LeaseEvent> {
        self.events.clone()
    }

    /// Waits until the lease is lost; returns why.
    pub async fn lost(&mut self) -> String {
        loop {
            if let LeaseEvent::Lost(why) = &*self.events.borrow_and_update() {
                return why.clone();
            }
            if self.events.changed().await.is_err() {
                return "the lease keeper stopped".to_string();
            }
        }
    }

    /// Leaves the cluster now: revokes the lease, which deletes the
    /// worker's record.
    ///
    /// # Errors
    /// etcd failing (the record then goes when the lease expires).
    pub async fn revoke(self) -> Result<(), ClusterError> {
        self.keeper.abort();
        let mut client = self.membership.client.clone();
        self.membership.call(client.lease_revoke(self.id)).await?;
        tracing::info!(key = %self.key, "left the cluster");
        Ok(())
    }
}

impl Drop for WorkerLease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_key_segments() {
        assert!(valid_id("worker-1.eu_west"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("../x"));
        assert!(!valid_id(&"x".repeat(65)));
    }

    #[test]
    fn records_round_trip_and_name_their_protocol() {
        let w = WorkerInfo::new("w1", 4, "127.0.0.1:7000");
        let back: WorkerInfo = serde_json::from_slice(&serde_json::to_vec(&w).unwrap()).unwrap();
        assert_eq!(back, w);
        assert!(w.compatible());
        let old = WorkerInfo { protocol: 0, ..w };
        assert!(!old.compatible());
    }
}
