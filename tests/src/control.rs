//! The real control plane for tests: `dari server` started as a process on a free port, on
//! SQLite or on PostgreSQL, with an HTTP client that holds its bootstrap key.
//!
//! ```ignore
//! for engine in Engine::available() {
//!     let control = ControlServer::start(engine).await;
//!     let (status, body) = control.get("/v1/agents").await;
//! }
//! ```
//!
//! PostgreSQL is used when `DARI_TEST_POSTGRES_URL` names a server the tests may create
//! databases on (`.ci/postgres start` makes one); each server gets a database of its own.
//!
//! [`ControlServer::builder`] adds flags and a certificate to trust:
//!
//! ```ignore
//! let control = ControlServer::builder(engine).args(["--max-file-bytes", "1000"]).start().await;
//! ```
//!
//! The server runs its sandboxes with the workspace's `sandboxd`. It runs no message unless the
//! test asks for workers ([`ControlServerBuilder::workers`]): the API's tests see their messages
//! stay `queued`, where they can inspect them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use dari_control::blobs::{BlobStore, LocalBlobStore};
use dari_control::persistence::{Store, workspace_blob_key};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::binaries::binary;

pub const ENV_TEST_POSTGRES_URL: &str = "DARI_TEST_POSTGRES_URL";
/// A fixed master key, so that servers in tests do not warn about making one.
pub const TEST_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    /// The URL of a server on which each test server gets a fresh database.
    Postgres(String),
}

impl Engine {
    /// SQLite, and PostgreSQL when `DARI_TEST_POSTGRES_URL` is set (else a note says it is
    /// skipped).
    pub fn available() -> Vec<Engine> {
        let mut engines = vec![Engine::Sqlite];
        match std::env::var(ENV_TEST_POSTGRES_URL) {
            Ok(url) if !url.is_empty() => engines.push(Engine::Postgres(url)),
            _ => eprintln!(
                "{ENV_TEST_POSTGRES_URL} is not set: this test runs on SQLite only (.ci/postgres starts a server)"
            ),
        }
        engines
    }

    pub fn name(&self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }
}

/// A running `dari server`, killed when dropped.
pub struct ControlServer {
    pub engine: Engine,
    pub url: String,
    /// The admin key of organization `default`, from `<data-dir>/bootstrap-api-key`.
    pub api_key: String,
    pub data_dir: tempfile::TempDir,
    pub database_url: Option<String>,
    pub http: reqwest::Client,
    child: tokio::process::Child,
    log_path: PathBuf,
}

/// A [`ControlServer`] to start: its engine, extra `dari server` flags, and the certificate its
/// client trusts (for a server started with `--tls-cert`).
pub struct ControlServerBuilder {
    engine: Engine,
    args: Vec<OsString>,
    root_certificate: Option<reqwest::Certificate>,
    /// Another `dari` binary than the workspace's (the benchmarks build their own).
    program: Option<PathBuf>,
    /// Another `sandboxd` than the one the harness builds (`--sandboxd`).
    sandboxd: Option<PathBuf>,
    log_filter: String,
    /// `--workers`: 0 unless a test runs messages.
    workers: usize,
    /// `--listen`: a free port unless a restart keeps the last one.
    listen: String,
    /// Variables for the server besides the harness's own (the server starts with a clean
    /// environment): platform model keys such as `OPENAI_API_KEY`.
    env: Vec<(String, String)>,
}

