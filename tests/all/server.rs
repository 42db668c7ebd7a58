//! The control plane over real gRPC on loopback: two tenants, every RPC,
//! the registry's checks, quotas, job lifecycle, and a server restart that
//! resumes a running job.

use std::path::Path;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use weir_server::proto::jobs_client::JobsClient;
use weir_server::proto::modules_client::ModulesClient;
use weir_server::proto::tenants_client::TenantsClient;
use weir_server::proto::{self, upload_module_request::Part};
use weir_server::{Server, ServerConfig};
use weir_tests::{canonical, sorted_lines};

/// A `weir serve` in this process, on a free loopback port.
struct TestServer {
    runtime: tokio::runtime::Runtime,
    server: Server,
    endpoint: String,
    admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    fn start(config: ServerConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let admin_file = config.data_dir.join("admin.token");
        let (server, _) = Server::open(config).unwrap();
        let admin = std::fs::read_to_string(admin_file)
            .unwrap()
            .trim()
            .to_string();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = server.clone();
        let done = runtime.spawn(async move {
            weir_server::api::serve(server, listener, None, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            runtime,
            server: handle,
            endpoint,
            admin,
            stop: Some(tx),
            done: Some(done),
        }
    }

    /// Stops serving; jobs stop without changing their stored state.
    fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            self.runtime.block_on(done).unwrap();
        }
    }

    fn channel(&self) -> Channel {
        self.runtime
            .block_on(
                Channel::from_shared(self.endpoint.clone())
                    .unwrap()
                    .connect(),
            )
            .unwrap()
    }

    fn as_(&self, token: &str) -> Caller<'_> {
        Caller {
            server: self,
            token: token.to_string(),
            channel: self.channel(),
        }
    }

    fn tenant(&self, name: &str, quotas: proto::Quotas) -> String {
        self.as_(&self.admin.clone())
            .create_tenant(name, quotas)
            .unwrap()
            .token
    }
}

/// Calls with one token.
struct Caller<'a> {
    server: &'a TestServer,
    token: String,
    channel: Channel,
}

impl Caller<'_> {
    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if !self.token.is_empty() {
            r.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", self.token).parse().unwrap(),
            );
        }
        r
    }

    fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        self.server.runtime.block_on(f)
    }

    fn create_tenant(
        &self,
        name: &str,
        quotas: proto::Quotas,
    ) -> Result<proto::CreateTenantResponse, Status> {
        let mut c = TenantsClient::new(self.channel.clone());
        self.run(c.create_tenant(self.req(proto::CreateTenantRequest {
            name: name.into(),
            quotas: Some(quotas),
            grants: None,
        })))
        .map(tonic::Response::into_inner)
    }

    fn set_grants(
        &self,
        name: &str,
        egress: &[&str],
        credentials: &[&str],
    ) -> Result<proto::Tenant, Status> {
        let mut c = TenantsClient::new(self.channel.clone());
        self.run(c.set_tenant_grants(self.req(proto::SetTenantGrantsRequest {
            name: name.into(),
            grants: Some(proto::Grants {
                egress: egress.iter().map(ToString::to_string).collect(),
                credentials: credentials.iter().map(ToString::to_string).collect(),
            }),
        })))
        .map(tonic::Response::into_inner)
    }

    fn list_tenants(&self) -> Result<Vec<proto::Tenant>, Status> {
        let mut c = TenantsClient::new(self.channel.clone());
        self.run(c.list_tenants(self.req(proto::ListTenantsRequest {})))
            .map(|r| r.into_inner().tenants)
    }

    fn upload_parts(
        &self,
        parts: Vec<proto::UploadModuleRequest>,
    ) -> Result<proto::Module, Status> {
        let mut c = ModulesClient::new(self.channel.clone());
        self.run(c.upload_module(self.req(tokio_stream::iter(parts))))
            .map(tonic::Response::into_inner)
    }

    fn upload(&self, name: &str, version: &str, bytes: &[u8]) -> Result<proto::Module, Status> {
        let mut parts = vec![header(name, version, bytes.len() as u64)];
        parts.extend(bytes.chunks(64 << 10).map(|c| proto::UploadModuleRequest {
            part: Some(Part::Chunk(c.to_vec())),
        }));
        self.upload_parts(parts)
    }

    /// Upgrades `operator` of job `job` to `module`, asked by `ops-bot`,
    /// with a probation of `records` records or `ms` milliseconds.
    fn upgrade(
        &self,
        job: &str,
        operator: &str,
        module: &str,
        records: u64,
        ms: u64,
    ) -> Result<proto::UpgradeJobResponse, Status> {
        let mut c = JobsClient::new(self.channel.clone());
        self.run(c.upgrade_job(self.req(proto::UpgradeJobRequest {
            id: job.into(),
            operator: operator.into(),
            module: module.into(),
            by: "ops-bot".into(),
            probation_records: records,
            probation_ms: ms,
        })))
        .map(tonic::Response::into_inner)
    }

    fn list_modules(&self) -> Result<Vec<proto::Module>, Status> {
        let mut c = ModulesClient::new(self.channel.clone());
        self.run(c.list_modules(self.req(proto::ListModulesRequest {})))
            .map(|r| r.into_inner().modules)
    }

    fn inspect(&self, name: &str, version: &str) -> Result<proto::Module, Status> {
        let mut c = ModulesClient::new(self.channel.clone());
        self.run(c.inspect_module(self.req(module_ref(name, version))))
            .map(tonic::Response::into_inner)
    }

    fn delete(&self, name: &str, version: &str) -> Result<proto::DeleteModuleResponse, Status> {
        let mut c = ModulesClient::new(self.channel.clone());
        self.run(c.delete_module(self.req(module_ref(name, version))))
            .map(tonic::Response::into_inner)
    }

    fn submit(&self, job_file: &str, from_savepoint: &str) -> Result<proto::Job, Status> {
        let mut c = JobsClient::new(self.channel.clone());
        self.run(c.submit_job(self.req(proto::SubmitJobRequest {
            job_file: job_file.into(),
            from_savepoint: from_savepoint.into(),
        })))
        .map(tonic::Response::into_inner)
    }

    fn list_jobs(&self) -> Result<Vec<proto::Job>, Status> {
        let mut c = JobsClient::new(self.channel.clone());
        self.run(c.list_jobs(self.req(proto::ListJobsRequest {})))
            .map(|r| r.into_inner().jobs)
    }

    fn job(&self, id: &str) -> Result<proto::Job, Status> {
        let mut c = JobsClient::new(self.channel.clone());
        self.run(c.get_job(self.req(proto::JobRef { id: id.into() })))
            .map(tonic::Response::into_inner)
    }

    fn cancel(&self, id: &str, savepoint: bool) -> Result<proto::Job, Status> {
        let mut c = JobsClient::new(self.channel.clone());
        self.run(c.cancel_job(self.req(proto::CancelJobRequest {
            id: id.into(),
            savepoint,
        })))
        .map(tonic::Response::into_inner)
    }

    fn savepoint(&self, id: &str) -> Result<proto::Savepoint, Status> {
        let mut c = JobsClient::new(self.channel.clone());
        self.run(c.trigger_savepoint(self.req(proto::JobRef { id: id.into() })))
            .map(tonic::Response::into_inner)
    }

    fn savepoints(&self, id: &str) -> Result<Vec<proto::Savepoint>, Status> {
        let mut c = JobsClient::new(self.channel.clone());
        self.run(c.list_savepoints(self.req(proto::JobRef { id: id.into() })))
            .map(|r| r.into_inner().savepoints)
    }

    /// Polls the job until `done` says so.
    fn wait_for(&self, id: &str, what: &str, done: impl Fn(&proto::Job) -> bool) -> proto::Job {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let j = self.job(id).unwrap();
            if done(&j) {
                return j;
            }
            assert!(
                Instant::now() < deadline,
                "job {id}: waited 120 s for {what}: {j:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn header(name: &str, version: &str, size: u64) -> proto::UploadModuleRequest {
    proto::UploadModuleRequest {
        part: Some(Part::Header(proto::UploadHeader {
            name: name.into(),
            version: version.into(),
            size,
        })),
    }
}

fn module_ref(name: &str, version: &str) -> proto::ModuleRef {
    proto::ModuleRef {
        name: name.into(),
        version: version.into(),
    }
}

fn config(dir: &Path) -> ServerConfig {
    let mut c = ServerConfig::new(dir.to_path_buf());
    c.checkpoint_interval = Duration::from_millis(200);
    c
}

/// A keyed windowed count over generated records, written to `out` in the
/// tenant's file area; `rate` records/s.
fn count_job(name: &str, module: &str, count: u64, rate: u64, out: &str) -> String {
    format!(
        r#"
[job]
name = "{name}"

[source.gen]
kind = "generator"
count = {count}
keys = 37
interval_ms = 3
batch_size = 64
rate = {rate}
watermark = {{ strategy = "monotonous" }}

[operator.count]
input = "gen"
module = "{module}"
parallelism = 2
window = {{ type = "tumbling", size = "1s" }}

[sink.out]
input = "count"
kind = "file"
path = "{out}"
format = "envelope"
"#
    )
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(weir_tests::udf(name)).unwrap()
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, needle: &str) -> String {
    match r {
        Ok(v) => panic!("expected {code:?} ({needle}), got {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{}", s.message());
            assert!(
                s.message().contains(needle),
                "`{}` does not contain `{needle}`",
                s.message()
            );
            s.message().to_string()
        }
    }
}

