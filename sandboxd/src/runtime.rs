//! Supervision of the agent's custom runtime server (`harness.customRuntimeServer`).
//!
//! `start` runs `sh -c <command>` in the bundle directory with `PORT` and the declared
//! environment, in its own process group; its stdout and stderr become log events and a bounded
//! ring of recent lines; it is polled on `health_path` until healthy or the start deadline passes.
//! When it exits it is restarted with exponential backoff. `advance` POSTs a JSON body (with
//! control's headers) to `advance_path`, waiting for health first if the server is restarting, and
//! answers with the response or a structured error that carries the status, a body excerpt and
//! recent logs; a server that dies while answering is reported as crashed, with its exit.

mod headers;
mod logs;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dari_protocol::link::{
    AdvanceResponse, DaemonEvent, RuntimeStart, RuntimeState, RuntimeStatus, Stream, error_code,
};
use hyper::Method;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::logs::LogRing;
use crate::http::{self, HttpRequest, Target};
use crate::memory;
use crate::process::{Capture, ChildSpec, Env, GroupChild, Stdin};

/// How many recent log lines an error carries.
const ERROR_LOG_LINES: usize = 40;
/// The largest advance response accepted.
const MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;
/// How much of an unexpected response body an error quotes.
const BODY_EXCERPT_BYTES: usize = 2048;
/// The first restart waits this long; each further one doubles it, up to `MAX_RESTART_DELAY`.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);
/// A server that stayed up this long restarts quickly again after its next exit.
const STABLE_UPTIME: Duration = Duration::from_secs(30);
/// How long an error waits for log lines the server wrote just before failing, which travel
/// through its pipes while its answer travels through the socket.
const LOG_SETTLE: Duration = Duration::from_millis(300);
/// How long a stopping server gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long an advance whose connection broke waits for the supervisor to see the server exit,
/// which tells a crash from a server that merely closed the connection.
const CRASH_SETTLE: Duration = Duration::from_secs(2);

/// The supervisor of at most one runtime server per sandbox.
#[derive(Clone, Debug)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    events: mpsc::Sender<DaemonEvent>,
    status: watch::Sender<RuntimeStatus>,
    logs: Mutex<LogRing>,
    current: Mutex<Option<Supervised>>,
    /// How the last server process ended, for an advance that was talking to it.
    last_exit: Mutex<Option<Exit>>,
}

/// How one server process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Exit {
    pid: u32,
    code: Option<i32>,
    signal: Option<i32>,
    /// Why, when the kernel killed a process for the memory limit while it ran.
    out_of_memory: Option<String>,
}

#[derive(Debug)]
struct Supervised {
    spec: RuntimeStart,
    cwd: std::path::PathBuf,
    cancel: CancellationToken,
}

/// A runtime failure, as the link reports it.
#[derive(Debug, PartialEq)]
pub struct RuntimeError {
    pub code: &'static str,
    pub message: String,
    pub details: serde_json::Value,
}

impl Runtime {
    pub fn new(events: mpsc::Sender<DaemonEvent>) -> Runtime {
        let status = RuntimeStatus { state: RuntimeState::NotStarted, pid: None, restarts: 0 };
        let (status, _) = watch::channel(status);
        Runtime {
            inner: Arc::new(Inner {
                events,
                status,
                logs: Mutex::new(LogRing::new()),
                current: Mutex::new(None),
                last_exit: Mutex::new(None),
            }),
        }
    }

    pub fn status(&self) -> RuntimeStatus {
        self.inner.status.borrow().clone()
    }

