//! The gRPC services over [`Server`]: authentication, request checks, and
//! the conversion between stored records and messages. Work that blocks
//! (RocksDB, compiling a component, waiting for a job) runs on tokio's
//! blocking pool.

use std::sync::Arc;

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::jobs::{JobRecord, LiveJob};
use weir_sandbox::upload::{Upload, UploadError};

use crate::proto::{self, jobs_server, modules_server, tenants_server, upload_module_request};
use crate::{Grants, ModuleRecord, Principal, Quotas, Server, ServerError, TenantRecord};

/// The three services, sharing one [`Server`].
#[derive(Clone)]
pub struct Api {
    server: Server,
}

impl Api {
    /// The services over `server`.
    pub fn new(server: Server) -> Self {
        Self { server }
    }

    fn principal<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let header = req.metadata().get("authorization");
        let token = match header.map(|v| v.to_str()) {
            None => None,
            Some(Ok(v)) => Some(v.strip_prefix("Bearer ").unwrap_or(v).to_string()),
            Some(Err(_)) => {
                return Err(Status::unauthenticated(
                    "the authorization header is not text",
                ));
            }
        };
        Ok(self.server.authenticate(token.as_deref())?)
    }

    /// The calling tenant; the admin token is refused.
    fn tenant<T>(&self, req: &Request<T>) -> Result<String, Status> {
        match self.principal(req)? {
            Principal::Tenant(t) => Ok(t),
            Principal::Admin => Err(Status::permission_denied(
                "the admin token manages tenants only; call with a tenant's token",
            )),
        }
    }

    fn admin<T>(&self, req: &Request<T>) -> Result<(), Status> {
        match self.principal(req)? {
            Principal::Admin => Ok(()),
            Principal::Tenant(t) => Err(Status::permission_denied(format!(
                "tenant `{t}` may not manage tenants: that takes the admin token"
            ))),
        }
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Status::from),
        Err(e) => Err(Status::internal(format!("the call failed: {e}"))),
    }
}

fn quotas_to_proto(q: &Quotas) -> proto::Quotas {
    proto::Quotas {
        max_modules: q.max_modules,
        max_module_bytes: q.max_module_bytes,
        max_jobs: q.max_jobs,
        max_parallelism: q.max_parallelism,
        max_memory_mb: q.max_memory_mb,
        max_cpu_deadline_ms: q.max_cpu_deadline_ms,
        max_state_bytes: q.max_state_bytes,
        cpu_shares: q.cpu_shares,
    }
}

fn quotas_from_proto(q: Option<proto::Quotas>) -> Quotas {
    let q = q.unwrap_or_default();
    Quotas {
        max_modules: q.max_modules,
        max_module_bytes: q.max_module_bytes,
        max_jobs: q.max_jobs,
        max_parallelism: q.max_parallelism,
        max_memory_mb: q.max_memory_mb,
        max_cpu_deadline_ms: q.max_cpu_deadline_ms,
        max_state_bytes: q.max_state_bytes,
        cpu_shares: q.cpu_shares,
    }
}

fn tenant_to_proto(server: &Server, t: &TenantRecord) -> Result<proto::Tenant, ServerError> {
    let (modules, module_bytes, running_jobs, parallelism) = server.usage(&t.name)?;
    Ok(proto::Tenant {
        name: t.name.clone(),
        quotas: Some(quotas_to_proto(&t.quotas)),
        usage: Some(proto::Usage {
            modules,
            module_bytes,
            running_jobs,
            parallelism,
        }),
        created_ms: t.created_ms,
        grants: Some(proto::Grants {
            egress: t.grants.egress.clone(),
            credentials: t.grants.credentials.clone(),
        }),
    })
}

fn grants_from_proto(g: Option<proto::Grants>) -> Grants {
    let g = g.unwrap_or_default();
    Grants {
        egress: g.egress,
        credentials: g.credentials,
    }
}