#[test]
fn tenants_are_authenticated_and_only_the_admin_manages_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let admin = s.as_(&s.admin.clone());
    let acme = s.tenant("acme", proto::Quotas::default());
    assert!(acme.starts_with("weir_"));
    assert_code(
        admin.create_tenant("acme", proto::Quotas::default()),
        Code::AlreadyExists,
        "tenant `acme` exists already",
    );
    assert_code(
        admin.create_tenant("Bad Name", proto::Quotas::default()),
        Code::InvalidArgument,
        "invalid tenant name `Bad Name`",
    );
    // Tokens are stored hashed: the token itself is nowhere in the data
    // directory.
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                assert!(
                    !b.windows(acme.len()).any(|w| w == acme.as_bytes()),
                    "the token is in {}",
                    p.display()
                );
            }
        }
    }
    let names: Vec<String> = admin
        .list_tenants()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["acme"]);
    // A tenant cannot manage tenants; the admin cannot use the registry or
    // jobs; no token and a wrong token are refused everywhere.
    let tenant = s.as_(&acme);
    assert_code(
        tenant.list_tenants(),
        Code::PermissionDenied,
        "tenant `acme`",
    );
    assert_code(
        tenant.create_tenant("other", proto::Quotas::default()),
        Code::PermissionDenied,
        "admin token",
    );
    assert_code(
        admin.list_modules(),
        Code::PermissionDenied,
        "tenant's token",
    );
    assert_code(admin.list_jobs(), Code::PermissionDenied, "tenant's token");
    for token in ["", "weir_0123456789abcdef"] {
        let c = s.as_(token);
        let needle = if token.is_empty() {
            "no API token"
        } else {
            "unknown API token"
        };
        assert_code(c.list_tenants(), Code::Unauthenticated, needle);
        assert_code(c.list_modules(), Code::Unauthenticated, needle);
        assert_code(c.upload("m", "1", b"\0asm"), Code::Unauthenticated, needle);
        assert_code(c.inspect("m", ""), Code::Unauthenticated, needle);
        assert_code(c.delete("m", "1"), Code::Unauthenticated, needle);
        assert_code(c.submit("", ""), Code::Unauthenticated, needle);
        assert_code(c.list_jobs(), Code::Unauthenticated, needle);
        assert_code(c.job("j"), Code::Unauthenticated, needle);
        assert_code(c.cancel("j", false), Code::Unauthenticated, needle);
        assert_code(c.savepoint("j"), Code::Unauthenticated, needle);
        assert_code(c.savepoints("j"), Code::Unauthenticated, needle);
    }
    s.stop();
}