    /// Starts the server (or keeps the healthy one with the same spec) and waits until it is
    /// healthy. On failure the server is stopped and the error carries its last log lines.
    pub async fn start(
        &self,
        spec: RuntimeStart,
        cwd: std::path::PathBuf,
        extra_env: Vec<(String, String)>,
    ) -> Result<RuntimeStatus, RuntimeError> {
        let same_and_healthy = {
            let current = lock(&self.inner.current);
            current.as_ref().is_some_and(|supervised| supervised.spec == spec && supervised.cwd == cwd)
                && self.status().state == RuntimeState::Healthy
        };
        if same_and_healthy {
            return Ok(self.status());
        }
        self.stop().await;
        lock(&self.inner.logs).clear();
        let cancel = CancellationToken::new();
        *lock(&self.inner.current) = Some(Supervised { spec: spec.clone(), cwd: cwd.clone(), cancel: cancel.clone() });
        self.inner.status.send_replace(RuntimeStatus { state: RuntimeState::Starting, pid: None, restarts: 0 });
        tokio::spawn(supervise(self.inner.clone(), spec.clone(), cwd, extra_env, cancel));

        let deadline = Instant::now() + Duration::from_millis(spec.start_timeout_ms);
        match self.wait_for_health(deadline).await {
            Ok(status) => Ok(status),
            Err(state) => {
                let message = match state {
                    RuntimeState::Stopped => "the runtime server stopped before it became healthy".to_owned(),
                    _ => format!(
                        "the runtime server did not answer 2xx on {} within {} ms",
                        spec.health_path, spec.start_timeout_ms
                    ),
                };
                let details = self.error_details(None, None);
                self.stop().await;
                Err(RuntimeError { code: error_code::RUNTIME_UNHEALTHY, message, details })
            }
        }
    }

