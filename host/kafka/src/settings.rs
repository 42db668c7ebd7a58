//! Which librdkafka settings a tenant's job file may set.
//!
//! librdkafka has settings that load a shared library from a host path
//! (`plugin.library.paths`, `ssl.engine.location`), read host files
//! (`ssl.ca.location`, `sasl.kerberos.keytab`, …), run a command
//! (`sasl.kerberos.kinit.cmd`), or send requests to other hosts
//! (`sasl.oauthbearer.token.endpoint.url`, `bootstrap.servers` itself).
//! On a shared server none of them may come from a tenant, so the settings
//! a tenant may write are an allow-list of tuning knobs, per role; secrets
//! and files come from credentials the server's admin defines and grants
//! (see `weir serve --credentials`), and addresses from the node's
//! `bootstrap_servers`, which the server checks against the tenant's egress
//! grants.
//!
//! `weir run` runs the user's own job on the user's own machine and passes
//! every setting through; these rules are for tenants.

use std::fmt;

/// Which client a setting is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A source's consumer.
    Consumer,
    /// A sink's producer.
    Producer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Consumer => "source",
            Self::Producer => "sink",
        })
    }
}

/// Tuning settings of both clients: sizes, timeouts, identification.
const COMMON: &[&str] = &[
    "client.id",
    "client.rack",
    "message.max.bytes",
    "receive.message.max.bytes",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "metadata.max.age.ms",
    "topic.metadata.refresh.interval.ms",
    "topic.metadata.refresh.fast.interval.ms",
    "socket.timeout.ms",
    "socket.keepalive.enable",
    "socket.nagle.disable",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "socket.connection.setup.timeout.ms",
    "connections.max.idle.ms",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "request.timeout.ms",
    "api.version.request.timeout.ms",
    "statistics.interval.ms",
];

/// Consumer tuning.
const CONSUMER: &[&str] = &[
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.wait.max.ms",
    "fetch.error.backoff.ms",
    "fetch.queue.backoff.ms",
    "max.partition.fetch.bytes",
    "fetch.message.max.bytes",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "check.crcs",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.commit.interval.ms",
];

/// Producer tuning.
const PRODUCER: &[&str] = &[
    "linger.ms",
    "queue.buffering.max.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "batch.num.messages",
    "batch.size",
    "compression.type",
    "compression.codec",
    "compression.level",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "message.send.max.retries",
    "retries",
    "request.required.acks",
    "acks",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "partitioner",
];

/// Settings that take a value from a short list; any other value is
/// refused (`security.protocol` decides whether the credentials' TLS and
/// SASL settings are used; GSSAPI runs a command and OAUTHBEARER calls a
/// token endpoint, so neither is offered to tenants).
const CHOICES: &[(&str, &[&str])] = &[
    (
        "security.protocol",
        &["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"],
    ),
    (
        "sasl.mechanism",
        &["plain", "scram-sha-256", "scram-sha-512"],
    ),
    (
        "sasl.mechanisms",
        &["plain", "scram-sha-256", "scram-sha-512"],
    ),
];

/// Why a tenant may not write a setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The setting.
    pub key: String,
    /// Why, and what to do instead.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "property `{}` is not allowed: {}", self.key, self.reason)
    }
}

