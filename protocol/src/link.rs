//! The link between the control plane and `sandboxd`: one WebSocket per sandbox, dialled by the
//! daemon, carrying JSON text frames (and binary frames for bulk bytes).
//!
//! The guarantees, and who keeps them (see `docs/link-protocol.md`):
//! - Every message the daemon sends that matters (results, streamed chunks, events) goes through
//!   its **outbox** with a sequence number; control acknowledges with [`ControlFrame::Ack`] and
//!   after a reconnect tells the daemon, in [`ControlFrame::Welcome`], how far it got; the daemon
//!   replays the rest in order. Nothing is lost while the daemon lives.
//! - Control may send a request again after a reconnect; the daemon answers a repeated request id
//!   from its record of finished requests and never runs it twice.
//!
//! **Version drift:** the daemon is baked into images and may be older or newer than control, so
//! nothing here denies unknown fields, new fields carry `#[serde(default)]`, and an operation a
//! daemon does not know deserializes as [`Operation::Unsupported`] and is answered with an error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tools::ToolResult;

/// The version of this protocol. A peer refuses a hello whose major version it does not speak.
pub const LINK_PROTOCOL_VERSION: u32 = 1;

/// The path on control that the daemon dials: `/internal/sandboxes/{sandbox_id}/link`.
pub fn link_path(sandbox_id: &str) -> String {
    format!("/internal/sandboxes/{sandbox_id}/link")
}

/// Frames the daemon sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DaemonFrame {
    /// The first frame on every connection.
    Hello(Hello),
    /// One reliable message, numbered in the daemon's outbox.
    Outbox { seq: u64, message: DaemonMessage },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub daemon_version: String,
    pub sandbox_id: String,
    /// Random per daemon process: a new boot id tells control that the daemon restarted and that
    /// requests it had not answered are gone and must be sent again.
    pub boot_id: String,
    /// The operations this daemon can run (`tool.run`, `exec`, ...).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Frames control sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlFrame {
    /// The answer to [`Hello`]: control has processed the daemon's outbox through `acked_through`
    /// for this `boot_id` (0 for a boot it has not seen).
    Welcome {
        protocol: u32,
        control_version: String,
        #[serde(default)]
        acked_through: u64,
    },
    /// Run an operation. `id` is chosen by control, unique per sandbox, and may arrive again.
    Request { id: String, op: Operation },
    /// Stop a running request; its result (an error saying it was cancelled) still arrives.
    Cancel { id: String },
    /// Control has durably processed the daemon's outbox through `through`.
    Ack { through: u64 },
    /// Stop: finish or cancel running work within `grace_ms`, flush the outbox, and exit.
    Shutdown {
        #[serde(default = "default_grace_ms")]
        grace_ms: u64,
    },
}

fn default_grace_ms() -> u64 {
    10_000
}

/// A reliable message from the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DaemonMessage {
    /// Streamed progress of a running request (tool or exec output).
    Chunk { request_id: String, stream: Stream, data: String },
    /// The final outcome of a request. Exactly one per request id is ever produced; a repeat of
    /// it (answered from the record) is identical.
    Result { request_id: String, outcome: Outcome },
    /// Something that happened without a request: runtime logs, a PTY's output, a file change.
    Event { event: DaemonEvent },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// A tool's merged output.
    Output,
    Stdout,
    Stderr,
}

/// A request's outcome: a value whose shape depends on the operation, or an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Ok { value: serde_json::Value },
    Error { error: OpError },
}

/// Why an operation failed. `code` is stable and machine-readable; `message` is for people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: serde_json::Value,
}