    /// POSTs `body` with `extra_headers` to the advance path and returns the response, or a
    /// structured error.
    pub async fn advance(
        &self,
        body: &serde_json::Value,
        extra_headers: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<AdvanceResponse, RuntimeError> {
        let extra_headers = headers::check(extra_headers).map_err(|message| RuntimeError {
            code: error_code::BAD_REQUEST,
            message,
            details: serde_json::Value::Null,
        })?;
        let Some(spec) = lock(&self.inner.current).as_ref().map(|supervised| supervised.spec.clone()) else {
            return Err(RuntimeError {
                code: error_code::RUNTIME_NOT_STARTED,
                message: "the runtime server is not started; send runtime.start first".to_owned(),
                details: serde_json::Value::Null,
            });
        };
        let deadline = Instant::now() + timeout;
        let Ok(healthy) = self.wait_for_health(deadline).await else {
            return Err(RuntimeError {
                code: error_code::RUNTIME_UNHEALTHY,
                message: format!("the runtime server was not healthy within {} ms", timeout.as_millis()),
                details: self.error_details(None, None),
            });
        };
        let payload = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let mut headers = vec![("content-type", "application/json"), ("accept", "application/json")];
        headers.extend(extra_headers);
        let request = HttpRequest {
            method: Method::POST,
            path: &spec.advance_path,
            headers: &headers,
            body: payload,
            timeout: deadline.saturating_duration_since(Instant::now()),
        };
        let target = Target::Tcp(format!("127.0.0.1:{}", spec.port));
        let (status, response_body) = match http::send(&target, request, MAX_RESPONSE_BYTES).await {
            Ok(response) => response,
            Err(http::HttpError::TimedOut { .. }) => {
                return Err(RuntimeError {
                    code: error_code::TIMED_OUT,
                    message: format!(
                        "the runtime server did not answer POST {} within {} ms",
                        spec.advance_path,
                        timeout.as_millis()
                    ),
                    details: self.error_details(None, None),
                });
            }
            Err(error) => {
                if let Some(pid) = healthy.pid
                    && let Some(exit) = self.exit_of(pid).await
                {
                    return Err(self.crashed(exit, &spec.advance_path).await);
                }
                return Err(RuntimeError {
                    code: error_code::RUNTIME_HTTP_ERROR,
                    message: format!("{:#}", anyhow::Error::new(error)),
                    details: self.error_details(None, None),
                });
            }
        };
        if !(200..300).contains(&status) {
            // The server usually logs why just before it answers; its log pipe races the answer.
            tokio::time::sleep(LOG_SETTLE).await;
            return Err(RuntimeError {
                code: error_code::RUNTIME_HTTP_ERROR,
                message: format!("the runtime server answered POST {} with HTTP {status}", spec.advance_path),
                details: self.error_details(Some(status), Some(&response_body)),
            });
        }
        match serde_json::from_slice(&response_body) {
            Ok(body) => Ok(AdvanceResponse { status, body }),
            Err(error) => Err(RuntimeError {
                code: error_code::RUNTIME_HTTP_ERROR,
                message: format!("the runtime server's answer to POST {} is not JSON: {error}", spec.advance_path),
                details: self.error_details(Some(status), Some(&response_body)),
            }),
        }
    }

    /// Stops the server and its whole process group.
    pub async fn stop(&self) {
        let supervised = lock(&self.inner.current).take();
        if let Some(supervised) = supervised {
            supervised.cancel.cancel();
            // The supervision task reports Stopped once the group is gone.
            let mut status = self.inner.status.subscribe();
            let _ =
                tokio::time::timeout(STOP_GRACE * 2, status.wait_for(|status| status.state == RuntimeState::Stopped))
                    .await;
        }
    }

    /// Waits until healthy; the state that ended the wait otherwise.
    async fn wait_for_health(&self, deadline: Instant) -> Result<RuntimeStatus, RuntimeState> {
        let mut status = self.inner.status.subscribe();
        let waited = tokio::time::timeout_at(
            deadline,
            status.wait_for(|status| matches!(status.state, RuntimeState::Healthy | RuntimeState::Stopped)),
        )
        .await;
        match waited {
            Ok(Ok(status)) if status.state == RuntimeState::Healthy => Ok(status.clone()),
            Ok(Ok(status)) => Err(status.state),
            _ => Err(self.status().state),
        }
    }

    /// How the server process `pid` ended, once the supervisor has seen it end; None when it is
    /// still running after [`CRASH_SETTLE`].
    async fn exit_of(&self, pid: u32) -> Option<Exit> {
        let mut status = self.inner.status.subscribe();
        let _ = tokio::time::timeout(CRASH_SETTLE, status.wait_for(|status| status.pid != Some(pid))).await;
        lock(&self.inner.last_exit).clone().filter(|exit| exit.pid == pid)
    }

    /// The error for an advance whose server exited before answering.
    async fn crashed(&self, exit: Exit, advance_path: &str) -> RuntimeError {
        // The server's last words travel through its pipes, which may not be drained yet.
        tokio::time::sleep(LOG_SETTLE).await;
        let how = match (exit.code, exit.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "exited".to_owned(),
        };
        let recent_logs = lock(&self.inner.logs).last(ERROR_LOG_LINES);
        let mut message =
            format!("the runtime server {how} while answering POST {advance_path}; it is being restarted");
        if let Some(explanation) = &exit.out_of_memory {
            message = format!("{message}. {explanation}");
        }
        RuntimeError {
            code: error_code::RUNTIME_CRASHED,
            message,
            details: serde_json::json!({
                "exit_code": exit.code,
                "signal": exit.signal,
                "out_of_memory": exit.out_of_memory.is_some(),
                "recent_logs": recent_logs,
            }),
        }
    }

    fn error_details(&self, status: Option<u16>, body: Option<&[u8]>) -> serde_json::Value {
        let recent_logs = lock(&self.inner.logs).last(ERROR_LOG_LINES);
        let body_excerpt = body.map(|body| {
            let cut = body.len().min(BODY_EXCERPT_BYTES);
            String::from_utf8_lossy(&body[..cut]).into_owned()
        });
        serde_json::json!({ "status": status, "body_excerpt": body_excerpt, "recent_logs": recent_logs })
    }
}

/// Runs, watches and restarts the server until cancelled.
async fn supervise(
    inner: Arc<Inner>,
    spec: RuntimeStart,
    cwd: std::path::PathBuf,
    extra_env: Vec<(String, String)>,
    cancel: CancellationToken,
) {
    let mut restarts: u32 = 0;
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> =
            vec![("PORT".into(), spec.port.to_string().into())];
        env.extend(extra_env.iter().map(|(key, value)| (key.into(), value.into())));
        env.extend(spec.env.iter().map(|(key, value)| (key.into(), value.into())));
        let child_spec = ChildSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), spec.command.clone().into()],
            cwd: cwd.clone(),
            env: Env::Inherit { overrides: env },
            stdin: Stdin::Null,
            stdout: Capture::Piped,
            stderr: Capture::Piped,
        };
        let oom_kills_before = memory::oom_kills();
        let mut child = match child_spec.spawn() {
            Ok(child) => child,
            Err(error) => {
                let line = format!("sandboxd: failed to {:#}", anyhow::Error::new(error));
                lock(&inner.logs).push(line.clone());
                let _ = inner.events.try_send(DaemonEvent::RuntimeLog { stream: Stream::Stderr, line });
                inner.status.send_replace(RuntimeStatus { state: RuntimeState::Stopped, pid: None, restarts });
                return;
            }
        };
        info!(pid = child.pid(), restarts, "runtime server started");
        let started = Instant::now();
        inner.status.send_replace(RuntimeStatus { state: RuntimeState::Starting, pid: Some(child.pid()), restarts });
        forward_logs(&inner, &mut child);
        let health = poll_health(inner.clone(), spec.clone(), child.pid(), restarts, cancel.clone());
        let health = tokio::spawn(health);
        let exit = tokio::select! {
            status = child.wait() => Some(status),
            () = cancel.cancelled() => None,
        };
        health.abort();
        let Some(status) = exit else {
            let _ = child.terminate_gracefully(STOP_GRACE).await;
            inner.status.send_replace(RuntimeStatus { state: RuntimeState::Stopped, pid: None, restarts });
            return;
        };
        let _ = child.kill_group(Signal::SIGKILL);
        let (code, signal) = match &status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                (status.code(), status.signal())
            }
            Err(_) => (None, None),
        };
        let out_of_memory = memory::killed_since(oom_kills_before);
        warn!(?code, ?signal, out_of_memory = out_of_memory.is_some(), "the runtime server exited; restarting it");
        if let Some(explanation) = &out_of_memory {
            let line = format!("sandboxd: {explanation}");
            lock(&inner.logs).push(line.clone());
            let _ = inner.events.try_send(DaemonEvent::RuntimeLog { stream: Stream::Stderr, line });
        }
        *lock(&inner.last_exit) = Some(Exit { pid: child.pid(), code, signal, out_of_memory });
        let _ = inner.events.try_send(DaemonEvent::RuntimeExited { code, signal });
        restarts += 1;
        if started.elapsed() > STABLE_UPTIME {
            delay = FIRST_RESTART_DELAY;
        }
        inner.status.send_replace(RuntimeStatus { state: RuntimeState::Restarting, pid: None, restarts });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => {
                inner.status.send_replace(RuntimeStatus { state: RuntimeState::Stopped, pid: None, restarts });
                return;
            }
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