/// Whether a tenant may set librdkafka setting `key` to `value` on a
/// `role` client.
///
/// # Errors
/// A [`Refusal`] saying why: a secret or a file (use a credential granted
/// by the admin), an address (use `bootstrap_servers`), a library, a
/// command or a token endpoint, or a setting not on the list.
pub fn check_tenant_setting(role: Role, key: &str, value: &str) -> Result<(), Refusal> {
    let refuse = |reason: String| {
        Err(Refusal {
            key: key.to_string(),
            reason,
        })
    };
    let k = key;
    if let Some((_, allowed)) = CHOICES.iter().find(|(name, _)| *name == k) {
        let v = value.trim().to_ascii_lowercase();
        return if allowed.contains(&v.as_str()) {
            Ok(())
        } else {
            refuse(format!("`{value}` is not one of {}", allowed.join(", ")))
        };
    }
    let own: &[&str] = match role {
        Role::Consumer => CONSUMER,
        Role::Producer => PRODUCER,
    };
    if COMMON.contains(&k) || own.contains(&k) {
        return Ok(());
    }
    let lower = k.to_ascii_lowercase();
    let why = if lower == "bootstrap.servers" || lower == "metadata.broker.list" {
        "set the node's `bootstrap_servers` field, which the server checks against the addresses granted to the tenant".to_string()
    } else if lower.contains("password")
        || lower.contains("secret")
        || lower.starts_with("sasl.")
        || lower.starts_with("ssl.")
        || lower.starts_with("ssl_")
        || lower.contains("kerberos")
        || lower.contains("oauthbearer")
    {
        "secrets, keys and certificates come from a credential the server's admin grants to the tenant; name it with `credential = \"NAME\"`".to_string()
    } else if lower.contains("location")
        || lower.contains("path")
        || lower.contains("library")
        || lower.contains(".cmd")
        || lower.contains("engine")
        || lower.contains("url")
        || lower.contains("conf")
    {
        "it names a host file, a library, a command or an address, which a tenant's job may not"
            .to_string()
    } else if !OWNED_BY_WEIR.contains(&k) {
        let other = match role {
            Role::Consumer => Role::Producer,
            Role::Producer => Role::Consumer,
        };
        let other_list: &[&str] = match other {
            Role::Consumer => CONSUMER,
            Role::Producer => PRODUCER,
        };
        if other_list.contains(&k) {
            format!("it is a {other} (not a {role}) setting")
        } else {
            format!(
                "a {role}'s job file may set only tuning settings ({}…); see the README's security model",
                own.iter().take(4).copied().collect::<Vec<_>>().join(", ")
            )
        }
    } else {
        "weir sets it itself".to_string()
    };
    refuse(why)
}

/// Settings weir's connectors set themselves (exactly-once, offsets,
/// groups): a job file never overrides them.
const OWNED_BY_WEIR: &[&str] = &[
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "isolation.level",
    "enable.partition.eof",
    "transactional.id",
    "enable.idempotence",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(role: Role, key: &str, value: &str) -> String {
        check_tenant_setting(role, key, value)
            .expect_err(key)
            .to_string()
    }

    #[test]
    fn tuning_is_allowed_per_role() {
        assert!(check_tenant_setting(Role::Consumer, "fetch.min.bytes", "1024").is_ok());
        assert!(check_tenant_setting(Role::Producer, "linger.ms", "5").is_ok());
        assert!(check_tenant_setting(Role::Producer, "client.id", "x").is_ok());
        assert!(check_tenant_setting(Role::Consumer, "security.protocol", "SASL_SSL").is_ok());
        assert!(check_tenant_setting(Role::Producer, "sasl.mechanism", "SCRAM-SHA-512").is_ok());
        let e = refused(Role::Consumer, "linger.ms", "5");
        assert!(e.contains("sink (not a source) setting"), "{e}");
    }

    #[test]
    fn libraries_files_commands_and_endpoints_are_refused() {
        for key in [
            "plugin.library.paths",
            "ssl.engine.location",
            "ssl.ca.location",
            "ssl.key.location",
            "ssl.certificate.location",
            "ssl.keystore.location",
            "ssl.crl.location",
            "sasl.kerberos.keytab",
            "sasl.kerberos.kinit.cmd",
            "sasl.oauthbearer.token.endpoint.url",
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl_key",
            "debug",
            "broker.address.family",
            "client.dns.lookup",
            "resolve.canonical.bootstrap.servers.only",
        ] {
            let e = refused(Role::Consumer, key, "/etc/shadow");
            assert!(e.contains(&format!("`{key}`")), "{e}");
        }
        let e = refused(Role::Producer, "plugin.library.paths", "/tmp/evil.so");
        assert!(e.contains("library"), "{e}");
        let e = refused(Role::Producer, "sasl.password", "x");
        assert!(e.contains("credential"), "{e}");
        let e = refused(Role::Consumer, "bootstrap.servers", "10.0.0.1:9092");
        assert!(e.contains("bootstrap_servers"), "{e}");
        let e = refused(Role::Producer, "transactional.id", "someone-elses");
        assert!(e.contains("weir sets it"), "{e}");
    }

    #[test]
    fn choices_refuse_mechanisms_that_run_commands_or_call_endpoints() {
        let e = refused(Role::Consumer, "sasl.mechanism", "GSSAPI");
        assert!(e.contains("plain, scram-sha-256"), "{e}");
        let e = refused(Role::Consumer, "sasl.mechanisms", "OAUTHBEARER");
        assert!(e.contains("not one of"), "{e}");
        assert!(check_tenant_setting(Role::Consumer, "security.protocol", "ssl ").is_ok());
        assert!(check_tenant_setting(Role::Consumer, "security.protocol", "tls").is_err());
    }
}