/// Error codes of [`OpError`].
pub mod error_code {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNSUPPORTED_OPERATION: &str = "unsupported_operation";
    pub const CANCELLED: &str = "cancelled";
    pub const SHUTTING_DOWN: &str = "shutting_down";
    pub const FAILED: &str = "failed";
    pub const TIMED_OUT: &str = "timed_out";
    pub const RUNTIME_UNHEALTHY: &str = "runtime_unhealthy";
    pub const RUNTIME_NOT_STARTED: &str = "runtime_not_started";
    pub const RUNTIME_HTTP_ERROR: &str = "runtime_http_error";
    pub const NOT_FOUND: &str = "not_found";
    /// A custom tool's handler raised or returned something that is not JSON.
    pub const TOOL_FAILED: &str = "tool_failed";
    /// What a custom tool needs (python3, tsx or a new enough node) is not in the sandbox.
    pub const RUNTIME_MISSING: &str = "runtime_missing";
    /// A repeated request that already ran, whose outcome the daemon no longer keeps; it is not
    /// run again.
    pub const RESULT_FORGOTTEN: &str = "result_forgotten";
    /// The runtime server's process exited while it was answering an advance; `details` has
    /// `exit_code`, `signal` and `recent_logs`.
    pub const RUNTIME_CRASHED: &str = "runtime_crashed";
}

/// The operations control can ask for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Operation {
    /// Run a built-in tool. Value: a [`ToolResult`]. Chunks: [`Stream::Output`].
    #[serde(rename = "tool.run")]
    ToolRun { name: String, arguments: serde_json::Value },
    /// Fetch the source bundle, check its sha256, and unpack it read-only under
    /// `<workspace>/.dari/agent-resources/source-bundle`. Value: [`BundleMaterialized`].
    /// Idempotent: a bundle already there with this sha256 is kept.
    #[serde(rename = "bundle.materialize")]
    BundleMaterialize(BundleMaterialize),
    /// Run a custom tool of kind `main` from the source bundle. Value: [`CustomToolOutput`].
    #[serde(rename = "custom_tool.run")]
    CustomToolRun(CustomToolRun),
    /// Run a command. Value: [`ExecOutcome`]. Chunks: stdout and stderr.
    #[serde(rename = "exec")]
    Exec(ExecRequest),
    /// Start (or restart) the custom runtime server and wait until it is healthy. Value:
    /// [`RuntimeStatus`].
    #[serde(rename = "runtime.start")]
    RuntimeStart(RuntimeStart),
    /// POST a JSON body to the runtime's advance path, with `headers` besides the content type
    /// (`Dari-Protocol`, `Dari-Session-Id`, `Dari-Message-Id`, `Idempotency-Key`). Value:
    /// [`AdvanceResponse`].
    #[serde(rename = "runtime.advance")]
    RuntimeAdvance {
        body: serde_json::Value,
        timeout_ms: u64,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// Value: [`RuntimeStatus`].
    #[serde(rename = "runtime.status")]
    RuntimeStatus,
    /// Stop the runtime server. Value: null.
    #[serde(rename = "runtime.stop")]
    RuntimeStop,
    /// Open a terminal. Value: null. Output arrives as [`DaemonEvent::PtyOutput`], the end as
    /// [`DaemonEvent::PtyExited`].
    #[serde(rename = "pty.open")]
    PtyOpen(PtyOpen),
    /// Type into a terminal. Value: null.
    #[serde(rename = "pty.input")]
    PtyInput { id: String, data: String },
    /// Value: null.
    #[serde(rename = "pty.resize")]
    PtyResize { id: String, cols: u16, rows: u16 },
    /// Kill the terminal's processes. Value: null.
    #[serde(rename = "pty.close")]
    PtyClose { id: String },
    /// Watch a directory; changes arrive as [`DaemonEvent::FilesChanged`]. Value: null.
    #[serde(rename = "fs.watch")]
    FsWatch(FsWatch),
    /// Value: null.
    #[serde(rename = "fs.unwatch")]
    FsUnwatch { id: String },
    /// Pack the workspace into a tar.gz and PUT it to `url`. Value: [`WorkspaceArchived`].
    #[serde(rename = "workspace.archive")]
    WorkspaceArchive(WorkspaceArchive),
    /// Fetch a workspace archive, check it, and unpack it over the workspace. Value:
    /// [`WorkspaceRestored`].
    #[serde(rename = "workspace.restore")]
    WorkspaceRestore(WorkspaceRestore),
    /// An operation this daemon does not know, from a newer control.
    #[serde(other)]
    Unsupported,
}

