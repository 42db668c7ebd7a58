//! The commands that call a `weir serve`: `weir tenant …`, `weir job …`, and
//! the registry half of `weir udf …` (upload, list, inspect, rm).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use weir_server::proto;

use crate::client::{Client, Connect, failed, print_json};

/// `weir tenant …` (admin token).
#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its API token once.
    Create {
        /// Name: lowercase letters, digits and `-`.
        name: String,
        /// Quota: module versions [default: the server's].
        #[arg(long)]
        max_modules: Option<u32>,
        /// Quota: bytes of all module versions.
        #[arg(long)]
        max_module_bytes: Option<u64>,
        /// Quota: running jobs.
        #[arg(long)]
        max_jobs: Option<u32>,
        /// Quota: subtasks of all running jobs.
        #[arg(long)]
        max_parallelism: Option<u32>,
        /// Quota: memory of one guest instance, MiB.
        #[arg(long)]
        max_memory_mb: Option<u32>,
        /// Quota: time of one guest call, ms.
        #[arg(long)]
        max_cpu_deadline_ms: Option<u32>,
        /// Quota: size of one job's latest checkpoint, bytes.
        #[arg(long)]
        max_state_bytes: Option<u64>,
        /// The tenant's weight when tenants compete for the CPU
        /// [default: 100].
        #[arg(long)]
        cpu_shares: Option<u32>,
        #[command(flatten)]
        grants: GrantArgs,
        #[command(flatten)]
        conn: Connect,
    },
    /// Replace what a tenant's jobs may reach beyond the sandbox (addresses
    /// and credentials); what is not given is no longer granted.
    Grant {
        /// The tenant.
        name: String,
        #[command(flatten)]
        grants: GrantArgs,
        #[command(flatten)]
        conn: Connect,
    },
    /// List tenants with their quotas and usage.
    List {
        #[command(flatten)]
        conn: Connect,
    },
}

/// What the admin grants a tenant; nothing by default.
#[derive(clap::Args)]
pub struct GrantArgs {
    /// An address its connectors may reach, as HOST:PORT: an IP address, a
    /// network (10.0.0.0/8), a host name, `*.domain`, or `*` (public
    /// addresses only); a port, a range (9092-9094) or `*`. Repeat for more.
    #[arg(long = "egress", value_name = "HOST:PORT")]
    egress: Vec<String>,
    /// A credential of the server's `--credentials` file its Kafka nodes
    /// may name (`credential = "NAME"`). Repeat for more.
    #[arg(long = "credential", value_name = "NAME")]
    credentials: Vec<String>,
}

impl GrantArgs {
    fn to_proto(&self) -> proto::Grants {
        proto::Grants {
            egress: self.egress.clone(),
            credentials: self.credentials.clone(),
        }
    }
}

/// `weir job …` (a tenant's token).
#[derive(Subcommand)]
pub enum JobCommand {
    /// Submit a job file whose operators name registry modules.
    Submit {
        /// The job file (TOML).
        file: PathBuf,
        /// Start from this savepoint (`JOB/sp-N`).
        #[arg(long, value_name = "SAVEPOINT")]
        from_savepoint: Option<String>,
        #[command(flatten)]
        conn: Connect,
    },
    /// List the tenant's jobs.
    List {
        #[command(flatten)]
        conn: Connect,
    },
    /// A job's state and per-operator figures.
    Status {
        /// Job id.
        id: String,
        #[command(flatten)]
        conn: Connect,
    },
    /// Stop a job (with --savepoint: take a savepoint first).
    Cancel {
        /// Job id.
        id: String,
        /// Take a savepoint first; cancel only if it succeeds.
        #[arg(long)]
        savepoint: bool,
        #[command(flatten)]
        conn: Connect,
    },
    /// Take a savepoint of a running job; prints its id.
    Savepoint {
        /// Job id.
        id: String,
        #[command(flatten)]
        conn: Connect,
    },
    /// List a job's savepoints.
    Savepoints {
        /// Job id.
        id: String,
        #[command(flatten)]
        conn: Connect,
    },
    /// Swap one operator of a running job to another module version:
    /// savepoint, stop, restart from it with the new module, and watch it
    /// on probation; if it fails then, the job goes back to the savepoint
    /// with the previous module (exit status 1).
    Upgrade {
        /// Job id.
        id: String,
        /// The operator to swap.
        #[arg(long)]
        operator: String,
        /// The new module: `NAME@VERSION`, or `NAME` for the newest.
        #[arg(long, value_name = "NAME@VERSION")]
        udf: String,
        /// Probation: records into the operator before the new version is
        /// kept (default: the server's, 10000).
        #[arg(long, default_value_t = 0)]
        probation_records: u64,
        /// Probation: longest watch, in ms (default: the server's, 10000).
        #[arg(long, default_value_t = 0)]
        probation_ms: u64,
        /// Who asks, for the job's history (default: `$USER`).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        conn: Connect,
    },
    /// A job's upgrades: module versions, savepoints, pauses.
    History {
        /// Job id.
        id: String,
        #[command(flatten)]
        conn: Connect,
    },
    /// Submit a job file starting from a savepoint (`JOB/sp-N`).
    Restore {
        /// The savepoint.
        savepoint: String,
        /// The job file (the same, or a new version of it).
        file: PathBuf,
        #[command(flatten)]
        conn: Connect,
    },
}

