//! Runs one operation for a request and reports its chunks, events and outcome to the core.

mod utf8;

use std::sync::Arc;
use std::time::Duration;

use dari_protocol::link::{
    DaemonEvent, ExecOutcome, FileChange, OpError, Operation, Outcome, RuntimeStart, Stream, error_code,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::utf8::Utf8Stream;
use crate::bundle::{ControlEndpoint, ENV_SOURCE_BUNDLE_ROOT, source_bundle_root};
use crate::exec::{self, ExecEvent};
use crate::pty::{PtyEvent, PtyManager};
use crate::runtime::{Runtime, RuntimeError};
use crate::tools::{ToolContext, ToolUpdate, run_tool};
use crate::watch::{WatchEvent, WatchRequest, Watches};

/// What running work tells the core.
#[derive(Debug)]
pub enum WorkEvent {
    Chunk { request_id: String, stream: Stream, data: String },
    Done { request_id: String, outcome: Outcome },
}

/// The daemon's capabilities that operations use.
#[derive(Clone)]
pub struct Services {
    pub tools: ToolContext,
    /// How to reach control for downloads (the source bundle).
    pub control: ControlEndpoint,
    pub runtime: Runtime,
    pub ptys: Arc<PtyManager>,
    pub watches: Arc<Watches>,
    /// Events that happen without a request (PTY output, file changes).
    pub events: mpsc::Sender<DaemonEvent>,
}

impl Services {
    /// Builds the services for a workspace; `events` carries what happens without a request.
    pub fn new(tools: ToolContext, control: ControlEndpoint, events: mpsc::Sender<DaemonEvent>) -> Services {
        let workspace = tools.workspace.clone();
        Services {
            runtime: Runtime::new(events.clone()),
            ptys: Arc::new(PtyManager::new(workspace.clone())),
            watches: Arc::new(Watches::new(workspace)),
            tools,
            control,
            events,
        }
    }

    /// Stops every child the daemon started: the runtime server and the terminals.
    pub async fn shutdown(&self) {
        self.runtime.stop().await;
        self.ptys.shutdown().await;
    }
}

/// Runs `op` to completion (or cancellation) and returns its outcome; chunks go to `work`.
pub async fn run(
    services: &Services,
    request_id: &str,
    op: Operation,
    work: &mpsc::Sender<WorkEvent>,
    cancel: CancellationToken,
) -> Outcome {
    match op {
        Operation::ToolRun { name, arguments } => {
            run_tool_op(services, request_id, &name, arguments, work, cancel).await
        }
        Operation::BundleMaterialize(request) => {
            match crate::bundle::materialize(services.tools.workspace.root(), &services.control, &request).await {
                Ok(materialized) => Outcome::ok(materialized),
                Err(error) => failed(error),
            }
        }
        Operation::CustomToolRun(request) => {
            let bundle_root = source_bundle_root(services.tools.workspace.root());
            crate::custom_tools::run(&services.tools, &bundle_root, request, cancel).await
        }
        Operation::Exec(request) => run_exec(services, request_id, request, work, cancel).await,
        Operation::RuntimeStart(spec) => start_runtime(services, spec).await,
        Operation::RuntimeAdvance { body, timeout_ms, headers } => {
            match services.runtime.advance(&body, &headers, Duration::from_millis(timeout_ms)).await {
                Ok(response) => Outcome::ok(response),
                Err(error) => runtime_error(error),
            }
        }
        Operation::RuntimeStatus => Outcome::ok(services.runtime.status()),
        Operation::RuntimeStop => {
            services.runtime.stop().await;
            Outcome::ok(serde_json::Value::Null)
        }
        Operation::PtyOpen(request) => open_pty(services, request).await,
        Operation::PtyInput { id, data } => unit(services.ptys.input(&id, bytes::Bytes::from(data)).await),
        Operation::PtyResize { id, cols, rows } => unit(services.ptys.resize(&id, cols, rows)),
        Operation::PtyClose { id } => unit(services.ptys.close(&id).await),
        Operation::FsWatch(request) => watch(services, request).await,
        Operation::FsUnwatch { id } => unit(services.watches.unwatch(&id).await),
        Operation::WorkspaceArchive(request) => {
            let archived =
                crate::workspace_archive::archive(services.tools.workspace.root(), &services.control, &request).await;
            archive_outcome(archived)
        }
        Operation::WorkspaceRestore(request) => {
            let restored =
                crate::workspace_archive::restore(services.tools.workspace.root(), &services.control, &request).await;
            archive_outcome(restored)
        }
        Operation::Unsupported => Outcome::error(
            error_code::UNSUPPORTED_OPERATION,
            "this daemon does not know the operation; upgrade the sandbox image",
        ),
    }
}

async fn run_tool_op(
    services: &Services,
    request_id: &str,
    name: &str,
    arguments: serde_json::Value,
    work: &mpsc::Sender<WorkEvent>,
    cancel: CancellationToken,
) -> Outcome {
    let (updates_tx, mut updates_rx) = mpsc::channel::<ToolUpdate>(64);
    let forward = async {
        while let Some(update) = updates_rx.recv().await {
            let chunk =
                WorkEvent::Chunk { request_id: request_id.to_owned(), stream: Stream::Output, data: update.chunk };
            if work.send(chunk).await.is_err() {
                break;
            }
        }
    };
    let tool = run_tool(&services.tools, name, arguments, cancel.clone(), Some(updates_tx));
    let (result, ()) = tokio::join!(tool, forward);
    if cancel.is_cancelled() && result.is_error {
        let error = OpError {
            code: error_code::CANCELLED.to_owned(),
            message: format!("tool {name} was cancelled"),
            details: serde_json::to_value(&result).unwrap_or_default(),
        };
        return Outcome::Error { error };
    }
    Outcome::ok(result)
}

async fn run_exec(
    services: &Services,
    request_id: &str,
    request: dari_protocol::link::ExecRequest,
    work: &mpsc::Sender<WorkEvent>,
    cancel: CancellationToken,
) -> Outcome {
    let mut env = request.env;
    for (key, value) in &services.tools.bash.env {
        env.entry(key.clone()).or_insert_with(|| value.clone());
    }
    let request = exec::ExecRequest {
        argv: request.argv,
        shell: request.shell,
        cwd: request.cwd,
        env,
        stdin: request.stdin.map(String::into_bytes),
        timeout: request.timeout_ms.map(Duration::from_millis),
    };
    let (events_tx, mut events_rx) = mpsc::channel::<ExecEvent>(64);
    let forward = async {
        let (mut stdout, mut stderr) = (Utf8Stream::default(), Utf8Stream::default());
        while let Some(event) = events_rx.recv().await {
            let (stream, data) = match event {
                ExecEvent::Stdout(bytes) => (Stream::Stdout, stdout.push(&bytes)),
                ExecEvent::Stderr(bytes) => (Stream::Stderr, stderr.push(&bytes)),
                ExecEvent::Exited { .. } => (Stream::Stdout, stdout.finish() + &stderr.finish()),
            };
            if !data.is_empty() {
                let chunk = WorkEvent::Chunk { request_id: request_id.to_owned(), stream, data };
                if work.send(chunk).await.is_err() {
                    break;
                }
            }
        }
    };
    let run = exec::exec(&services.tools.workspace, request, events_tx, cancel);
    let (outcome, ()) = tokio::join!(run, forward);
    match outcome {
        Ok(outcome) if outcome.cancelled => Outcome::error(error_code::CANCELLED, "the command was cancelled"),
        Ok(outcome) => {
            Outcome::ok(ExecOutcome { exit_code: outcome.code, signal: outcome.signal, timed_out: outcome.timed_out })
        }
        Err(error) => Outcome::error(error_code::BAD_REQUEST, format!("{:#}", anyhow::Error::new(error))),
    }
}

async fn start_runtime(services: &Services, spec: RuntimeStart) -> Outcome {
    let workspace = &services.tools.workspace;
    let bundle = source_bundle_root(workspace.root());
    let cwd = match spec.cwd.as_deref() {
        Some(cwd) => match workspace.resolve(cwd) {
            Ok(cwd) => cwd,
            Err(error) => return Outcome::error(error_code::BAD_REQUEST, error.0),
        },
        None if bundle.is_dir() => bundle.clone(),
        None => workspace.root().to_path_buf(),
    };
    let extra_env = vec![(ENV_SOURCE_BUNDLE_ROOT.to_owned(), bundle.display().to_string())];
    match services.runtime.start(spec, cwd, extra_env).await {
        Ok(status) => Outcome::ok(status),
        Err(error) => runtime_error(error),
    }
}

async fn open_pty(services: &Services, request: dari_protocol::link::PtyOpen) -> Outcome {
    let (events_tx, mut events_rx) = mpsc::channel::<PtyEvent>(64);
    let open = crate::pty::PtyOpen {
        id: request.id,
        command: request.command,
        cwd: request.cwd,
        env: request.env,
        cols: request.cols,
        rows: request.rows,
    };
    if let Err(error) = services.ptys.open(open, events_tx).await {
        return failed(error);
    }
    let events = services.events.clone();
    // Ends when the terminal's channel closes, after its exit event.
    tokio::spawn(async move {
        let mut decoders: std::collections::HashMap<String, Utf8Stream> = std::collections::HashMap::new();
        while let Some(event) = events_rx.recv().await {
            let event = match event {
                PtyEvent::Output { id, data } => {
                    let text = decoders.entry(id.clone()).or_default().push(&data);
                    if text.is_empty() {
                        continue;
                    }
                    DaemonEvent::PtyOutput { id, data: text }
                }
                PtyEvent::Exited { id, code } => DaemonEvent::PtyExited { id, code },
            };
            if events.send(event).await.is_err() {
                break;
            }
        }
    });
    Outcome::ok(serde_json::Value::Null)
}

async fn watch(services: &Services, request: dari_protocol::link::FsWatch) -> Outcome {
    let (events_tx, mut events_rx) = mpsc::channel::<WatchEvent>(64);
    let watch_request = WatchRequest {
        id: request.id,
        path: request.path,
        recursive: request.recursive,
        debounce: request.debounce_ms.map(Duration::from_millis),
    };
    if let Err(error) = services.watches.watch(watch_request, events_tx).await {
        return failed(error);
    }
    let events = services.events.clone();
    // Ends when the watch's channel closes, after unwatch.
    tokio::spawn(async move {
        while let Some(event) = events_rx.recv().await {
            let event = match event {
                WatchEvent::Changed { id, changes } => DaemonEvent::FilesChanged {
                    id,
                    changes: changes
                        .into_iter()
                        .map(|change| FileChange {
                            path: change.path,
                            kind: format!("{:?}", change.kind).to_lowercase(),
                        })
                        .collect(),
                },
                WatchEvent::Error { id, message } => DaemonEvent::WatchFailed { id, message },
            };
            if events.send(event).await.is_err() {
                break;
            }
        }
    });
    Outcome::ok(serde_json::Value::Null)
}

fn runtime_error(error: RuntimeError) -> Outcome {
    Outcome::Error { error: OpError { code: error.code.to_owned(), message: error.message, details: error.details } }
}

fn archive_outcome(result: Result<impl serde::Serialize, crate::workspace_archive::ArchiveError>) -> Outcome {
    match result {
        Ok(value) => Outcome::ok(value),
        Err(error) if error.is_bad_request() => {
            Outcome::error(error_code::BAD_REQUEST, format!("{:#}", anyhow::Error::new(error)))
        }
        Err(error) => failed(error),
    }
}

fn unit<E: std::error::Error + Send + Sync + 'static>(result: Result<(), E>) -> Outcome {
    match result {
        Ok(()) => Outcome::ok(serde_json::Value::Null),
        Err(error) => failed(error),
    }
}

fn failed<E: std::error::Error + Send + Sync + 'static>(error: E) -> Outcome {
    Outcome::error(error_code::FAILED, format!("{:#}", anyhow::Error::new(error)))
}