#[test]
fn a_tenant_can_neither_see_nor_touch_another_tenants_modules_jobs_or_savepoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let a = s.as_(&s.tenant("alpha", proto::Quotas::default()));
    let b = s.as_(&s.tenant("beta", proto::Quotas::default()));
    a.upload("bid-count", "1.0.0", &bytes("bid-count")).unwrap();
    let job = a
        .submit(
            &count_job("a-job", "bid-count", 2_000_000, 20_000, "out.jsonl"),
            "",
        )
        .unwrap();
    a.wait_for(&job.id, "a checkpoint", |j| j.last_checkpoint > 0);
    let sp = a.savepoint(&job.id).unwrap();

    // Beta sees nothing of alpha's.
    assert!(b.list_modules().unwrap().is_empty());
    assert!(b.list_jobs().unwrap().is_empty());
    // Alpha's ids answer exactly as ids that do not exist: nothing can be
    // inferred.
    let theirs = assert_code(
        b.inspect("bid-count", "1.0.0"),
        Code::NotFound,
        "does not exist",
    );
    let none = assert_code(
        b.inspect("no-such", "1.0.0"),
        Code::NotFound,
        "does not exist",
    );
    assert_eq!(
        theirs.replace("bid-count", "X"),
        none.replace("no-such", "X")
    );
    assert_code(
        b.inspect("bid-count", ""),
        Code::NotFound,
        "module `bid-count` does not exist",
    );
    assert_code(
        b.delete("bid-count", "1.0.0"),
        Code::NotFound,
        "does not exist",
    );
    let (theirs, none) = (job.id.as_str(), "a-job-00000000");
    let t = assert_code(b.job(theirs), Code::NotFound, "does not exist");
    let n = assert_code(b.job(none), Code::NotFound, "does not exist");
    assert_eq!(t.replace(theirs, "X"), n.replace(none, "X"));
    assert_code(b.cancel(theirs, false), Code::NotFound, "does not exist");
    assert_code(b.cancel(theirs, true), Code::NotFound, "does not exist");
    assert_code(b.savepoint(theirs), Code::NotFound, "does not exist");
    assert_code(b.savepoints(theirs), Code::NotFound, "does not exist");
    // Beta cannot run alpha's module or start from alpha's savepoint.
    assert_code(
        b.submit(
            &count_job("b-job", "bid-count", 100, 1_000, "out.jsonl"),
            "",
        ),
        Code::InvalidArgument,
        "module `bid-count` does not exist in tenant `beta`'s registry",
    );
    b.upload("bid-count", "1.0.0", &bytes("bid-count")).unwrap();
    assert_code(
        b.submit(
            &count_job("b-job", "bid-count", 100, 1_000, "out.jsonl"),
            &sp.id,
        ),
        Code::NotFound,
        &format!("savepoint `{}` does not exist", sp.id),
    );
    // Beta's module of the same name is its own: deleting it leaves alpha's
    // (in use by alpha's job) alone.
    b.delete("bid-count", "1.0.0").unwrap();
    assert_eq!(
        a.inspect("bid-count", "1.0.0").unwrap().used_by,
        std::slice::from_ref(&job.id)
    );
    // Beta's files are apart from alpha's: the same relative path is
    // another file.
    b.upload("bid-count", "2.0.0", &bytes("bid-count")).unwrap();
    let bj = b
        .submit(
            &count_job("b-job", "bid-count", 2_000, 20_000, "out.jsonl"),
            "",
        )
        .unwrap();
    b.wait_for(&bj.id, "the end", |j| j.state == "finished");
    let tenants = dir.path().join("tenants");
    assert!(!sorted_lines(&tenants.join("beta/files/out.jsonl")).is_empty());
    assert_ne!(
        sorted_lines(&tenants.join("beta/files/out.jsonl")),
        sorted_lines(&tenants.join("alpha/files/out.jsonl"))
    );
    // And alpha's job ran on, untouched.
    assert_eq!(a.job(&job.id).unwrap().state, "running");
    a.cancel(&job.id, false).unwrap();
    s.stop();
}

