//! A fake of E2B for end-to-end tests: one axum server on `127.0.0.1:0` that speaks E2B's REST
//! API (`POST /sandboxes`, `DELETE /sandboxes/{sandboxID}`, with `X-API-Key`) and, for the
//! sandboxes it made, envd's `process.Process/Start` in the Connect protocol, routed by the
//! `E2b-Sandbox-Id` header as E2B's shared sandbox URL is (`dari server --e2b-sandbox-url`). It
//! records every request.
//!
//! A "sandbox" is a directory, its machine: `workspace/` stands for `/workspace`. Start runs the
//! real `sandboxd` there, with the environment envd would give it (PATH, HOME, USER, then the
//! sandbox's `envVars`, then the call's own `envs`), with a variable that is `/workspace` and
//! the working directory mapped to the directory. Killing a sandbox kills every process working
//! in it, as the end of the machine would.
//!
//! ```ignore
//! let e2b = FakeE2b::start().await;
//! let control = ControlServer::builder(Engine::Sqlite)
//!     .args(["--sandbox-provider", "e2b", "--e2b-api-url", &e2b.url, "--e2b-sandbox-url", &e2b.url])
//!     .env("E2B_API_KEY", FAKE_E2B_API_KEY)
//!     .start().await;
//! let created = e2b.wait_for(|requests| requests.iter().any(|r| r.path == "/sandboxes")).await;
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use dari_control::sandboxes::e2b::envd::{envelope, next_envelope};
use dari_control::sandboxes::e2b::{ENVD_PORT, SANDBOXD_PATH, WORKSPACE};
use futures_util::StreamExt as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::binaries::binary;

/// The key the fake accepts in `X-API-Key`.
pub const FAKE_E2B_API_KEY: &str = "e2b_f00dfacefeedbeef0123456789abcdef";
/// How long a test waits for a request to reach the fake.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A running fake; it stops, and kills its sandboxes, when dropped.
pub struct FakeE2b {
    /// `http://127.0.0.1:PORT`: the API, and envd of every sandbox.
    pub url: String,
    state: Arc<FakeState>,
}

/// One request the fake got.
#[derive(Clone, Debug)]
pub struct RecordedE2bRequest {
    pub method: Method,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The JSON body (a Connect call's message, unwrapped from its envelope); `Null` if none.
    pub body: Value,
    /// What the fake answered.
    pub status: StatusCode,
}

#[derive(Debug)]
struct FakeState {
    /// Each sandbox's machine directory lives under it.
    root: tempfile::TempDir,
    sandboxd: PathBuf,
    inner: Mutex<Inner>,
    /// How many requests have come, for [`FakeE2b::wait_for`].
    n_requests: watch::Sender<usize>,
    stop: CancellationToken,
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<RecordedE2bRequest>,
    sandboxes: HashMap<String, FakeSandbox>,
    /// The status and message the next creations fail with.
    failure: Option<(StatusCode, String)>,
    n_created: usize,
}

#[derive(Debug)]
struct FakeSandbox {
    env_vars: BTreeMap<String, String>,
    access_token: String,
    machine: PathBuf,
    daemon: Option<tokio::process::Child>,
}

// === impl FakeE2b ===

impl FakeE2b {
    /// Binds a free port and serves E2B's API and envd on it.
    pub async fn start() -> FakeE2b {
        let state = Arc::new(FakeState {
            root: tempfile::tempdir().expect("the fake's machines"),
            sandboxd: binary("sandboxd"),
            inner: Mutex::default(),
            n_requests: watch::Sender::new(0),
            stop: CancellationToken::new(),
        });
        let router = Router::new()
            .route("/sandboxes", post(create))
            .route("/sandboxes/{id}", delete(destroy))
            .route("/process.Process/Start", post(start_process))
            .fallback(other)
            .with_state(state.clone());
        let url = crate::serve_fake(router, state.stop.clone()).await;
        FakeE2b { url, state }
    }

