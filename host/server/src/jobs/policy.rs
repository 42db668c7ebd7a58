//! What a tenant's job file may do: its settings against the allow-list
//! of each connector, its addresses against the egress the admin granted,
//! its credentials against those granted, its quotas; Kafka ids scoped to
//! the tenant. Refusals name the job file line.

use super::*;

/// What a tenant's jobs may do: its quotas and what the admin granted.
pub(crate) struct TenantRules<'a> {
    pub(crate) quotas: Quotas,
    pub(crate) grants: Grants,
    pub(crate) credentials: &'a Credentials,
}

impl Server {
    /// A tenant's rules as they are now.
    pub(crate) fn rules(&self, tenant: &str) -> Result<TenantRules<'_>, ServerError> {
        let record = self.tenants().get(tenant)?;
        Ok(TenantRules {
            quotas: record.quotas,
            grants: record.grants,
            credentials: &self.inner.config.credentials,
        })
    }
}

/// One Kafka node's client settings, as a server checks them.
struct KafkaNode<'a> {
    name: String,
    role: weir_kafka::settings::Role,
    bootstrap: &'a str,
    properties: &'a mut BTreeMap<String, String>,
    credential: &'a mut Option<String>,
}

/// Kafka nodes: every setting on the tenants' allow-list, a named
/// credential granted to the tenant (its settings added), every address
/// granted. Errors name the node and the line of the setting.
/// A Kafka consumer group or transactional id of `tenant`: `TENANT.id`.
fn tenant_scoped(tenant: &str, id: &str) -> String {
    format!("{tenant}.{id}")
}