impl ControlServerBuilder {
    /// Adds flags to `dari server`.
    pub fn args<I, A>(mut self, args: I) -> ControlServerBuilder
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable in the server's environment.
    pub fn env(mut self, name: &str, value: &str) -> ControlServerBuilder {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs this `dari` binary instead of the one the harness builds.
    pub fn program(mut self, program: &std::path::Path) -> ControlServerBuilder {
        self.program = Some(program.to_owned());
        self
    }

    /// Runs sandboxes with this `sandboxd` instead of the one the harness builds.
    pub fn sandboxd(mut self, sandboxd: &std::path::Path) -> ControlServerBuilder {
        self.sandboxd = Some(sandboxd.to_owned());
        self
    }

    /// Runs up to `workers` messages at once (the default, 0, runs none).
    pub fn workers(mut self, workers: usize) -> ControlServerBuilder {
        self.workers = workers;
        self
    }

    /// Listens on this address (`127.0.0.1:PORT`) rather than a free port.
    pub fn listen(mut self, address: &str) -> ControlServerBuilder {
        address.clone_into(&mut self.listen);
        self
    }

    /// Starts the server on an existing data directory and database: a restart.
    pub async fn restart(self, data_dir: tempfile::TempDir, database_url: Option<String>) -> ControlServer {
        self.start_on(data_dir, database_url).await
    }

    /// The server's `DARI_LOG` filter.
    pub fn log_filter(mut self, filter: &str) -> ControlServerBuilder {
        filter.clone_into(&mut self.log_filter);
        self
    }

    /// Makes the server's client trust this PEM certificate.
    pub fn trust(mut self, certificate_pem: &[u8]) -> ControlServerBuilder {
        self.root_certificate = Some(reqwest::Certificate::from_pem(certificate_pem).expect("a PEM certificate"));
        self
    }

    /// Starts the server on a new data directory and database.
    pub async fn start(self) -> ControlServer {
        let data_dir = tempfile::tempdir().expect("a data directory");
        let database_url = match &self.engine {
            Engine::Sqlite => None,
            Engine::Postgres(admin_url) => Some(fresh_postgres_database(admin_url).await),
        };
        self.start_on(data_dir, database_url).await
    }

    async fn start_on(self, data_dir: tempfile::TempDir, database_url: Option<String>) -> ControlServer {
        let ControlServerBuilder {
            engine,
            args,
            root_certificate,
            program,
            sandboxd,
            log_filter,
            workers,
            listen,
            env,
        } = self;
        let log_path = data_dir.path().join("server.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("open the server log");
        #[allow(clippy::disallowed_methods)] // Tests start the real binaries directly.
        let mut command = tokio::process::Command::new(program.unwrap_or_else(|| binary("dari")));
        command
            .args(["server", "--listen", &listen, "--workers", &workers.to_string(), "--sandboxd"])
            .arg(sandboxd.unwrap_or_else(|| binary("sandboxd")))
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DARI_MASTER_KEY", TEST_MASTER_KEY)
            .env("DARI_LOG", &log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(url) = &database_url {
            command.env("DATABASE_URL", url);
        }
        command.envs(env);
        let mut child = command.spawn().expect("start dari server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.expect("read the server's stdout") {
                if let Some(url) = line.strip_prefix("listening on ") {
                    return url.to_owned();
                }
            }
            panic!("dari server exited before listening:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
        })
        .await
        .expect("dari server listens in time");
        let api_key = std::fs::read_to_string(data_dir.path().join("bootstrap-api-key"))
            .expect("the server wrote its bootstrap key")
            .trim()
            .to_owned();
        let mut http = reqwest::Client::builder().timeout(PATIENCE);
        if let Some(certificate) = root_certificate {
            http = http.add_root_certificate(certificate);
        }
        let http = http.build().expect("an HTTP client");
        ControlServer { engine, url, api_key, data_dir, database_url, http, child, log_path }
    }
}

impl ControlServer {
    pub async fn start(engine: Engine) -> ControlServer {
        ControlServer::builder(engine).start().await
    }

    pub fn builder(engine: Engine) -> ControlServerBuilder {
        ControlServerBuilder {
            engine,
            args: Vec::new(),
            root_certificate: None,
            program: None,
            sandboxd: None,
            log_filter: "info,dari_control=debug".to_owned(),
            workers: 0,
            listen: "127.0.0.1:0".to_owned(),
            env: Vec::new(),
        }
    }

    /// Starts a server on an existing data directory and database: a restart.
    pub async fn start_with(
        engine: Engine,
        data_dir: tempfile::TempDir,
        database_url: Option<String>,
    ) -> ControlServer {
        ControlServer::builder(engine).start_on(data_dir, database_url).await
    }

    /// Stops the server with SIGKILL, keeping its data for [`ControlServer::start_with`].
    pub async fn kill(mut self) -> (tempfile::TempDir, Option<String>) {
        self.child.kill().await.expect("kill dari server");
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("a placeholder directory"));
        (data_dir, self.database_url.take())
    }

    /// Stops the server with SIGTERM and returns its exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().expect("a running server");
        nix_kill(pid, "TERM");
        tokio::time::timeout(PATIENCE, self.child.wait()).await.expect("the server stops in time").expect("wait").code()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The files directly in the data directory (the SQLite database and its journal among
    /// them) whose bytes contain `needle`: where a secret must never be in plain text.
    pub fn data_files_containing(&self, needle: &str) -> Vec<PathBuf> {
        std::fs::read_dir(self.data_dir.path())
            .expect("read the data directory")
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.is_file())
            .filter(|path| {
                let bytes = std::fs::read(path).expect("read a data file");
                bytes.windows(needle.len()).any(|window| window == needle.as_bytes())
            })
            .collect()
    }

    /// WARN and ERROR lines of the log that contain none of `allowed`.
    pub fn unexpected_warnings(&self, allowed: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
            .filter(|line| !allowed.iter().any(|allowed| line.contains(allowed)))
            .map(str::to_owned)
            .collect()
    }

    /// A request with the bootstrap key.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.api_key)
    }