    /// Makes every later `POST /sandboxes` fail with `status` and E2B's error body.
    pub fn fail_creations(&self, status: StatusCode, message: &str) {
        self.state.inner().failure = Some((status, message.to_owned()));
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedE2bRequest> {
        self.state.inner().requests.clone()
    }

    /// The requests to `method path`, in order.
    pub fn requests_to(&self, method: Method, path: &str) -> Vec<RecordedE2bRequest> {
        self.requests().into_iter().filter(|request| request.method == method && request.path == path).collect()
    }

    /// The ids of the sandboxes alive now.
    pub fn live_sandboxes(&self) -> Vec<String> {
        self.state.inner().sandboxes.keys().cloned().collect()
    }

    /// What the machine of a live sandbox holds at `path` (relative to its root, `workspace/…`).
    pub fn machine_path(&self, sandbox_id: &str, path: &str) -> Option<PathBuf> {
        self.state.inner().sandboxes.get(sandbox_id).map(|sandbox| sandbox.machine.join(path))
    }

    /// Waits until the requests so far pass `done`, and returns them. Panics, listing them, after
    /// [`PATIENCE`].
    pub async fn wait_for(&self, done: impl Fn(&[RecordedE2bRequest]) -> bool) -> Vec<RecordedE2bRequest> {
        let mut n_requests = self.state.n_requests.subscribe();
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                let requests = self.requests();
                if done(&requests) {
                    return requests;
                }
                n_requests.changed().await.expect("the fake lives as long as this handle");
            }
        })
        .await;
        waited.unwrap_or_else(|_| panic!("the fake E2B did not get the awaited requests: {:#?}", self.requests()))
    }
}

impl Drop for FakeE2b {
    fn drop(&mut self) {
        self.state.stop.cancel();
        let machines: Vec<FakeSandbox> = self.state.inner().sandboxes.drain().map(|(_, sandbox)| sandbox).collect();
        for sandbox in machines {
            end_machine(sandbox);
        }
    }
}

// === impl FakeState ===

impl FakeState {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, method: Method, uri: &Uri, headers: &HeaderMap, body: Value, status: StatusCode) {
        let headers = headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let request = RecordedE2bRequest { method, path: uri.path().to_owned(), headers, body, status };
        let n_requests = {
            let mut inner = self.inner();
            inner.requests.push(request);
            inner.requests.len()
        };
        self.n_requests.send_replace(n_requests);
    }
}

/// E2B's error body.
fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"code": status.as_u16(), "message": message}))).into_response()
}

fn has_api_key(headers: &HeaderMap) -> bool {
    headers.get("x-api-key").is_some_and(|key| key.as_bytes() == FAKE_E2B_API_KEY.as_bytes())
}

async fn create(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let response = create_sandbox(&state, &headers, &body);
    state.record(method, &uri, &headers, body, response.status());
    response
}

fn create_sandbox(state: &FakeState, headers: &HeaderMap, body: &Value) -> Response {
    if !has_api_key(headers) {
        return error(StatusCode::UNAUTHORIZED, "Invalid API key, please visit https://e2b.dev/docs/api-key");
    }
    let mut inner = state.inner();
    if let Some((status, message)) = &inner.failure {
        return error(*status, message);
    }
    let Some(template_id) = body["templateID"].as_str() else {
        return error(StatusCode::BAD_REQUEST, "templateID is required");
    };
    let env_vars: BTreeMap<String, String> = serde_json::from_value(body["envVars"].clone()).unwrap_or_default();
    inner.n_created += 1;
    let sandbox_id = format!("ifake{:04}", inner.n_created);
    let machine = state.root.path().join(&sandbox_id);
    for dir in ["workspace", "root"] {
        std::fs::create_dir_all(machine.join(dir)).expect("make the machine's directories");
    }
    let access_token = format!("envd-token-{sandbox_id}");
    let sandbox = FakeSandbox { env_vars, access_token: access_token.clone(), machine, daemon: None };
    inner.sandboxes.insert(sandbox_id.clone(), sandbox);
    let created = json!({
        "templateID": template_id,
        "sandboxID": sandbox_id,
        "alias": template_id,
        "clientID": "fakeclient",
        "envdVersion": "0.2.0",
        "envdAccessToken": access_token,
        "trafficAccessToken": null,
        "domain": "fake.e2b.invalid",
    });
    (StatusCode::CREATED, axum::Json(created)).into_response()
}

async fn destroy(
    State(state): State<Arc<FakeState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let response = if !has_api_key(&headers) {
        error(StatusCode::UNAUTHORIZED, "Invalid API key")
    } else {
        let removed = state.inner().sandboxes.remove(&id);
        match removed {
            Some(sandbox) => {
                end_machine(sandbox);
                StatusCode::NO_CONTENT.into_response()
            }
            None => error(StatusCode::NOT_FOUND, &format!("sandbox \"{id}\" not found")),
        }
    };
    state.record(method, &uri, &headers, Value::Null, response.status());
    response
}

