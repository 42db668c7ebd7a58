//! Talking to a `weir serve`: where it is, the token, and errors people can
//! act on.
//!
//! The endpoint and token come from `--endpoint`/`--token`, else
//! `WEIR_ENDPOINT`/`WEIR_TOKEN`, else the config file (`$WEIR_CONFIG`, or
//! `~/.config/weir/config.toml`: `endpoint = "…"`, `token = "…"`,
//! `ca_cert = "…"`).
//!
//! An `https://` endpoint is verified: against `--ca-cert` (a server's
//! self-signed certificate, or the CA that signed it) when given, else the
//! system's trusted roots. A token is never sent in the clear to a server
//! that is not on loopback.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Args;
use serde::Deserialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use weir_server::proto::jobs_client::JobsClient;
use weir_server::proto::modules_client::ModulesClient;
use weir_server::proto::tenants_client::TenantsClient;

/// The default server address.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7070";

/// How to reach the server.
#[derive(Args, Clone, Debug)]
pub struct Connect {
    /// The server [default: $WEIR_ENDPOINT, the config file, else
    /// http://127.0.0.1:7070].
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// API token: a tenant's, or the admin token for `weir tenant`
    /// [default: $WEIR_TOKEN, else the config file].
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The certificate (PEM) that an `https://` server's must chain to:
    /// its self-signed certificate or a private CA [default:
    /// $WEIR_CA_CERT, the config file, else the system's roots].
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    endpoint: Option<String>,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
}

fn config_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEIR_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("weir").join("config.toml"))
}

fn read_config() -> anyhow::Result<ConfigFile> {
    let Some(path) = config_file() else {
        return Ok(ConfigFile::default());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("bad config file `{}`", path.display()))
        }
        Err(_) => Ok(ConfigFile::default()),
    }
}

/// A connection to the server, with the caller's token.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    token: Option<MetadataValue<Ascii>>,
    /// `--json`.
    pub json: bool,
}

impl Client {
    /// Connects to the server `c` names.
    ///
    /// # Errors
    /// A malformed endpoint or token, or a server that does not answer.
    pub fn connect(c: &Connect) -> anyhow::Result<Self> {
        let file = read_config()?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = c
            .endpoint
            .clone()
            .or_else(|| env("WEIR_ENDPOINT"))
            .or(file.endpoint)
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let endpoint = if endpoint.contains("://") {
            endpoint
        } else {
            format!("http://{endpoint}")
        };
        let token = c.token.clone().or_else(|| env("WEIR_TOKEN")).or(file.token);
        let ca_cert = c
            .ca_cert
            .clone()
            .or_else(|| env("WEIR_CA_CERT").map(PathBuf::from))
            .or(file.ca_cert);
        let uri: tonic::transport::Uri = endpoint
            .parse()
            .map_err(|e| anyhow!("bad endpoint `{endpoint}`: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => {
                weir_server::tls::install_default_provider();
                let config = tonic::transport::ClientTlsConfig::new();
                Some(match &ca_cert {
                    Some(path) => {
                        let pem = std::fs::read(path).with_context(|| {
                            format!("cannot read the CA certificate `{}`", path.display())
                        })?;
                        config.ca_certificate(tonic::transport::Certificate::from_pem(pem))
                    }
                    None => config.with_native_roots(),
                })
            }
            Some("http") => {
                let host = uri.host().unwrap_or_default();
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let loopback = host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if token.is_some() && !loopback {
                    anyhow::bail!(
                        "refusing to send a token in the clear to `{endpoint}`: use https:// (and --ca-cert for a self-signed server)"
                    );
                }
                None
            }
            _ => anyhow::bail!("bad endpoint `{endpoint}`: the scheme must be http or https"),
        };
        let token = token
            .map(|t| {
                format!("Bearer {}", t.trim())
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| anyhow!("the API token has characters a header cannot carry"))
            })
            .transpose()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("cannot start the client runtime")?;
        let channel = runtime
            .block_on(async {
                let mut ep = Channel::from_shared(endpoint.clone())
                    .map_err(|e| anyhow!("bad endpoint `{endpoint}`: {e}"))?;
                if let Some(tls) = tls {
                    ep = ep
                        .tls_config(tls)
                        .map_err(|e| anyhow!("TLS for `{endpoint}`: {e}"))?;
                }
                ep.connect_timeout(std::time::Duration::from_secs(5))
                    .connect()
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "cannot connect to the weir server at `{endpoint}`: {e} (start one with `weir serve`, or set --endpoint / WEIR_ENDPOINT)"
                        )
                    })
            })?;
        Ok(Self {
            runtime,
            channel,
            token,
            json: c.json,
        })
    }

    /// `msg` with the caller's token.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        r
    }

    /// Runs a call.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The tenants service (admin).
    pub fn tenants(&self) -> TenantsClient<Channel> {
        TenantsClient::new(self.channel.clone())
    }

    /// The module registry.
    pub fn modules(&self, max_message: usize) -> ModulesClient<Channel> {
        ModulesClient::new(self.channel.clone()).max_encoding_message_size(max_message)
    }

    /// Jobs.
    pub fn jobs(&self) -> JobsClient<Channel> {
        JobsClient::new(self.channel.clone())
    }
}

/// A failed call as an error message: what kind of failure, then the
/// server's words.
pub fn failed(status: Status) -> anyhow::Error {
    let kind = match status.code() {
        Code::Unauthenticated => "not authenticated",
        Code::PermissionDenied => "permission denied",
        Code::NotFound => "not found",
        Code::InvalidArgument => "invalid request",
        Code::AlreadyExists => "exists already",
        Code::ResourceExhausted => "over a limit",
        Code::FailedPrecondition => "refused",
        Code::Unavailable => "server unavailable",
        Code::Internal => "server error",
        other => other.description(),
    };
    anyhow!("{kind}: {}", status.message())
}

/// Prints `value` as JSON.
pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}