impl Operation {
    /// The operation names a daemon of this version supports, for [`Hello::capabilities`].
    pub const NAMES: [&'static str; 16] = [
        "tool.run",
        "custom_tool.run",
        "bundle.materialize",
        "exec",
        "runtime.start",
        "runtime.advance",
        "runtime.status",
        "runtime.stop",
        "pty.open",
        "pty.input",
        "pty.resize",
        "pty.close",
        "fs.watch",
        "fs.unwatch",
        "workspace.archive",
        "workspace.restore",
    ];
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BundleMaterialize {
    /// Where to GET the tar.gz: a path on control (`/internal/...`, fetched the way the link
    /// reaches control, with the sandbox token) or an absolute `http://` URL.
    pub url: String,
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BundleMaterialized {
    /// The bundle's directory, exported to tools as `DARI_SOURCE_BUNDLE_ROOT`.
    pub root: String,
    pub sha256: String,
    pub file_count: usize,
    /// The extension directories copied to `<workspace>/.dari/agent-resources/extensions`.
    pub extensions: Vec<String>,
    /// False when the same bundle was already in place.
    pub fetched: bool,
}

/// What to leave out of a workspace archive, and where to send it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceArchive {
    /// Where to PUT the tar.gz: a path on control (`/internal/sandboxes/{id}/workspace`, reached
    /// the way the link reaches control, with the sandbox token) or an absolute `http://` URL.
    pub url: String,
    /// Paths relative to the workspace left out with everything under them.
    /// `.dari/agent-resources` (the source bundle, materialized again in every sandbox) is always
    /// left out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The largest archive sent; a larger workspace is refused.
    #[serde(default = "default_max_archive_bytes")]
    pub max_bytes: u64,
}

fn default_max_archive_bytes() -> u64 {
    1 << 30
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceArchived {
    /// Lowercase hex sha256 of the tar.gz sent.
    pub sha256: String,
    pub size_bytes: u64,
    /// Regular files in the archive (directories and symlinks are not counted).
    pub file_count: usize,
    /// The first paths left out because a restore could not bring them back: sockets, fifos,
    /// devices, symlinks that lead outside the workspace, names that are not UTF-8.
    #[serde(default)]
    pub skipped: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceRestore {
    /// Where to GET the tar.gz, as in [`WorkspaceArchive::url`].
    pub url: String,
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceRestored {
    /// Regular files written.
    pub file_count: usize,
}

/// A command to run: `argv` directly, or `shell` through `sh -c`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    #[serde(default)]
    pub shell: Option<String>,
    /// Relative to the workspace; defaults to it.
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Written to the command's stdin, which is then closed.
    #[serde(default)]
    pub stdin: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomToolRun {
    /// The tool's name, for messages.
    pub name: String,
    /// `python` or `typescript`.
    pub runtime: String,
    /// The handler's file, relative to the source bundle root (`tools/search/handler.py`).
    pub handler_file: String,
    /// The function the file exports.
    pub function: String,
    /// The arguments, passed to the function as one JSON value.
    pub input: serde_json::Value,
    pub timeout_ms: u64,
}

/// A custom tool's return value, and what it printed while running.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomToolOutput {
    pub output: serde_json::Value,
    /// stdout and stderr of the handler's process, cut to the last 50 KB.
    pub logs: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PtyOpen {
    /// Chosen by control; names the terminal in later operations and events.
    pub id: String,
    /// The program and its arguments; the user's shell when absent.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cols: u16,
    pub rows: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FsWatch {
    pub id: String,
    /// Relative to the workspace.
    pub path: String,
    #[serde(default = "default_true")]
    pub recursive: bool,
    #[serde(default)]
    pub debounce_ms: Option<u64>,
}

fn default_true() -> bool {
    true
}

/// One changed path, relative to the workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    /// `created`, `modified`, `removed` or `renamed`.
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecOutcome {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeStart {
    /// Run with `sh -c` in `cwd`.
    pub command: String,
    pub port: u16,
    pub health_path: String,
    pub advance_path: String,
    /// Relative to the workspace; the source bundle's directory in a session.
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// How long the server may take to become healthy.
    #[serde(default = "default_start_timeout_ms")]
    pub start_timeout_ms: u64,
}

fn default_start_timeout_ms() -> u64 {
    60_000
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeStatus {
    pub state: RuntimeState,
    pub pid: Option<u32>,
    pub restarts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeState {
    NotStarted,
    Starting,
    Healthy,
    Restarting,
    Stopped,
}

/// The runtime server's answer to an advance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdvanceResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

/// Things that happen in the sandbox without a request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DaemonEvent {
    /// Lines the runtime server wrote to stdout or stderr.
    RuntimeLog { stream: Stream, line: String },
    /// The runtime server exited; it is restarted with backoff.
    RuntimeExited { code: Option<i32>, signal: Option<i32> },
    /// A terminal's output, decoded as UTF-8 (a character split across reads is kept whole).
    PtyOutput { id: String, data: String },
    /// A terminal's program ended.
    PtyExited { id: String, code: Option<i32> },
    /// A debounced batch of changes under a watch.
    FilesChanged { id: String, changes: Vec<FileChange> },
    /// A watch failed (for example the kernel dropped events).
    WatchFailed { id: String, message: String },
    /// The kernel killed a process of the sandbox for reaching its memory limit: `oom_kills` is
    /// the sandbox's count so far, `limit_mb` its limit.
    OutOfMemory { oom_kills: u64, limit_mb: Option<u64> },
    /// An event kind this control does not know, from a newer daemon.
    #[serde(other)]
    Unknown,
}

impl Outcome {
    pub fn ok(value: impl Serialize) -> Outcome {
        match serde_json::to_value(value) {
            Ok(value) => Outcome::Ok { value },
            Err(error) => Outcome::error(error_code::FAILED, format!("encode the result: {error}")),
        }
    }

    pub fn error(code: &str, message: impl Into<String>) -> Outcome {
        Outcome::Error {
            error: OpError { code: code.to_owned(), message: message.into(), details: serde_json::Value::Null },
        }
    }

    /// The value as a tool result, for `tool.run`.
    pub fn tool_result(&self) -> Option<ToolResult> {
        match self {
            Outcome::Ok { value } => serde_json::from_value(value.clone()).ok(),
            Outcome::Error { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operations_and_fields_are_tolerated() {
        let frame: ControlFrame =
            serde_json::from_str(r#"{"type":"request","id":"r1","op":{"op":"fs.teleport","to":"mars"}}"#)
                .expect("parse");
        assert_eq!(frame, ControlFrame::Request { id: "r1".to_owned(), op: Operation::Unsupported });
        let frame: ControlFrame = serde_json::from_str(
            r#"{"type":"request","id":"r2","op":{"op":"tool.run","name":"ls","arguments":{},"priority":"high"}}"#,
        )
        .expect("parse");
        assert!(matches!(frame, ControlFrame::Request { op: Operation::ToolRun { .. }, .. }));
        let welcome: ControlFrame =
            serde_json::from_str(r#"{"type":"welcome","protocol":1,"control_version":"9.9","region":"x"}"#)
                .expect("parse");
        assert_eq!(welcome, ControlFrame::Welcome { protocol: 1, control_version: "9.9".to_owned(), acked_through: 0 });
    }

    #[test]
    fn wire_shapes_are_stable() {
        let frame = DaemonFrame::Outbox {
            seq: 7,
            message: DaemonMessage::Result {
                request_id: "r1".to_owned(),
                outcome: Outcome::ok(serde_json::json!({"a": 1})),
            },
        };
        assert_eq!(
            serde_json::to_string(&frame).expect("encode"),
            r#"{"type":"outbox","seq":7,"message":{"kind":"result","request_id":"r1","outcome":{"status":"ok","value":{"a":1}}}}"#
        );
        let request = ControlFrame::Request { id: "r2".to_owned(), op: Operation::RuntimeStatus };
        assert_eq!(
            serde_json::to_string(&request).expect("encode"),
            r#"{"type":"request","id":"r2","op":{"op":"runtime.status"}}"#
        );
    }
}