/// Polls the health path until it answers 2xx, then marks the server healthy.
async fn poll_health(inner: Arc<Inner>, spec: RuntimeStart, pid: u32, restarts: u32, cancel: CancellationToken) {
    let target = Target::Tcp(format!("127.0.0.1:{}", spec.port));
    let mut interval = Duration::from_millis(10);
    while !cancel.is_cancelled() {
        let request = HttpRequest {
            method: Method::GET,
            path: &spec.health_path,
            headers: &[],
            body: Bytes::new(),
            timeout: Duration::from_secs(2),
        };
        if let Ok((status, _)) = http::send(&target, request, 64 * 1024).await
            && (200..300).contains(&status)
        {
            inner.status.send_replace(RuntimeStatus { state: RuntimeState::Healthy, pid: Some(pid), restarts });
            return;
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(250));
    }
}

/// Turns the server's stdout and stderr into log lines and events.
fn forward_logs(inner: &Arc<Inner>, child: &mut GroupChild) {
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(read_lines(inner.clone(), stdout, Stream::Stdout));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(read_lines(inner.clone(), stderr, Stream::Stderr));
    }
}

async fn read_lines(inner: Arc<Inner>, pipe: impl AsyncRead + Unpin, stream: Stream) {
    let mut reader = BufReader::new(pipe);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = logs::clip(&String::from_utf8_lossy(&buffer));
                lock(&inner.logs).push(line.clone());
                // Logs are progress: when the link is backed up, they are dropped, not queued.
                let _ = inner.events.try_send(DaemonEvent::RuntimeLog { stream, line });
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