fn module_to_proto(server: &Server, m: &ModuleRecord) -> proto::Module {
    proto::Module {
        name: m.name.clone(),
        version: m.version.clone(),
        digest: m.digest.clone(),
        size: m.size,
        kind: m.kind.clone(),
        world: m.world.clone(),
        imports: m.imports.clone(),
        exports: m.exports.clone(),
        uploaded_ms: m.uploaded_ms,
        used_by: server.jobs_using(&m.tenant, &m.id()),
    }
}

/// A job as a message, with live per-operator figures when it runs (or ran)
/// in this process.
pub fn job_to_proto(r: &JobRecord, live: Option<&Arc<LiveJob>>) -> proto::Job {
    let snapshot = live.and_then(|l| l.snapshot());
    let (operators, last_checkpoint, last_checkpoint_bytes) = match snapshot {
        None => (Vec::new(), 0, 0),
        Some((nodes, id, size)) => (
            nodes
                .iter()
                .map(|n| {
                    let total = (n.busy + n.backpressured).as_secs_f64();
                    proto::Operator {
                        name: n.name.clone(),
                        role: n.role.to_string(),
                        parallelism: n.parallelism as u32,
                        records_in: n.records_in,
                        records_out: n.records_out,
                        backpressure: if total > 0.0 {
                            n.backpressured.as_secs_f64() / total
                        } else {
                            0.0
                        },
                        watermark: n.watermark,
                    }
                })
                .collect(),
            id,
            size,
        ),
    };
    let sum = |role: &str, f: fn(&proto::Operator) -> u64| {
        operators
            .iter()
            .filter(|o| o.role == role)
            .map(f)
            .sum::<u64>()
    };
    proto::Job {
        id: r.id.clone(),
        name: r.name.clone(),
        state: r.state.name().to_string(),
        error: r.error.clone(),
        submitted_ms: r.submitted_ms,
        parallelism: r.parallelism,
        records_read: sum("source", |o| o.records_out),
        records_written: sum("sink", |o| o.records_in),
        last_checkpoint,
        last_checkpoint_bytes,
        restarts: r.restarts,
        savepoint: r.savepoint.clone(),
        modules: r.operators.clone().into_iter().collect(),
        operators,
        history: r.history.iter().map(upgrade_to_proto).collect(),
    }
}

fn upgrade_to_proto(u: &crate::jobs::Upgrade) -> proto::Upgrade {
    proto::Upgrade {
        at_ms: u.at_ms,
        operator: u.operator.clone(),
        from: u.from.clone(),
        to: u.to.clone(),
        savepoint: u.savepoint.clone(),
        pause_ms: u.pause_ms,
        by: u.by.clone(),
        outcome: u.outcome.clone(),
        reason: u.reason.clone(),
        rollback: u.rollback,
    }
}

#[tonic::async_trait]
impl tenants_server::Tenants for Api {
    async fn create_tenant(
        &self,
        req: Request<proto::CreateTenantRequest>,
    ) -> Result<Response<proto::CreateTenantResponse>, Status> {
        self.admin(&req)?;
        let server = self.server.clone();
        let r = req.into_inner();
        blocking(move || {
            let (t, token) = server.create_tenant(
                &r.name,
                quotas_from_proto(r.quotas),
                grants_from_proto(r.grants),
            )?;
            Ok(proto::CreateTenantResponse {
                tenant: Some(tenant_to_proto(&server, &t)?),
                token,
            })
        })
        .await
        .map(Response::new)
    }

    async fn list_tenants(
        &self,
        req: Request<proto::ListTenantsRequest>,
    ) -> Result<Response<proto::ListTenantsResponse>, Status> {
        self.admin(&req)?;
        let server = self.server.clone();
        blocking(move || {
            let tenants = server
                .list_tenants()?
                .iter()
                .map(|t| tenant_to_proto(&server, t))
                .collect::<Result<_, _>>()?;
            Ok(proto::ListTenantsResponse { tenants })
        })
        .await
        .map(Response::new)
    }