async fn start_process(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut buffer = body.to_vec();
    let message = match next_envelope(&mut buffer) {
        Ok(Some((0, message))) => serde_json::from_slice(&message).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let response = start_daemon(&state, &headers, &message);
    state.record(method, &uri, &headers, message, response.status());
    response
}

/// Starts the daemon as envd would and streams its start, or answers as envd (or E2B's proxy)
/// refuses.
fn start_daemon(state: &FakeState, headers: &HeaderMap, message: &Value) -> Response {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    if header("content-type") != "application/connect+json" {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "want application/connect+json").into_response();
    }
    if header("e2b-sandbox-port") != ENVD_PORT.to_string() {
        return (StatusCode::BAD_GATEWAY, "no such port").into_response();
    }
    let mut inner = state.inner();
    let Some(sandbox) = inner.sandboxes.get_mut(&header("e2b-sandbox-id")) else {
        return (StatusCode::BAD_GATEWAY, "The sandbox was not found").into_response();
    };
    if header("x-access-token") != sandbox.access_token {
        return (StatusCode::UNAUTHORIZED, "invalid access token").into_response();
    }
    let process = &message["process"];
    if message.is_null() || process["cmd"] != SANDBOXD_PATH {
        return end_stream_error("invalid_argument", &format!("the template has no {}", process["cmd"]));
    }
    if process["cwd"] != WORKSPACE {
        return end_stream_error("invalid_argument", &format!("cwd {} is not the workspace", process["cwd"]));
    }
    let workspace = sandbox.machine.join("workspace");
    let mut environment = BTreeMap::from([
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".to_owned(), sandbox.machine.join("root").display().to_string()),
        ("USER".to_owned(), "root".to_owned()),
        ("LOGNAME".to_owned(), "root".to_owned()),
    ]);
    environment.extend(sandbox.env_vars.clone());
    let envs: BTreeMap<String, String> = serde_json::from_value(process["envs"].clone()).unwrap_or_default();
    environment.extend(envs);
    for value in environment.values_mut().filter(|value| *value == WORKSPACE) {
        *value = workspace.display().to_string();
    }
    let args: Vec<String> = serde_json::from_value(process["args"].clone()).unwrap_or_default();
    let log = std::fs::File::create(sandbox.machine.join("sandboxd.log")).expect("create the daemon's log");
    #[allow(clippy::disallowed_methods)] // The fake's machine runs the real daemon.
    let mut command = tokio::process::Command::new(&state.sandboxd);
    command
        .args(args)
        .env_clear()
        .envs(&environment)
        .current_dir(&workspace)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("share the log"))
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true);
    let daemon = match command.spawn() {
        Ok(daemon) => daemon,
        Err(error) => return end_stream_error("internal", &format!("start: {error}")),
    };
    let pid = daemon.id().expect("a started daemon has a pid");
    sandbox.daemon = Some(daemon);
    stream_started(pid, state.stop.clone())
}

/// envd's answer to a Start that worked: the start event, then (as the process's output would)
/// nothing until the fake stops.
fn stream_started(pid: u32, stop: CancellationToken) -> Response {
    let started = envelope(0, &json!({"event": {"start": {"pid": pid}}}));
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(started)) }).chain(
        futures_util::stream::once(async move {
            stop.cancelled().await;
            Ok(Bytes::from(envelope(2, &json!({}))))
        }),
    );
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert("content-type", "application/connect+json".parse().expect("a header value"));
    response
}

/// A Connect call that failed: 200, with the error in the end-of-stream message.
fn end_stream_error(code: &str, message: &str) -> Response {
    let body = envelope(2, &json!({"error": {"code": code, "message": message}}));
    ([("content-type", "application/connect+json")], body).into_response()
}

async fn other(State(state): State<Arc<FakeState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    state.record(method, &uri, &headers, Value::Null, StatusCode::NOT_FOUND);
    error(StatusCode::NOT_FOUND, "not found")
}

/// The end of a machine: its daemon and everything working in its directory are killed (the
/// daemon's children have process groups of their own), and the directory removed.
fn end_machine(sandbox: FakeSandbox) {
    if let Some(mut daemon) = sandbox.daemon {
        let _ = daemon.start_kill();
    }
    kill_processes_in(&sandbox.machine);
    let _ = std::fs::remove_dir_all(&sandbox.machine);
}

fn kill_processes_in(machine: &Path) {
    let Ok(machine) = machine.canonicalize() else { return };
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&machine)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