    /// Sends a request and returns its status and JSON body (`Value::Null` when empty or not JSON).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let bytes = response.bytes().await.expect("read the body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(Method::PUT, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// The id of the bootstrap organization.
    pub async fn org_id(&self) -> String {
        let (status, body) = self.get("/v1/organizations").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["organizations"][0]["id"].as_str().expect("an organization id").to_owned()
    }

    /// Publishes `archive` (a bundle's tar.gz) through the API's six stages with `api_key` and
    /// returns the publish response. Panics, naming the stage, if one fails.
    pub async fn publish_archive(&self, api_key: &str, archive: &[u8]) -> Value {
        let sha256 = dari_bundle::sha256_hex(archive);
        let request =
            |method: Method, path: &str| self.http.request(method, format!("{}{path}", self.url)).bearer_auth(api_key);
        let reserve = serde_json::json!({"format": "tar.gz", "sha256": sha256, "size_bytes": archive.len(), "metadata": {"origin": "test"}});
        let (status, reserved) = self.send(request(Method::POST, "/v1/source-snapshots").json(&reserve)).await;
        assert_eq!(status, StatusCode::CREATED, "reserve: {reserved}");
        let snapshot_id = reserved["source_snapshot_id"].as_str().expect("a snapshot id");
        let upload_url = reserved["upload_url"].as_str().expect("an upload URL");
        let (status, uploaded) = self.send(self.http.put(upload_url).body(archive.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "upload: {uploaded}");
        let (status, finalized) =
            self.send(request(Method::POST, &format!("/v1/source-snapshots/{snapshot_id}/finalize"))).await;
        assert_eq!((status, &finalized["status"]), (StatusCode::OK, &Value::from("ready")), "finalize: {finalized}");
        let body = serde_json::json!({"source_snapshot_id": snapshot_id});
        let (status, published) = self.send(request(Method::POST, "/v1/agents").json(&body)).await;
        assert!(status.is_success(), "publish: {status} {published}");
        published
    }

    /// A new organization with its own admin key, for tenancy tests: (org id, API key).
    pub async fn create_org(&self, name: &str) -> (String, String) {
        let (status, body) = self.post("/v1/organizations", &serde_json::json!({"name": name})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["organization"]["id"].as_str().expect("an id").to_owned(),
            body["api_key"].as_str().expect("a key").to_owned(),
        )
    }

    /// The server's database, opened beside it, to seed what no API makes yet.
    pub async fn store(&self) -> Store {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.path().join("dari.db").display()),
        };
        Store::connect(&url).await.expect("open the server's database")
    }

    /// A session in `org_id` (of a placeholder agent), made through the store.
    pub async fn create_session(&self, org_id: &str) -> String {
        let store = self.store().await;
        let session_id = store.create_test_session(org_id).await.expect("create a session");
        store.close().await;
        session_id
    }

    /// Saves `archive` (a tar.gz of /workspace) as the session's last workspace archive, as its
    /// sandbox will.
    pub async fn put_workspace_archive(&self, org_id: &str, session_id: &str, archive: Vec<u8>) {
        let blobs = LocalBlobStore::open(&self.data_dir.path().join("blobs")).expect("open the blob store");
        let size = i64::try_from(archive.len()).expect("a small archive");
        blobs.put(&workspace_blob_key(session_id), archive.into()).await.expect("store the archive");
        let store = self.store().await;
        store.record_workspace_archive(org_id, session_id, size, None).await.expect("record the archive");
        store.close().await;
    }

    /// The environment that points `dari` commands at this server with the bootstrap key, and
    /// at a CLI state directory of their own.
    pub fn cli_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DARI_API_URL", self.url.clone()),
            ("DARI_API_KEY", self.api_key.clone()),
            ("DARI_CONFIG_DIR", self.data_dir.path().join("cli").display().to_string()),
        ]
    }
}