    async fn set_tenant_grants(
        &self,
        req: Request<proto::SetTenantGrantsRequest>,
    ) -> Result<Response<proto::Tenant>, Status> {
        self.admin(&req)?;
        let server = self.server.clone();
        let r = req.into_inner();
        blocking(move || {
            let t = server.set_tenant_grants(&r.name, grants_from_proto(r.grants))?;
            tenant_to_proto(&server, &t)
        })
        .await
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl modules_server::Modules for Api {
    async fn upload_module(
        &self,
        req: Request<Streaming<proto::UploadModuleRequest>>,
    ) -> Result<Response<proto::Module>, Status> {
        let tenant = self.tenant(&req)?;
        let limit = self.server.config().max_upload_bytes;
        let mut stream = req.into_inner();
        let header = match stream.next().await {
            Some(Ok(proto::UploadModuleRequest {
                part: Some(upload_module_request::Part::Header(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "an upload starts with a header (name, version, size) before the file's chunks",
                ));
            }
        };
        let refused = |e: UploadError| match e {
            UploadError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        };
        let mut upload =
            Upload::start(&header.name, &header.version, header.size, limit).map_err(refused)?;
        while let Some(part) = stream.next().await {
            match part?.part {
                Some(upload_module_request::Part::Chunk(c)) => {
                    upload.chunk(&c).map_err(refused)?;
                }
                _ => return Err(refused(upload.second_header())),
            }
        }
        let bytes = upload.finish().map_err(refused)?;
        let server = self.server.clone();
        blocking(move || {
            let m = server.upload_module(&tenant, &header.name, &header.version, &bytes)?;
            Ok(module_to_proto(&server, &m))
        })
        .await
        .map(Response::new)
    }

    async fn list_modules(
        &self,
        req: Request<proto::ListModulesRequest>,
    ) -> Result<Response<proto::ListModulesResponse>, Status> {
        let tenant = self.tenant(&req)?;
        let server = self.server.clone();
        blocking(move || {
            let modules = server
                .list_modules(&tenant)?
                .iter()
                .map(|m| module_to_proto(&server, m))
                .collect();
            Ok(proto::ListModulesResponse { modules })
        })
        .await
        .map(Response::new)
    }

    async fn inspect_module(
        &self,
        req: Request<proto::ModuleRef>,
    ) -> Result<Response<proto::Module>, Status> {
        let tenant = self.tenant(&req)?;
        let server = self.server.clone();
        let r = req.into_inner();
        blocking(move || {
            let m = server.inspect_module(&tenant, &r.name, &r.version)?;
            Ok(module_to_proto(&server, &m))
        })
        .await
        .map(Response::new)
    }

    async fn delete_module(
        &self,
        req: Request<proto::ModuleRef>,
    ) -> Result<Response<proto::DeleteModuleResponse>, Status> {
        let tenant = self.tenant(&req)?;
        let server = self.server.clone();
        let r = req.into_inner();
        blocking(move || {
            let m = server.delete_module(&tenant, &r.name, &r.version)?;
            Ok(proto::DeleteModuleResponse {
                module: Some(module_to_proto(&server, &m)),
            })
        })
        .await
        .map(Response::new)
    }
}

#[tonic::async_trait]
impl jobs_server::Jobs for Api {
    async fn submit_job(
        &self,
        req: Request<proto::SubmitJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        let tenant = self.tenant(&req)?;
        let server = self.server.clone();
        let r = req.into_inner();
        blocking(move || {
            let (record, live) = server.submit_job(&tenant, &r.job_file, &r.from_savepoint)?;
            Ok(job_to_proto(&record, live.as_ref()))
        })
        .await
        .map(Response::new)
    }

    async fn list_jobs(
        &self,
        req: Request<proto::ListJobsRequest>,
    ) -> Result<Response<proto::ListJobsResponse>, Status> {
        let tenant = self.tenant(&req)?;
        let server = self.server.clone();
        blocking(move || {
            let jobs = server
                .list_jobs(&tenant)?
                .iter()
                .map(|(r, l)| job_to_proto(r, l.as_ref()))
                .collect();
            Ok(proto::ListJobsResponse { jobs })
        })
        .await
        .map(Response::new)
    }

    async fn get_job(&self, req: Request<proto::JobRef>) -> Result<Response<proto::Job>, Status> {
        let tenant = self.tenant(&req)?;
        let server = self.server.clone();
        let r = req.into_inner();
        blocking(move || {
            let (record, live) = server.get_job(&tenant, &r.id)?;
            Ok(job_to_proto(&record, live.as_ref()))
        })
        .await
        .map(Response::new)
    }

    async fn cancel_job(
        &self,
        req: Request<proto::CancelJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        let tenant = self.tenant(&req)?;
        let server = self.server.clone();
        let r = req.into_inner();
        blocking(move || {
            let (record, live) = server.cancel_job(&tenant, &r.id, r.savepoint)?;
            Ok(job_to_proto(&record, live.as_ref()))
        })
        .await
        .map(Response::new)
    }

    async fn trigger_savepoint(
        &self,
        req: Request<proto::JobRef>,
    ) -> Result<Response<proto::Savepoint>, Status> {
        let tenant = self.tenant(&req)?;
        let server = self.server.clone();
        let r = req.into_inner();
        blocking(move || {
            let id = server.trigger_savepoint(&tenant, &r.id)?;
            Ok(proto::Savepoint {
                id,
                job_id: r.id,
                created_ms: crate::now_ms(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn upgrade_job(
        &self,
        req: Request<proto::UpgradeJobRequest>,
    ) -> Result<Response<proto::UpgradeJobResponse>, Status> {
        let tenant = self.tenant(&req)?;
        let server = self.server.clone();
        let r = req.into_inner();
        blocking(move || {
            let mut probation = crate::jobs::Probation::default();
            if r.probation_records > 0 {
                probation.records = r.probation_records;
            }
            if r.probation_ms > 0 {
                probation.time = std::time::Duration::from_millis(r.probation_ms);
            }
            let ((record, live), upgrade) =
                server.upgrade_job(&tenant, &r.id, &r.operator, &r.module, &r.by, probation)?;
            Ok(proto::UpgradeJobResponse {
                job: Some(job_to_proto(&record, live.as_ref())),
                upgrade: Some(upgrade_to_proto(&upgrade)),
            })
        })
        .await
        .map(Response::new)
    }

    async fn list_savepoints(
        &self,
        req: Request<proto::JobRef>,
    ) -> Result<Response<proto::ListSavepointsResponse>, Status> {
        let tenant = self.tenant(&req)?;
        let server = self.server.clone();
        let r = req.into_inner();
        blocking(move || {
            let savepoints = server
                .list_savepoints(&tenant, &r.id)?
                .into_iter()
                .map(|(id, created_ms)| proto::Savepoint {
                    id,
                    job_id: r.id.clone(),
                    created_ms,
                })
                .collect();
            Ok(proto::ListSavepointsResponse { savepoints })
        })
        .await
        .map(Response::new)
    }
}

/// Serves the API (with reflection) on `listener` until `shutdown`
/// resolves, then stops the jobs without changing their stored state.
///
/// # Errors
/// When the transport fails.
pub async fn serve(
    server: Server,
    listener: tokio::net::TcpListener,
    tls: Option<&crate::tls::Identity>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let api = Api::new(server.clone());
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Internal(format!("reflection: {e}")))?;
    // The state quota is checked once a second.
    let watcher = server.clone();
    let watch = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let s = watcher.clone();
            let _ = tokio::task::spawn_blocking(move || s.enforce_state_quota()).await;
        }
    });
    let limit = server.config().max_upload_bytes as usize + (1 << 20);
    let mut builder = tonic::transport::Server::builder();
    if let Some(id) = tls {
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(
                tonic::transport::Identity::from_pem(&id.cert_pem, &id.key_pem),
            ))
            .map_err(|e| ServerError::Internal(format!("TLS: {e}")))?;
    }
    let result = builder
        .add_service(reflection)
        .add_service(tenants_server::TenantsServer::new(api.clone()))
        .add_service(
            modules_server::ModulesServer::new(api.clone()).max_decoding_message_size(limit),
        )
        .add_service(jobs_server::JobsServer::new(api))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
        .map_err(|e| ServerError::Internal(format!("gRPC server: {e}")));
    watch.abort();
    let s = server.clone();
    let _ = tokio::task::spawn_blocking(move || s.detach_jobs()).await;
    result
}