#[test]
fn the_registry_validates_uploads_and_keeps_versions() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_upload_bytes = 4 << 20;
    let s = TestServer::start(c);
    let t = s.as_(&s.tenant(
        "acme",
        proto::Quotas {
            max_modules: 3,
            ..Default::default()
        },
    ));
    let filter = bytes("bid-filter");
    let m = t.upload("bid-filter", "1.0.0", &filter).unwrap();
    assert_eq!(m.kind, "filter");
    assert_eq!(m.world, "weir:udf/filter-operator@0.1.0");
    assert_eq!(m.size, filter.len() as u64);
    assert_eq!(m.digest, sha256_hex(&filter));
    assert!(
        m.exports.iter().any(|e| e.starts_with("weir:udf/filter")),
        "{:?}",
        m.exports
    );
    assert!(
        m.imports
            .iter()
            .all(|i| i.starts_with("weir:udf/") || i.starts_with("wasi:")),
        "{:?}",
        m.imports
    );
    assert_code(
        t.upload("bid-filter", "1.0.0", &filter),
        Code::AlreadyExists,
        "module `bid-filter@1.0.0` exists already",
    );
    // What is not a usable component is refused, naming the module.
    assert_code(
        t.upload("junk", "1", b"not wasm at all"),
        Code::InvalidArgument,
        "module `junk@1`",
    );
    let core = wat::parse_str("(module)").unwrap();
    assert_code(
        t.upload("core", "1", &core),
        Code::InvalidArgument,
        "not a component",
    );
    let truncated = &filter[..filter.len() / 2];
    assert_code(
        t.upload("half", "1", truncated),
        Code::InvalidArgument,
        "module `half@1`",
    );
    assert_code(
        t.upload("bad name", "1", &filter),
        Code::InvalidArgument,
        "invalid module name",
    );
    assert_code(
        t.upload("x", "../1", &filter),
        Code::InvalidArgument,
        "invalid module version",
    );
    // Size: over the server's limit, and a stream that lies about its size.
    assert_code(
        t.upload_parts(vec![header("big", "1", 5 << 20)]),
        Code::ResourceExhausted,
        "at most 4194304 bytes",
    );
    let mut parts = vec![header("short", "1", filter.len() as u64 + 10)];
    parts.push(proto::UploadModuleRequest {
        part: Some(Part::Chunk(filter.clone())),
    });
    assert_code(t.upload_parts(parts), Code::InvalidArgument, "ended after");
    assert_code(
        t.upload_parts(vec![proto::UploadModuleRequest {
            part: Some(Part::Chunk(filter.clone())),
        }]),
        Code::InvalidArgument,
        "starts with a header",
    );
    // Versions: the newest is the default.
    t.upload("bid-filter", "1.1.0", &bytes("bid-projection"))
        .unwrap();
    assert_eq!(t.inspect("bid-filter", "").unwrap().version, "1.1.0");
    assert_eq!(t.inspect("bid-filter", "1.0.0").unwrap().kind, "filter");
    let listed: Vec<String> = t
        .list_modules()
        .unwrap()
        .iter()
        .map(|m| format!("{}@{}", m.name, m.version))
        .collect();
    assert_eq!(listed, ["bid-filter@1.0.0", "bid-filter@1.1.0"]);
    // Quota: three versions.
    t.upload("bid-count", "1", &bytes("bid-count")).unwrap();
    assert_code(
        t.upload("bid-count", "2", &bytes("bid-count")),
        Code::ResourceExhausted,
        "max_modules",
    );
    // Quota: bytes, for another tenant.
    let tiny = s.as_(&s.tenant(
        "tiny",
        proto::Quotas {
            max_module_bytes: 1_000,
            ..Default::default()
        },
    ));
    assert_code(
        tiny.upload("bid-filter", "1", &filter),
        Code::ResourceExhausted,
        "quota of 1000 module bytes (0 used; max_module_bytes)",
    );
    // Delete: refused while a running job uses it, then allowed.
    let job = t
        .submit(
            &count_job("uses", "bid-count@1", 2_000_000, 20_000, "o.jsonl"),
            "",
        )
        .unwrap();
    assert_eq!(
        job.modules.get("count").map(String::as_str),
        Some("bid-count@1")
    );
    assert_code(
        t.delete("bid-count", "1"),
        Code::FailedPrecondition,
        &job.id,
    );
    assert_code(
        t.delete("bid-count", "9"),
        Code::NotFound,
        "`bid-count@9` does not exist",
    );
    t.cancel(&job.id, false).unwrap();
    let gone = t.delete("bid-count", "1").unwrap().module.unwrap();
    assert_eq!(gone.digest, sha256_hex(&bytes("bid-count")));
    assert_code(
        t.inspect("bid-count", "1"),
        Code::NotFound,
        "does not exist",
    );
    assert!(
        !dir.path()
            .join(format!("tenants/acme/modules/{}.wasm", gone.digest))
            .exists()
    );
    s.stop();
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn job_files_are_checked_against_the_servers_rules_and_the_tenants_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let t = s.as_(&s.tenant(
        "acme",
        proto::Quotas {
            max_jobs: 1,
            max_parallelism: 4,
            max_memory_mb: 64,
            max_cpu_deadline_ms: 200,
            ..Default::default()
        },
    ));
    t.upload("bid-count", "1", &bytes("bid-count")).unwrap();
    let ok = count_job("j", "bid-count", 2_000_000, 20_000, "out.jsonl");
    // A bad job file: the line and node.
    let bad = ok.replace("keys = 37", "keys = \"many\"");
    let m = assert_code(t.submit(&bad, ""), Code::InvalidArgument, "job.toml:");
    assert!(m.contains("source `gen`"), "{m}");
    assert_code(t.submit("[job\n", ""), Code::InvalidArgument, "job.toml:1:");
    // Module paths, files outside the tenant's area, stdout.
    assert_code(
        t.submit(&ok.replace("\"bid-count\"", "\"/etc/passwd.wasm\""), ""),
        Code::InvalidArgument,
        "upload the component",
    );
    for path in ["../escape.jsonl", "/tmp/escape.jsonl"] {
        let m = assert_code(
            t.submit(&ok.replace("out.jsonl", path), ""),
            Code::InvalidArgument,
            "outside the tenant's file area",
        );
        assert!(m.contains("sink `out`"), "{m}");
    }
    assert_code(
        t.submit(
            &ok.replace(
                "kind = \"file\"\npath = \"out.jsonl\"\nformat = \"envelope\"",
                "kind = \"stdout\"",
            ),
            "",
        ),
        Code::InvalidArgument,
        "server's console",
    );
    // Quotas: memory and CPU per guest call, subtasks, jobs.
    let with_limits = |l: &str| {
        ok.replace(
            "parallelism = 2\n",
            &format!("parallelism = 2\nlimits = {{ {l} }}\n"),
        )
    };
    assert_code(
        t.submit(&with_limits("memory_mb = 128"), ""),
        Code::ResourceExhausted,
        "quota of 64 MB",
    );
    assert_code(
        t.submit(&with_limits("cpu_deadline_ms = 500"), ""),
        Code::ResourceExhausted,
        "quota of 200 ms",
    );
    assert_code(
        t.submit(&ok.replace("parallelism = 2", "parallelism = 4"), ""),
        Code::ResourceExhausted,
        "max_parallelism",
    );
    let job = t.submit(&with_limits("memory_mb = 32"), "").unwrap();
    assert_code(t.submit(&ok, ""), Code::ResourceExhausted, "max_jobs");
    t.cancel(&job.id, false).unwrap();
    // With the first job cancelled, a second fits.
    let second = t.submit(&ok, "").unwrap();
    t.cancel(&second.id, false).unwrap();
    assert!(!dir.path().join("escape.jsonl").exists());
    s.stop();
}