/// Runs a `weir tenant` command.
pub fn tenant(cmd: TenantCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TenantCommand::Create {
            name,
            max_modules,
            max_module_bytes,
            max_jobs,
            max_parallelism,
            max_memory_mb,
            max_cpu_deadline_ms,
            max_state_bytes,
            cpu_shares,
            grants,
            conn,
        } => {
            let c = Client::connect(&conn)?;
            let quotas = proto::Quotas {
                max_modules: max_modules.unwrap_or(0),
                max_module_bytes: max_module_bytes.unwrap_or(0),
                max_jobs: max_jobs.unwrap_or(0),
                max_parallelism: max_parallelism.unwrap_or(0),
                max_memory_mb: max_memory_mb.unwrap_or(0),
                max_cpu_deadline_ms: max_cpu_deadline_ms.unwrap_or(0),
                max_state_bytes: max_state_bytes.unwrap_or(0),
                cpu_shares: cpu_shares.unwrap_or(0),
            };
            let r = c
                .block_on(
                    c.tenants()
                        .create_tenant(c.request(proto::CreateTenantRequest {
                            name,
                            quotas: Some(quotas),
                            grants: Some(grants.to_proto()),
                        })),
                )
                .map_err(failed)?
                .into_inner();
            let t = r.tenant.unwrap_or_default();
            if c.json {
                print_json(&json!({"tenant": tenant_json(&t), "token": r.token}));
            } else {
                println!("tenant `{}` created", t.name);
                println!("token: {}", r.token);
                eprintln!("(shown once: the server keeps only its hash)");
            }
        }
        TenantCommand::Grant { name, grants, conn } => {
            let c = Client::connect(&conn)?;
            let t =
                c.block_on(c.tenants().set_tenant_grants(c.request(
                    proto::SetTenantGrantsRequest {
                        name,
                        grants: Some(grants.to_proto()),
                    },
                )))
                .map_err(failed)?
                .into_inner();
            if c.json {
                print_json(&tenant_json(&t));
            } else {
                let g = t.grants.unwrap_or_default();
                let list = |v: &[String]| {
                    if v.is_empty() {
                        "none".to_string()
                    } else {
                        v.join(", ")
                    }
                };
                println!("tenant `{}` may reach: {}", t.name, list(&g.egress));
                println!(
                    "tenant `{}` may use credentials: {}",
                    t.name,
                    list(&g.credentials)
                );
            }
        }
        TenantCommand::List { conn } => {
            let c = Client::connect(&conn)?;
            let r = c
                .block_on(
                    c.tenants()
                        .list_tenants(c.request(proto::ListTenantsRequest {})),
                )
                .map_err(failed)?
                .into_inner();
            if c.json {
                print_json(&Value::Array(r.tenants.iter().map(tenant_json).collect()));
            } else {
                println!(
                    "{:<20} {:>9} {:>12} {:>6} {:>12} {:>10}",
                    "TENANT", "MODULES", "MODULE MB", "JOBS", "SUBTASKS", "CPU SHARES"
                );
                for t in &r.tenants {
                    let u = t.usage.unwrap_or_default();
                    let q = t.quotas.unwrap_or_default();
                    println!(
                        "{:<20} {:>9} {:>12} {:>6} {:>12} {:>10}",
                        t.name,
                        format!("{}/{}", u.modules, q.max_modules),
                        format!("{}/{}", u.module_bytes >> 20, q.max_module_bytes >> 20),
                        format!("{}/{}", u.running_jobs, q.max_jobs),
                        format!("{}/{}", u.parallelism, q.max_parallelism),
                        q.cpu_shares,
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tenant_json(t: &proto::Tenant) -> Value {
    let q = t.quotas.unwrap_or_default();
    let u = t.usage.unwrap_or_default();
    let g = t.grants.clone().unwrap_or_default();
    json!({
        "name": t.name,
        "created_ms": t.created_ms,
        "grants": {"egress": g.egress, "credentials": g.credentials},
        "quotas": {
            "max_modules": q.max_modules,
            "max_module_bytes": q.max_module_bytes,
            "max_jobs": q.max_jobs,
            "max_parallelism": q.max_parallelism,
            "max_memory_mb": q.max_memory_mb,
            "max_cpu_deadline_ms": q.max_cpu_deadline_ms,
            "max_state_bytes": q.max_state_bytes,
            "cpu_shares": q.cpu_shares,
        },
        "usage": {
            "modules": u.modules,
            "module_bytes": u.module_bytes,
            "running_jobs": u.running_jobs,
            "parallelism": u.parallelism,
        },
    })
}

/// Module json.
pub fn module_json(m: &proto::Module) -> Value {
    json!({
        "name": m.name,
        "version": m.version,
        "digest": m.digest,
        "size": m.size,
        "kind": m.kind,
        "world": m.world,
        "imports": m.imports,
        "exports": m.exports,
        "uploaded_ms": m.uploaded_ms,
        "used_by": m.used_by,
    })
}

fn job_json(j: &proto::Job) -> Value {
    json!({
        "id": j.id,
        "name": j.name,
        "state": j.state,
        "error": j.error,
        "submitted_ms": j.submitted_ms,
        "parallelism": j.parallelism,
        "records_read": j.records_read,
        "records_written": j.records_written,
        "last_checkpoint": j.last_checkpoint,
        "last_checkpoint_bytes": j.last_checkpoint_bytes,
        "restarts": j.restarts,
        "savepoint": j.savepoint,
        "modules": j.modules,
        "history": j.history.iter().map(upgrade_json).collect::<Vec<_>>(),
        "operators": j.operators.iter().map(|o| json!({
            "name": o.name,
            "role": o.role,
            "parallelism": o.parallelism,
            "records_in": o.records_in,
            "records_out": o.records_out,
            "backpressure": o.backpressure,
            "watermark": o.watermark,
        })).collect::<Vec<_>>(),
    })
}

fn upgrade_json(u: &proto::Upgrade) -> Value {
    json!({
        "at_ms": u.at_ms,
        "operator": u.operator,
        "from": u.from,
        "to": u.to,
        "savepoint": u.savepoint,
        "pause_ms": u.pause_ms,
        "by": u.by,
        "outcome": u.outcome,
        "reason": u.reason,
        "rollback": u.rollback,
    })
}

fn print_job(j: &proto::Job) {
    println!("job {} ({}): {}", j.id, j.name, j.state);
    if !j.error.is_empty() {
        println!("  error: {}", j.error);
    }
    println!(
        "  read {}, written {}, subtasks {}, restarts {}",
        j.records_read, j.records_written, j.parallelism, j.restarts
    );
    if j.last_checkpoint > 0 {
        println!(
            "  last checkpoint {} ({} bytes)",
            j.last_checkpoint, j.last_checkpoint_bytes
        );
    }
    if !j.savepoint.is_empty() {
        println!("  savepoint {}", j.savepoint);
    }
    for (op, m) in &j.modules {
        println!("  module {op}: {m}");
    }
    if !j.operators.is_empty() {
        println!(
            "  {:<20} {:<8} {:>4} {:>12} {:>12} {:>6} WATERMARK",
            "OPERATOR", "ROLE", "PAR", "IN", "OUT", "BP"
        );
        for o in &j.operators {
            println!(
                "  {:<20} {:<8} {:>4} {:>12} {:>12} {:>5.0}% {}",
                o.name,
                o.role,
                o.parallelism,
                o.records_in,
                o.records_out,
                o.backpressure * 100.0,
                crate::progress::watermark(o.watermark)
            );
        }
    }
}

fn read_file(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file)
        .with_context(|| format!("cannot read job file `{}`", file.display()))
}

/// Runs a `weir job` command.
pub fn job(cmd: JobCommand) -> anyhow::Result<ExitCode> {
    let show = |c: &Client, j: &proto::Job| {
        if c.json {
            print_json(&job_json(j));
        } else {
            print_job(j);
        }
    };
    match cmd {
        JobCommand::Submit {
            file,
            from_savepoint,
            conn,
        } => submit(&file, from_savepoint.unwrap_or_default(), &conn, show),
        JobCommand::Restore {
            savepoint,
            file,
            conn,
        } => submit(&file, savepoint, &conn, show),
        JobCommand::Upgrade {
            id,
            operator,
            udf,
            probation_records,
            probation_ms,
            by,
            conn,
        } => {
            let c = Client::connect(&conn)?;
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_default();
            let r = c
                .block_on(c.jobs().upgrade_job(c.request(proto::UpgradeJobRequest {
                    id,
                    operator,
                    module: udf,
                    by,
                    probation_records,
                    probation_ms,
                })))
                .map_err(failed)?
                .into_inner();
            let u = r.upgrade.unwrap_or_default();
            let kept = u.outcome == "kept";
            if c.json {
                print_json(
                    &json!({"job": job_json(&r.job.unwrap_or_default()), "upgrade": upgrade_json(&u)}),
                );
            } else if kept {
                println!(
                    "operator `{}`: {} -> {} from savepoint {}; paused {} ms; kept after probation",
                    u.operator, u.from, u.to, u.savepoint, u.pause_ms
                );
            } else {
                eprintln!(
                    "operator `{}`: {} failed on probation and was rolled back; the job runs {} again from savepoint {}: {}",
                    u.operator, u.to, u.from, u.savepoint, u.reason
                );
            }
            Ok(if kept {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        JobCommand::History { id, conn } => {
            let c = Client::connect(&conn)?;
            let j = c
                .block_on(c.jobs().get_job(c.request(proto::JobRef { id })))
                .map_err(failed)?
                .into_inner();
            if c.json {
                print_json(&Value::Array(j.history.iter().map(upgrade_json).collect()));
            } else {
                for u in &j.history {
                    let what = if u.rollback { "back to" } else { "->" };
                    println!(
                        "{} {}: {} {what} {} by {} (savepoint {}, paused {} ms): {}{}",
                        u.at_ms,
                        u.operator,
                        u.from,
                        u.to,
                        u.by,
                        u.savepoint,
                        u.pause_ms,
                        u.outcome,
                        if u.reason.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", u.reason)
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::List { conn } => {
            let c = Client::connect(&conn)?;
            let r = c
                .block_on(c.jobs().list_jobs(c.request(proto::ListJobsRequest {})))
                .map_err(failed)?
                .into_inner();
            if c.json {
                print_json(&Value::Array(r.jobs.iter().map(job_json).collect()));
            } else {
                println!(
                    "{:<32} {:<20} {:<11} {:>12} {:>12}",
                    "ID", "NAME", "STATE", "READ", "WRITTEN"
                );
                for j in &r.jobs {
                    println!(
                        "{:<32} {:<20} {:<11} {:>12} {:>12}",
                        j.id, j.name, j.state, j.records_read, j.records_written
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Status { id, conn } => {
            let c = Client::connect(&conn)?;
            let j = c
                .block_on(c.jobs().get_job(c.request(proto::JobRef { id })))
                .map_err(failed)?
                .into_inner();
            show(&c, &j);
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Cancel {
            id,
            savepoint,
            conn,
        } => {
            let c = Client::connect(&conn)?;
            let j = c
                .block_on(
                    c.jobs()
                        .cancel_job(c.request(proto::CancelJobRequest { id, savepoint })),
                )
                .map_err(failed)?
                .into_inner();
            show(&c, &j);
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Savepoint { id, conn } => {
            let c = Client::connect(&conn)?;
            let s = c
                .block_on(c.jobs().trigger_savepoint(c.request(proto::JobRef { id })))
                .map_err(failed)?
                .into_inner();
            if c.json {
                print_json(&json!({"id": s.id, "job_id": s.job_id, "created_ms": s.created_ms}));
            } else {
                println!("{}", s.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Savepoints { id, conn } => {
            let c = Client::connect(&conn)?;
            let r = c
                .block_on(c.jobs().list_savepoints(c.request(proto::JobRef { id })))
                .map_err(failed)?
                .into_inner();
            if c.json {
                print_json(&Value::Array(
                    r.savepoints
                        .iter()
                        .map(
                            |s| json!({"id": s.id, "job_id": s.job_id, "created_ms": s.created_ms}),
                        )
                        .collect(),
                ));
            } else {
                for s in &r.savepoints {
                    println!("{}", s.id);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn submit(
    file: &Path,
    from_savepoint: String,
    conn: &Connect,
    show: impl Fn(&Client, &proto::Job),
) -> anyhow::Result<ExitCode> {
    let job_file = read_file(file)?;
    let c = Client::connect(conn)?;
    let j = c
        .block_on(c.jobs().submit_job(c.request(proto::SubmitJobRequest {
            job_file,
            from_savepoint,
        })))
        .map_err(|s| {
            // The server names lines of `job.toml`: say which file that is.
            let e = failed(s);
            anyhow::anyhow!(
                e.to_string()
                    .replace("job.toml:", &format!("{}:", file.display()))
            )
        })?
        .into_inner();
    show(&c, &j);
    Ok(ExitCode::SUCCESS)
}

/// The size of each upload message.
const CHUNK: usize = 256 << 10;

/// `weir udf upload FILE`.
pub fn upload(
    file: &Path,
    name: Option<String>,
    version: &str,
    conn: &Connect,
) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read `{}`", file.display()))?;
    let name = match name {
        Some(n) => n,
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .with_context(|| {
                format!(
                    "cannot name a module after `{}`; pass --name",
                    file.display()
                )
            })?,
    };
    let c = Client::connect(conn)?;
    let bar = crate::progress::upload_bar(bytes.len() as u64, &format!("{name}@{version}"), c.json);
    let header = proto::UploadModuleRequest {
        part: Some(proto::upload_module_request::Part::Header(
            proto::UploadHeader {
                name: name.clone(),
                version: version.to_string(),
                size: bytes.len() as u64,
            },
        )),
    };
    let mut parts = vec![header];
    for chunk in bytes.chunks(CHUNK) {
        parts.push(proto::UploadModuleRequest {
            part: Some(proto::upload_module_request::Part::Chunk(chunk.to_vec())),
        });
    }
    let progress = bar.clone();
    let stream = tokio_stream::iter(parts.into_iter().inspect(move |p| {
        if let Some(proto::upload_module_request::Part::Chunk(c)) = &p.part {
            progress.inc(c.len() as u64);
        }
    }));
    let result = c.block_on(c.modules(CHUNK * 2).upload_module(c.request(stream)));
    bar.finish_and_clear();
    let m = result.map_err(failed)?.into_inner();
    if c.json {
        print_json(&module_json(&m));
    } else {
        println!(
            "uploaded {}@{}: {} operator ({}), {} bytes, sha256 {}",
            m.name, m.version, m.kind, m.world, m.size, m.digest
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir udf list`.
pub fn list_modules(conn: &Connect) -> anyhow::Result<ExitCode> {
    let c = Client::connect(conn)?;
    let r = c
        .block_on(
            c.modules(CHUNK)
                .list_modules(c.request(proto::ListModulesRequest {})),
        )
        .map_err(failed)?
        .into_inner();
    if c.json {
        print_json(&Value::Array(r.modules.iter().map(module_json).collect()));
    } else {
        println!(
            "{:<32} {:<15} {:>10} {:<14} USED BY",
            "MODULE", "KIND", "BYTES", "SHA256"
        );
        for m in &r.modules {
            println!(
                "{:<32} {:<15} {:>10} {:<14} {}",
                format!("{}@{}", m.name, m.version),
                m.kind,
                m.size,
                &m.digest[..m.digest.len().min(12)],
                m.used_by.join(",")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn module_ref(spec: &str) -> proto::ModuleRef {
    let (name, version) = spec.split_once('@').unwrap_or((spec, ""));
    proto::ModuleRef {
        name: name.to_string(),
        version: version.to_string(),
    }
}

/// `weir udf inspect NAME[@VERSION]` against the registry.
pub fn inspect_module(spec: &str, conn: &Connect) -> anyhow::Result<ExitCode> {
    let c = Client::connect(conn)?;
    let m = c
        .block_on(c.modules(CHUNK).inspect_module(c.request(module_ref(spec))))
        .map_err(failed)?
        .into_inner();
    if c.json {
        print_json(&module_json(&m));
    } else {
        println!("{}@{}", m.name, m.version);
        println!("  kind     {}", m.kind);
        println!("  world    {}", m.world);
        println!("  size     {} bytes", m.size);
        println!("  sha256   {}", m.digest);
        println!("  imports  {}", m.imports.join(", "));
        println!("  exports  {}", m.exports.join(", "));
        if !m.used_by.is_empty() {
            println!("  used by  {}", m.used_by.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir udf rm NAME@VERSION`.
pub fn remove_module(spec: &str, conn: &Connect) -> anyhow::Result<ExitCode> {
    let r = module_ref(spec);
    if r.version.is_empty() {
        bail!("name the version to delete: `{spec}@VERSION`");
    }
    let c = Client::connect(conn)?;
    let m = c
        .block_on(c.modules(CHUNK).delete_module(c.request(r)))
        .map_err(failed)?
        .into_inner()
        .module
        .unwrap_or_default();
    if c.json {
        print_json(&module_json(&m));
    } else {
        println!("deleted {}@{}", m.name, m.version);
    }
    Ok(ExitCode::SUCCESS)
}