/// An agent published by [`deploy_project`].
#[derive(Clone, Debug)]
pub struct DeployedAgent {
    pub agent_id: String,
    pub version_id: String,
}

/// Publishes `examples/echo-runtime` to `control` as `dari deploy` would.
pub async fn deploy_echo_agent(control: &ControlServer) -> DeployedAgent {
    deploy_project(control, &crate::workspace_root().join("examples").join("echo-runtime")).await
}

/// Publishes the project in `dir` through the API with the bootstrap key, as `dari deploy`
/// does (see [`ControlServer::publish_archive`]).
pub async fn deploy_project(control: &ControlServer, dir: &std::path::Path) -> DeployedAgent {
    let published = control.publish_archive(&control.api_key, &pack_project(dir)).await;
    DeployedAgent {
        agent_id: published["agent_id"].as_str().expect("an agent id").to_owned(),
        version_id: published["version_id"].as_str().expect("a version id").to_owned(),
    }
}

/// The source bundle of the project in `dir`, as `dari deploy` packs it.
pub fn pack_project(dir: &std::path::Path) -> Vec<u8> {
    use dari_bundle::BundleLimits;
    let files = dari_bundle::select_files(dir, &BundleLimits::DEFAULT).expect("select the project's files");
    dari_bundle::pack(&files, &BundleLimits::DEFAULT).expect("pack the bundle").archive
}

impl Drop for ControlServer {
    /// Stops a server that is still running with SIGTERM, so that it stops its sandboxes: their
    /// daemons would otherwise go on dialling a port nobody serves.
    fn drop(&mut self) {
        let Ok(None) = self.child.try_wait() else { return };
        let Some(pid) = self.child.id() else { return };
        #[allow(clippy::disallowed_methods)] // A signal for the server under test.
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn nix_kill(pid: u32, signal: &str) {
    #[allow(clippy::disallowed_methods)] // A signal for the server under test.
    let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
    assert!(status.is_ok_and(|status| status.success()), "kill -{signal} {pid}");
}

/// Sends `request` as raw bytes on a new connection to `base_url` and returns what comes back
/// until the server closes or stops sending, for requests a well-behaved client cannot make.
pub async fn raw_http(base_url: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base_url.strip_prefix("http://").expect("an http:// URL");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    // The server may answer and close before it has read everything: that is the point.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(4).any(|window| window == b"\r\n\r\n") && answer.ends_with(b"}") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Creates an empty database on the PostgreSQL server at `admin_url` and returns its URL.
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("random bytes");
    let name = format!("dari_test_{}", hex::encode(random));
    let admin =
        sqlx::any::AnyPoolOptions::new().max_connections(1).connect(admin_url).await.expect("connect to PostgreSQL");
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create the test database");
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("a database name in DARI_TEST_POSTGRES_URL");
    format!("{base}/{name}")
}