#[test]
fn a_job_runs_reports_takes_savepoints_is_cancelled_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let t = s.as_(&s.tenant("acme", proto::Quotas::default()));
    t.upload("bid-count", "1", &bytes("bid-count")).unwrap();
    let file = count_job("counts", "bid-count", 60_000, 20_000, "counts.jsonl");
    let job = t.submit(&file, "").unwrap();
    assert_eq!(job.state, "running");
    assert_eq!(job.parallelism, 4);
    let running = t.wait_for(&job.id, "records and a checkpoint", |j| {
        j.records_read > 0 && j.last_checkpoint > 0
    });
    let names: Vec<(&str, &str, u32)> = running
        .operators
        .iter()
        .map(|o| (o.name.as_str(), o.role.as_str(), o.parallelism))
        .collect();
    assert_eq!(
        names,
        [
            ("gen", "source", 1),
            ("count", "operator", 2),
            ("out", "sink", 1)
        ]
    );
    assert!(
        running
            .operators
            .iter()
            .all(|o| (0.0..=1.0).contains(&o.backpressure))
    );
    assert!(running.operators[0].watermark.is_some());
    // Cancel with a savepoint; restore from it as a new job.
    let cancelled = t.cancel(&job.id, true).unwrap();
    assert_eq!(cancelled.state, "cancelled");
    assert!(
        cancelled.savepoint.starts_with(&format!("{}/sp-", job.id)),
        "{cancelled:?}"
    );
    assert_code(
        t.cancel(&job.id, false),
        Code::FailedPrecondition,
        "is cancelled",
    );
    assert_code(
        t.savepoint(&job.id),
        Code::FailedPrecondition,
        "not running",
    );
    let listed: Vec<String> = t
        .savepoints(&job.id)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&cancelled.savepoint));
    let restored = t.submit(&file, &cancelled.savepoint).unwrap();
    let done = t.wait_for(&restored.id, "the end", |j| j.state != "running");
    assert_eq!(done.state, "finished", "{done:?}");
    let jobs: Vec<(String, String)> = t
        .list_jobs()
        .unwrap()
        .into_iter()
        .map(|j| (j.id, j.state))
        .collect();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.contains(&(job.id.clone(), "cancelled".into())));
    assert!(jobs.contains(&(restored.id.clone(), "finished".into())));
    // The two runs together wrote each window exactly once: the same as
    // one uninterrupted run.
    let whole = t
        .submit(&file.replace("counts.jsonl", "whole.jsonl"), "")
        .unwrap();
    t.wait_for(&whole.id, "the end", |j| j.state == "finished");
    let files = dir.path().join("tenants/acme/files");
    let expected = sorted_lines(&files.join("whole.jsonl"));
    assert!(!expected.is_empty());
    assert_eq!(sorted_lines(&files.join("counts.jsonl")), expected);
    s.stop();
}

#[test]
fn a_restarted_server_resumes_running_jobs_from_their_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let token = s.tenant("acme", proto::Quotas::default());
    let t = s.as_(&token);
    t.upload("bid-count", "1", &bytes("bid-count")).unwrap();
    let file = count_job("resume", "bid-count", 60_000, 15_000, "resumed.jsonl");
    let job = t.submit(&file, "").unwrap();
    let before = t.wait_for(&job.id, "two checkpoints", |j| j.last_checkpoint >= 2);
    drop(t);
    s.stop();

    // A new server process on the same data directory: same tenants, same
    // token, and the job runs on from its latest checkpoint.
    let s = TestServer::start(config(dir.path()));
    let t = s.as_(&token);
    assert_eq!(t.list_modules().unwrap().len(), 1);
    let after = t.wait_for(&job.id, "the end", |j| j.state != "running");
    assert_eq!(after.state, "finished", "{after:?}");
    // Restored, not started over: this run read only what was left.
    assert!(after.records_read < 60_000, "{after:?}");
    assert!(before.records_read > 0);
    let whole = t
        .submit(&file.replace("resumed.jsonl", "whole.jsonl"), "")
        .unwrap();
    t.wait_for(&whole.id, "the end", |j| j.state == "finished");
    let files = dir.path().join("tenants/acme/files");
    let expected = sorted_lines(&files.join("whole.jsonl"));
    assert!(!expected.is_empty());
    assert_eq!(sorted_lines(&files.join("resumed.jsonl")), expected);
    s.stop();
}

#[test]
fn server_reflection_lists_the_weir_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let mut client = ServerReflectionClient::new(s.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut services: Vec<String> = s.runtime.block_on(async {
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        match answer.message_response.unwrap() {
            MessageResponse::ListServicesResponse(l) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("{other:?}"),
        }
    });
    services.sort();
    assert_eq!(
        services,
        [
            "grpc.reflection.v1.ServerReflection",
            "weir.v1.Jobs",
            "weir.v1.Modules",
            "weir.v1.Tenants"
        ]
    );
    s.stop();
}

#[test]
fn a_job_whose_state_outgrows_the_tenants_quota_is_failed_naming_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let t = s.as_(&s.tenant(
        "small",
        proto::Quotas {
            max_state_bytes: 1_000,
            ..Default::default()
        },
    ));
    t.upload("bid-count", "1", &bytes("bid-count")).unwrap();
    let job = t
        .submit(
            &count_job("big", "bid-count", 2_000_000, 20_000, "o.jsonl"),
            "",
        )
        .unwrap();
    let failed = t.wait_for(&job.id, "the quota", |j| j.state != "running");
    assert_eq!(failed.state, "failed", "{failed:?}");
    assert!(
        failed
            .error
            .contains("over tenant `small`'s quota of 1000 bytes (max_state_bytes)"),
        "{}",
        failed.error
    );
    s.stop();
}

#[test]
fn guest_failures_are_counted_by_kind_and_a_runaway_job_fails_after_its_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_restarts = 1;
    let s = TestServer::start(c);
    let t = s.as_(&s.tenant(
        "acme",
        proto::Quotas {
            max_cpu_deadline_ms: 50,
            ..Default::default()
        },
    ));
    t.upload("misbehave", "1", &bytes("misbehave")).unwrap();
    let job = t
        .submit(
            r#"
[job]
name = "runaway"

[source.gen]
kind = "generator"
count = 1000
keys = 3

[operator.bad]
input = "gen"
module = "misbehave"
config = { mode = "spin", trigger = "seq" }

[sink.out]
input = "bad"
kind = "file"
path = "never.jsonl"
"#,
            "",
        )
        .unwrap();
    let failed = t.wait_for(&job.id, "the end", |j| {
        j.state != "running" && j.state != "restarting"
    });
    assert_eq!(failed.state, "failed", "{failed:?}");
    assert_eq!(failed.restarts, 1);
    assert!(
        failed.error.contains("CPU deadline of 50ms"),
        "{}",
        failed.error
    );
    let text = weir_server::metrics::render(&s.server).unwrap();
    let line = format!(
        "weir_guest_failures_total{{job=\"{}\",kind=\"deadline\",tenant=\"acme\"}} 2",
        job.id
    );
    assert!(text.contains(&line), "no `{line}` in:\n{text}");
    // The job ran under the tenant's CPU share, which accounts for the CPU
    // its subtasks held (most of the two 50 ms deadlines it spun for: an
    // epoch deadline may fire up to one tick early).
    let cpu: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("weir_tenant_cpu_seconds_total{tenant=\"acme\"} "))
        .unwrap_or_else(|| panic!("no CPU share of acme in:\n{text}"))
        .parse()
        .unwrap();
    assert!(cpu >= 0.05, "acme held the CPU for {cpu} s");
    s.stop();
}