fn check_connectors(
    spec: &mut JobSpec,
    tenant: &str,
    rules: &TenantRules<'_>,
) -> Result<(), ServerError> {
    use weir_kafka::settings::{Role, check_tenant_setting};
    let egress =
        Egress::parse(&rules.grants.egress).map_err(|e| ServerError::Internal(e.to_string()))?;
    let job = spec.name.clone();
    // Consumer groups and transactional ids carry the tenant's name first,
    // so that no tenant can join, fence or read another's (and a broker's
    // ACLs can confine a tenant by prefix).
    let scoped = |id: Option<String>, node: &str| {
        Some(tenant_scoped(
            tenant,
            &id.unwrap_or_else(|| format!("weir-{job}-{node}")),
        ))
    };
    let mut nodes: Vec<KafkaNode<'_>> = Vec::new();
    for n in &mut spec.sources {
        if let weir_job::spec::SourceSpec::Kafka(o) = &mut n.spec {
            o.group_id = scoped(o.group_id.take(), &n.name);
            nodes.push(KafkaNode {
                name: n.name.clone(),
                role: Role::Consumer,
                bootstrap: o.bootstrap_servers.as_str(),
                properties: &mut o.properties,
                credential: &mut o.credential,
            });
        }
    }
    for n in &mut spec.sinks {
        if let SinkKind::Kafka(o) = &mut n.spec.kind {
            o.transactional_id_prefix = scoped(o.transactional_id_prefix.take(), &n.name);
            nodes.push(KafkaNode {
                name: n.name.clone(),
                role: Role::Producer,
                bootstrap: o.bootstrap_servers.as_str(),
                properties: &mut o.properties,
                credential: &mut o.credential,
            });
        }
    }
    // (node, field, why) of the first refusal.
    let mut refused: Option<(String, String, String)> = None;
    for node in &mut nodes {
        if let Some((key, why)) = node.properties.iter().find_map(|(k, v)| {
            check_tenant_setting(node.role, k, v)
                .err()
                .map(|r| (k.clone(), r.to_string()))
        }) {
            refused = Some((node.name.clone(), key, why));
            break;
        }
        if let Some(why) = node
            .bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .find_map(|address| egress.allows(address).err())
        {
            refused = Some((
                node.name.clone(),
                "bootstrap_servers".into(),
                format!("tenant `{tenant}`, job `{job}`: {why}"),
            ));
            break;
        }
        if let Some(name) = node.credential.take() {
            let granted = rules.grants.credentials.contains(&name);
            match rules.credentials.get(&name) {
                Some(settings) if granted => {
                    node.properties
                        .extend(settings.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                _ => {
                    refused = Some((
                        node.name.clone(),
                        "credential".into(),
                        format!(
                            "credential `{name}` is not granted to tenant `{tenant}` (the admin grants credentials with `weir tenant grant --credential`)"
                        ),
                    ));
                    break;
                }
            }
        }
    }
    drop(nodes);
    match refused {
        Some((node, field, why)) => Err(ServerError::PermissionDenied(
            spec.error_at(&node, &field, why).to_string(),
        )),
        None => Ok(()),
    }
}

/// Reads a submitted job file and applies the server's rules.
pub(super) fn parse(
    text: &str,
    files_dir: &Path,
    tenant: &str,
    rules: &TenantRules<'_>,
    overrides: &BTreeMap<String, String>,
) -> Result<JobSpec, ServerError> {
    let invalid = |e: weir_job::JobError| ServerError::InvalidArgument(e.to_string());
    let quotas = &rules.quotas;
    let mut spec = weir_job::parse_job(Path::new("job.toml"), text).map_err(invalid)?;
    check_connectors(&mut spec, tenant, rules)?;
    for n in &mut spec.operators {
        if let Some(module) = overrides.get(&n.name) {
            n.spec.module.clone_from(module);
        }
    }
    // Files: relative, inside the tenant's area.
    let mut bad = None;
    for (node, path) in spec.local_files_mut() {
        let escapes = path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)));
        if escapes {
            bad.get_or_insert((
                node,
                format!(
                    "`{}` is outside the tenant's file area; give a relative path without `..`",
                    path.display()
                ),
            ));
            continue;
        }
        *path = files_dir.join(&*path);
    }
    if let Some((node, message)) = bad {
        return Err(invalid(spec.error_at(&node, "path", message)));
    }
    if let Some(n) = spec
        .sinks
        .iter()
        .find(|n| matches!(n.spec.kind, SinkKind::Stdout(_)))
    {
        return Err(invalid(spec.error_at(
            &n.name,
            "kind",
            "`stdout` would write to the server's console; on a server use `file`, `upsert` or `kafka`".into(),
        )));
    }
    // Guest limits within the tenant's quotas: a default above the quota is
    // lowered to it, an explicit one above it is refused.
    fn within<T: PartialOrd + Copy>(value: &mut T, max: T, default: T) -> bool {
        if *value > max && *value == default {
            *value = max;
        }
        *value <= max
    }
    let defaults = InstanceLimits::default();
    let max_memory = (quotas.max_memory_mb as usize) << 20;
    let max_deadline = Duration::from_millis(u64::from(quotas.max_cpu_deadline_ms));
    let mut refused = None;
    for n in &mut spec.operators {
        let l = &mut n.spec.limits;
        let message = if !within(&mut l.memory_bytes, max_memory, defaults.memory_bytes) {
            format!(
                "memory_mb = {} is over tenant `{tenant}`'s quota of {} MB per instance",
                l.memory_bytes >> 20,
                quotas.max_memory_mb
            )
        } else if !within(&mut l.call_deadline, max_deadline, defaults.call_deadline) {
            format!(
                "cpu_deadline_ms = {} is over tenant `{tenant}`'s quota of {} ms per call",
                l.call_deadline.as_millis(),
                quotas.max_cpu_deadline_ms
            )
        } else {
            continue;
        };
        refused.get_or_insert((n.name.clone(), "limits", message));
    }
    if let Some((node, field, message)) = refused {
        return Err(ServerError::ResourceExhausted(
            spec.error_at(&node, field, message).to_string(),
        ));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDS: &str = "[acme-kafka]\n\"sasl.username\" = \"acme\"\n\"sasl.password\" = \"hunter2\"\n\"ssl.ca.location\" = \"/etc/weir/ca.pem\"\n";

    fn job(source_extra: &str, sink_extra: &str) -> String {
        format!(
            r#"[job]
name = "pay"

[source.in]
kind = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "in"
{source_extra}

[sink.out]
input = "in"
kind = "kafka"
bootstrap_servers = "10.1.2.3:9093"
topic = "out"
{sink_extra}
"#
        )
    }

    fn check(text: &str, egress: &[&str], credentials: &[&str]) -> Result<JobSpec, ServerError> {
        let creds = Credentials::parse(Path::new("creds.toml"), CREDS).unwrap();
        let rules = TenantRules {
            quotas: Quotas::default(),
            grants: Grants {
                egress: egress.iter().map(ToString::to_string).collect(),
                credentials: credentials.iter().map(ToString::to_string).collect(),
            },
            credentials: &creds,
        };
        let mut spec = weir_job::parse_job(Path::new("job.toml"), text).unwrap();
        check_connectors(&mut spec, "acme", &rules)?;
        Ok(spec)
    }

    const BOTH: &[&str] = &["127.0.0.1:9092", "10.0.0.0/8:9093"];

    #[test]
    fn a_setting_off_the_allow_list_is_refused_at_its_line() {
        let text = job(
            "properties = { \"fetch.min.bytes\" = \"1\", \"plugin.library.paths\" = \"/tmp/evil.so\" }",
            "",
        );
        let e = check(&text, BOTH, &[]).unwrap_err().to_string();
        assert!(e.contains("job.toml:8"), "{e}");
        assert!(e.contains("source `in`"), "{e}");
        assert!(e.contains("`plugin.library.paths`"), "{e}");
        // In a sub-table too, and on a sink.
        let text = job(
            "",
            "[sink.out.properties]\n\"ssl.key.location\" = \"/etc/ssl/private/server.key\"\n",
        );
        let e = check(&text, BOTH, &[]).unwrap_err().to_string();
        assert!(
            e.contains("sink `out`") && e.contains("`ssl.key.location`"),
            "{e}"
        );
        // Tuning passes.
        let text = job(
            "properties = { \"fetch.min.bytes\" = \"1\" }",
            "properties = { \"linger.ms\" = \"5\" }",
        );
        check(&text, BOTH, &[]).unwrap();
    }

    #[test]
    fn every_address_must_be_granted() {
        let e = check(&job("", ""), &[], &[]).unwrap_err().to_string();
        assert!(e.contains("job.toml:6"), "{e}");
        assert!(e.contains("tenant `acme`, job `pay`"), "{e}");
        assert!(
            e.contains("source `in`") && e.contains("`127.0.0.1:9092` is not granted"),
            "{e}"
        );
        let e = check(&job("", ""), &["127.0.0.1:9092"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sink `out`") && e.contains("`10.1.2.3:9093`"),
            "{e}"
        );
        check(&job("", ""), BOTH, &[]).unwrap();
        // Every entry of a list.
        let text = job("", "").replace(
            "\"127.0.0.1:9092\"",
            "\"127.0.0.1:9092,169.254.169.254:80\"",
        );
        let e = check(&text, BOTH, &[]).unwrap_err().to_string();
        assert!(e.contains("`169.254.169.254:80`"), "{e}");
    }

    #[test]
    fn a_credential_must_be_granted_and_its_settings_are_added() {
        let text = job("credential = \"acme-kafka\"", "");
        let e = check(&text, BOTH, &[]).unwrap_err().to_string();
        assert!(
            e.contains("credential `acme-kafka` is not granted to tenant `acme`"),
            "{e}"
        );
        let e = check(&job("credential = \"other\"", ""), BOTH, &["acme-kafka"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("credential `other` is not granted"), "{e}");
        let spec = check(&text, BOTH, &["acme-kafka"]).unwrap();
        let weir_job::spec::SourceSpec::Kafka(o) = &spec.sources[0].spec else {
            panic!("a kafka source");
        };
        assert_eq!(o.properties["sasl.password"], "hunter2");
        assert_eq!(o.properties["ssl.ca.location"], "/etc/weir/ca.pem");
        // Resolved: the launcher does not see a credential to refuse.
        assert_eq!(o.credential, None);
        // A secret in the job file itself is refused.
        let e = check(
            &job("properties = { \"sasl.password\" = \"x\" }", ""),
            BOTH,
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("credential"), "{e}");
    }

    #[test]
    fn consumer_groups_and_transactional_ids_are_the_tenants_own() {
        let spec = check(&job("", ""), BOTH, &[]).unwrap();
        let weir_job::spec::SourceSpec::Kafka(src) = &spec.sources[0].spec else {
            panic!("a kafka source");
        };
        let SinkKind::Kafka(sink) = &spec.sinks[0].spec.kind else {
            panic!("a kafka sink");
        };
        assert_eq!(src.group_id.as_deref(), Some("acme.weir-pay-in"));
        assert_eq!(
            sink.transactional_id_prefix.as_deref(),
            Some("acme.weir-pay-out")
        );
        // Naming another tenant's group or ids yields ids under one's own.
        let spec = check(
            &job(
                "group_id = \"globex.weir-pay-in\"",
                "transactional_id_prefix = \"globex\"",
            ),
            BOTH,
            &[],
        )
        .unwrap();
        let weir_job::spec::SourceSpec::Kafka(src) = &spec.sources[0].spec else {
            panic!("a kafka source");
        };
        let SinkKind::Kafka(sink) = &spec.sinks[0].spec.kind else {
            panic!("a kafka sink");
        };
        assert_eq!(src.group_id.as_deref(), Some("acme.globex.weir-pay-in"));
        assert_eq!(sink.transactional_id_prefix.as_deref(), Some("acme.globex"));
    }
}