#[test]
fn a_running_jobs_operator_is_upgraded_from_a_savepoint_and_incompatible_modules_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let t = s.as_(&s.tenant("acme", proto::Quotas::default()));
    t.upload("bid-count", "1", &bytes("bid-count")).unwrap();
    t.upload("bid-count", "2", &bytes("bid-count-v2")).unwrap();
    t.upload("bid-count", "3", &bytes("bid-count-bad")).unwrap();
    t.upload("misbehave", "1", &bytes("misbehave")).unwrap();
    let file = count_job("upgraded", "bid-count@1", 150_000, 15_000, "up.jsonl");
    let job = t.submit(&file, "").unwrap();
    t.wait_for(&job.id, "a checkpoint", |j| j.last_checkpoint > 0);
    let upgrade = |op: &str, module: &str| t.upgrade(&job.id, op, module, 2_000, 5_000);
    // Refused before anything stops: another kind, an unknown operator or
    // module, the version already running.
    assert_code(
        upgrade("count", "misbehave@1"),
        Code::FailedPrecondition,
        "it is a map operator",
    );
    assert_code(
        upgrade("nope", "bid-count@2"),
        Code::NotFound,
        "has no operator `nope` (it has: count)",
    );
    assert_code(
        upgrade("count", "bid-count@9"),
        Code::NotFound,
        "`bid-count@9` does not exist",
    );
    assert_code(
        upgrade("count", "bid-count@1"),
        Code::FailedPrecondition,
        "runs `bid-count@1` already",
    );
    let still = t.job(&job.id).unwrap();
    assert_eq!((still.state.as_str(), still.history.len()), ("running", 0));

    let done = upgrade("count", "bid-count@2").unwrap();
    let u = done.upgrade.unwrap();
    assert_eq!(
        (u.from.as_str(), u.to.as_str()),
        ("bid-count@1", "bid-count@2")
    );
    assert!(u.savepoint.starts_with(&format!("{}/sp-", job.id)), "{u:?}");
    assert!(u.pause_ms > 0);
    assert_eq!(
        (u.outcome.as_str(), u.by.as_str(), u.rollback),
        ("kept", "ops-bot (tenant acme)", false)
    );
    let after = done.job.unwrap();
    assert_eq!(
        after.modules.get("count").map(String::as_str),
        Some("bid-count@2")
    );
    // The module in use is the new one: the old version is free to delete.
    assert!(t.inspect("bid-count", "1").unwrap().used_by.is_empty());
    assert_eq!(
        t.inspect("bid-count", "2").unwrap().used_by,
        std::slice::from_ref(&job.id)
    );

    // A faulty version passes the checks, traps on its first record, and
    // is rolled back on probation: the job runs version 2 again from the
    // upgrade's savepoint.
    let bad = upgrade("count", "bid-count@3").unwrap();
    let b = bad.upgrade.unwrap();
    assert_eq!(b.outcome, "rolled back", "{b:?}");
    assert!(
        b.reason.contains("bid-count-bad: cannot count a record"),
        "{b:?}"
    );
    assert_eq!(
        bad.job.unwrap().modules.get("count").map(String::as_str),
        Some("bid-count@2")
    );
    let running = t.wait_for(&job.id, "running again", |j| j.state == "running");
    assert_eq!(running.history.len(), 2);
    // Going back to version 1 is a rollback in the history.
    let back = upgrade("count", "bid-count@1").unwrap().upgrade.unwrap();
    assert_eq!((back.outcome.as_str(), back.rollback), ("kept", true));

    let finished = t.wait_for(&job.id, "the end", |j| j.state != "running");
    assert_eq!(finished.state, "finished", "{finished:?}");
    let h: Vec<(&str, &str, &str)> = finished
        .history
        .iter()
        .map(|u| (u.from.as_str(), u.to.as_str(), u.outcome.as_str()))
        .collect();
    assert_eq!(
        h,
        [
            ("bid-count@1", "bid-count@2", "kept"),
            ("bid-count@2", "bid-count@3", "rolled back"),
            ("bid-count@2", "bid-count@1", "kept"),
        ]
    );
    assert_eq!(finished.history[0].pause_ms, u.pause_ms);

    // Every window exactly once, as in one uninterrupted run; those after
    // the swap by version 2.
    let whole = t
        .submit(&file.replace("up.jsonl", "whole.jsonl"), "")
        .unwrap();
    t.wait_for(&whole.id, "the end", |j| j.state == "finished");
    let files = dir.path().join("tenants/acme/files");
    let mut v2 = 0;
    let mut got: Vec<String> = sorted_lines(&files.join("up.jsonl"))
        .iter()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            let value = v["value"].as_object_mut().unwrap();
            if value.remove("version").is_some() {
                v2 += 1;
                value.remove("per_second");
            }
            canonical(&v)
        })
        .collect();
    got.sort();
    let mut expected: Vec<String> = sorted_lines(&files.join("whole.jsonl"))
        .iter()
        .map(|l| canonical(&serde_json::from_str(l).unwrap()))
        .collect();
    expected.sort();
    assert!(
        v2 > 0 && v2 < got.len(),
        "version 2 wrote {v2} of {}",
        got.len()
    );
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the upgraded run's windows differ from an uninterrupted run's"
    );
    s.stop();
}

/// An upgrade to a version with another state layout: `bid-count@3` keeps
/// `(count, latest time)` per window where versions 1 and 2 kept a count,
/// and its `state-migration` export converts the savepoint's accumulators.
/// (Without the migration it could not read them: 8 bytes where it needs
/// 16.) Every window is counted exactly as in an uninterrupted run.
#[test]
fn an_upgrade_migrates_state_to_a_new_layout() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let t = s.as_(&s.tenant("acme", proto::Quotas::default()));
    t.upload("bid-count", "1", &bytes("bid-count")).unwrap();
    let v3 = t.upload("bid-count", "3", &bytes("bid-count-v3")).unwrap();
    assert!(
        v3.exports
            .iter()
            .any(|e| e == "weir:udf/state-migration@0.1.0"),
        "{v3:?}"
    );
    let file = count_job("migrated", "bid-count@1", 100_000, 12_000, "up.jsonl");
    let job = t.submit(&file, "").unwrap();
    t.wait_for(&job.id, "a checkpoint", |j| j.last_checkpoint > 0);
    let done = t
        .upgrade(&job.id, "count", "bid-count@3", 2_000, 5_000)
        .unwrap();
    let u = done.upgrade.unwrap();
    assert_eq!(u.outcome, "kept", "{u:?}");
    let finished = t.wait_for(&job.id, "the end", |j| j.state != "running");
    assert_eq!(finished.state, "finished", "{finished:?}");

    let whole = t
        .submit(&file.replace("up.jsonl", "whole.jsonl"), "")
        .unwrap();
    t.wait_for(&whole.id, "the end", |j| j.state == "finished");
    let files = dir.path().join("tenants/acme/files");
    let (mut v3_windows, mut latest_known) = (0, 0);
    let mut got: Vec<String> = sorted_lines(&files.join("up.jsonl"))
        .iter()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            let value = v["value"].as_object_mut().unwrap();
            if let Some(version) = value.remove("version") {
                assert_eq!(version, 3);
                v3_windows += 1;
                let latest = value.remove("latest").unwrap();
                if let Some(at) = latest.as_i64() {
                    // The newest record of the window is in it.
                    assert!(at >= value["start"].as_i64().unwrap(), "{line}");
                    assert!(at < value["end"].as_i64().unwrap(), "{line}");
                    latest_known += 1;
                }
            }
            canonical(&v)
        })
        .collect();
    got.sort();
    let mut expected: Vec<String> = sorted_lines(&files.join("whole.jsonl"))
        .iter()
        .map(|l| canonical(&serde_json::from_str(l).unwrap()))
        .collect();
    expected.sort();
    assert!(
        v3_windows > 0 && v3_windows < got.len(),
        "version 3 wrote {v3_windows} of {} windows",
        got.len()
    );
    assert!(latest_known > 0);
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the migrated run's windows differ from an uninterrupted run's"
    );
    s.stop();
}

/// `events` Nexmark bids through map `project@1` (`bid-projection`, whose
/// config also carries `misbehave`'s `extra` settings) into `out.jsonl`.
fn projection_job(events: u64, extra: &str) -> String {
    format!(
        r#"
[job]
name = "stateless"

[source.bids]
kind = "nexmark"
event_type = "bid"
events = {events}
rate = 8000
parallelism = 2

[operator.proj]
input = "bids"
module = "project@1"
parallelism = 2
config = {{ rate = 0.908, {extra} }}

[sink.out]
input = "proj"
kind = "file"
path = "out.jsonl"
"#
    )
}

/// A stateless operator swaps without a savepoint: each subtask takes the
/// new module before its next batch. Every bid comes out once, projected
/// by version 1 before the swap and passed through unchanged by the new
/// module after it.
#[test]
fn a_stateless_operator_swaps_without_a_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let t = s.as_(&s.tenant("acme", proto::Quotas::default()));
    t.upload("project", "1", &bytes("bid-projection")).unwrap();
    // Passes records through unless one holds the trigger, which JSON never
    // holds raw.
    t.upload("project", "2", &bytes("misbehave")).unwrap();
    let file = projection_job(60_000, r#"trigger = "\u0001""#);
    let job = t.submit(&file, "").unwrap();
    t.wait_for(&job.id, "a checkpoint", |j| j.last_checkpoint > 0);
    let u = t
        .upgrade(&job.id, "proj", "project@2", 1_000, 5_000)
        .unwrap()
        .upgrade
        .unwrap();
    assert_eq!(u.outcome, "kept", "{u:?}");
    assert_eq!(u.savepoint, "", "no savepoint for a stateless swap");
    let finished = t.wait_for(&job.id, "the end", |j| j.state != "running");
    assert_eq!(finished.state, "finished", "{finished:?}");
    let lines = sorted_lines(&dir.path().join("tenants/acme/files/out.jsonl"));
    assert_eq!(lines.len(), 60_000, "every bid once");
    // Version 1 writes `price_eur`, version 2 the bid as the source wrote
    // it.
    let raw = lines.iter().filter(|l| !l.contains("price_eur")).count();
    assert!(
        raw > 0 && raw < lines.len(),
        "{raw} of {} passed through unchanged",
        lines.len()
    );
    s.stop();
}

/// A stateless swap to a version that traps is rolled back: the job
/// returns to its latest checkpoint (taken before the swap) with version 1,
/// and every bid comes out once, all projected by version 1.
#[test]
fn a_failed_stateless_swap_rolls_back_to_the_latest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let t = s.as_(&s.tenant("acme", proto::Quotas::default()));
    t.upload("project", "1", &bytes("bid-projection")).unwrap();
    // Traps on the first bid it sees (every bid names its bidder).
    t.upload("project", "2", &bytes("misbehave")).unwrap();
    let file = projection_job(40_000, r#"mode = "trap", trigger = "bidder""#);
    let job = t.submit(&file, "").unwrap();
    t.wait_for(&job.id, "a checkpoint", |j| j.last_checkpoint > 0);
    let u = t
        .upgrade(&job.id, "proj", "project@2", 1_000, 10_000)
        .unwrap();
    let up = u.upgrade.unwrap();
    assert_eq!(up.outcome, "rolled back", "{up:?}");
    assert!(up.reason.contains("refusing record"), "{up:?}");
    assert_eq!(
        u.job.unwrap().modules.get("proj").map(String::as_str),
        Some("project@1")
    );
    let finished = t.wait_for(&job.id, "the end", |j| {
        j.state != "running" && j.state != "restarting"
    });
    assert_eq!(finished.state, "finished", "{finished:?}");
    let lines = sorted_lines(&dir.path().join("tenants/acme/files/out.jsonl"));
    assert_eq!(lines.len(), 40_000, "every bid once");
    assert!(lines.iter().all(|l| l.contains("price_eur")));
    s.stop();
}

/// The hot-swap proof: an exactly-once Kafka → window → Kafka job, its
/// window aggregator upgraded twice while it runs — once to version 2
/// (kept), once to a version that traps (rolled back on probation). A
/// `read_committed` consumer sees every window's count exactly once, and
/// the windows fired after the first upgrade carry version 2's fields.
#[test]
fn kafka_exactly_once_survives_an_upgrade_and_a_rolled_back_upgrade() {
    use weir_tests::kafka::{Broker, counted_windows, sample_input, window_counts};
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start(dir.path());
    b.create_topic("in", 2);
    b.create_topic("out", 2);
    // 30,000 records, 10 ms apart in event time: 300 s of windows, read
    // at 6,000 records/s (about 5 s).
    let input = sample_input(30_000, 7);
    b.produce("in", &input);

    let cfg = config(dir.path());
    let s = TestServer::start(cfg);
    let t = s.as_(&s.tenant("acme", proto::Quotas::default()));
    s.as_(&s.admin)
        .set_grants("acme", &[&b.bootstrap()], &[])
        .unwrap();
    t.upload("count", "1", &bytes("bid-count")).unwrap();
    t.upload("count", "2", &bytes("bid-count-v2")).unwrap();
    t.upload("count", "3", &bytes("bid-count-bad")).unwrap();
    let file = format!(
        r#"
[job]
name = "kafka-swap"

[source.in]
kind = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "in"
stop_at_end = true
batch_size = 100
parallelism = 2
rate_limit = 3000
watermark = {{ strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 1000 }}

[operator.count]
input = "in"
module = "count@1"
parallelism = 2
window = {{ type = "tumbling", size = "1s" }}

[sink.out]
input = "count"
kind = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "out"
guarantee = "exactly-once"
"#,
        bootstrap = b.bootstrap()
    );
    let job = t.submit(&file, "").unwrap();
    t.wait_for(&job.id, "a checkpoint", |j| j.last_checkpoint > 0);
    let upgrade = |module: &str| {
        t.upgrade(&job.id, "count", module, 1_000, 3_000)
            .unwrap()
            .upgrade
            .unwrap()
    };
    let kept = upgrade("count@2");
    assert_eq!(kept.outcome, "kept", "{kept:?}");
    let rolled = upgrade("count@3");
    assert_eq!(rolled.outcome, "rolled back", "{rolled:?}");
    assert!(rolled.reason.contains("bid-count-bad"), "{rolled:?}");
    let done = t.wait_for(&job.id, "the end", |j| {
        j.state != "running" && j.state != "restarting"
    });
    assert_eq!(done.state, "finished", "{done:?}");
    assert!(
        done.records_read < 3 * 30_000,
        "read {} records",
        done.records_read
    );

    let lines = b.read_committed("out");
    // Panics on a window written twice.
    let got = counted_windows(&lines);
    assert_eq!(got, window_counts(&input), "every window exactly once");
    let (mut v1_end, mut v2_end) = (i64::MIN, i64::MAX);
    let mut v2 = 0;
    for l in &lines {
        let (_, value) = l.split_once('\t').unwrap();
        let v: serde_json::Value = serde_json::from_str(value).unwrap();
        let end = v["start"].as_i64().unwrap() + 1000;
        if v["version"] == 2 {
            v2 += 1;
            v2_end = v2_end.min(end);
        } else {
            v1_end = v1_end.max(end);
        }
    }
    assert!(
        v2 > 0 && v2 < lines.len(),
        "{v2} of {} by version 2",
        lines.len()
    );
    // Windows fire in event-time order: version 1's are the earlier ones
    // (the two window subtasks' watermarks may differ by one window).
    assert!(
        v1_end <= v2_end + 1000,
        "a version 1 window (end {v1_end}) after version 2's first (end {v2_end})"
    );
    s.stop();
}

/// What a hostile tenant tries through the API, refused with errors that
/// name what was wrong.
#[test]
fn a_hostile_tenants_job_files_and_uploads_are_refused_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path()));
    let t = s.as_(&s.tenant("mallory", proto::Quotas::default()));
    let kafka_job = |properties: &str| {
        format!(
            r#"[job]
name = "exfil"

[source.in]
kind = "kafka"
bootstrap_servers = "169.254.169.254:80"
topic = "in"
{properties}

[sink.out]
input = "in"
kind = "file"
path = "out.jsonl"
"#
        )
    };
    // An address the admin did not grant.
    let e = t.submit(&kafka_job(""), "").unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let m = e.message();
    assert!(
        m.contains("tenant `mallory`, job `exfil`")
            && m.contains("source `in`")
            && m.contains("`169.254.169.254:80` is not granted"),
        "{m}"
    );
    // A librdkafka setting that loads a library from the host.
    let e = t
        .submit(
            &kafka_job("properties = { \"plugin.library.paths\" = \"/tmp/evil.so\" }"),
            "",
        )
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("`plugin.library.paths`") && e.message().contains(":8"),
        "{}",
        e.message()
    );
    // A credential that was not granted (to an address that was).
    s.as_(&s.admin.clone())
        .set_grants("mallory", &["169.254.169.254:80"], &[])
        .unwrap();
    let e = t
        .submit(&kafka_job("credential = \"admin-kafka\""), "")
        .unwrap_err();
    assert!(
        e.message()
            .contains("credential `admin-kafka` is not granted to tenant `mallory`"),
        "{}",
        e.message()
    );
    // A component that would be costly to compile: refused by its shape.
    let swarm = weir_tests::many_functions(150_000);
    let e = t.upload("swarm", "1", &swarm).unwrap_err();
    assert!(
        e.message().contains("150000 functions, at most 100000"),
        "{e:?}"
    );
    // A name that is a path.
    let e = t.upload("../../etc", "1", b"\0asm").unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("invalid module name `../../etc`"),
        "{}",
        e.message()
    );
    // Announcing a huge upload and sending less.
    let e = t
        .upload_parts(vec![header("big", "1", 32 << 20)])
        .unwrap_err();
    assert!(
        e.message().contains("ended after 0 of 33554432 bytes"),
        "{}",
        e.message()
    );
    // Nothing of it was kept.
    assert!(t.list_modules().unwrap().is_empty());
    assert!(t.list_jobs().unwrap().is_empty());
    s.stop();
}
