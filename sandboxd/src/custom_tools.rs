//! Custom tools of kind `main`: a Python or TypeScript handler from the source bundle, run in its
//! own process with the input as JSON and its return value read back as JSON.
//!
//! The handler runs under an embedded runner script (`custom_tools/runner.py` with `python3 -c`,
//! `custom_tools/runner.mjs` with tsx or node), in the tool's directory, in its own process group.
//! The runner reads the input from stdin, imports the handler by path, calls the function, and
//! writes one JSON document to a result file under `<workspace>/.dari/tmp/` named by
//! `DARI_TOOL_RESULT_FILE` (which it removes from the handler's environment). So whatever the
//! handler prints is only logs: stdout and stderr merged, the last 50 KB kept.
//!
//! Outcomes: the output and the logs; `tool_failed` when the handler raised, returned something
//! that is not JSON, or exited without a result (details: logs and traceback); `timed_out` and
//! `cancelled` with the logs, after the whole group was killed; `runtime_missing` when the image
//! lacks the interpreter; `bad_request` for a handler path or function that cannot be right.

mod handler;
mod launcher;
mod logs;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use bytes::Bytes;
use dari_protocol::link::{CustomToolOutput, CustomToolRun, OpError, Outcome, error_code};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::handler::Handler;
use self::launcher::{Launch, Runner};
use crate::memory;
use crate::process::{Capture, ChildSpec, DAEMON_ENV_PREFIX, Ending, Env, ProcessError, Stdin};
use crate::tools::ToolContext;

/// The variable that names the result file, for the runner script only.
pub const ENV_TOOL_RESULT_FILE: &str = "DARI_TOOL_RESULT_FILE";
/// The largest input passed to a handler, as JSON.
pub const MAX_INPUT_BYTES: usize = 10 * 1024 * 1024;
/// The largest result read back from a handler, as JSON.
pub const MAX_RESULT_BYTES: u64 = 10 * 1024 * 1024;
/// How much of a handler's output is kept as its logs: the last 50 KB.
pub const MAX_LOG_BYTES: usize = 50 * 1024;
/// Where runs keep their result file and runner script, relative to the workspace.
pub const SCRATCH_DIR: &str = ".dari/tmp";

const PYTHON_RUNNER: &str = include_str!("custom_tools/runner.py");
const MODULE_RUNNER: &str = include_str!("custom_tools/runner.mjs");

/// Runs the handler named by `request` and returns its output, or an error with its logs.
pub async fn run(
    tools: &ToolContext,
    bundle_root: &Path,
    request: CustomToolRun,
    cancel: CancellationToken,
) -> Outcome {
    let span = tracing::info_span!("custom_tool", tool.name = %request.name, tool.runtime = %request.runtime);
    match run_checked(tools, bundle_root, request, cancel).instrument(span).await {
        Ok(output) => Outcome::ok(output),
        Err(error) => Outcome::Error { error: error.0 },
    }
}

/// A failed run, as it goes back to control.
#[derive(Debug)]
struct CustomToolError(OpError);

/// What the runner script writes to the result file.
#[derive(Debug, Deserialize)]
struct HandlerResult {
    ok: bool,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: String,
    #[serde(default)]
    traceback: String,
}

/// The per-run directory under [`SCRATCH_DIR`], removed when dropped.
#[derive(Debug)]
struct Scratch {
    dir: PathBuf,
}

async fn run_checked(
    tools: &ToolContext,
    bundle_root: &Path,
    request: CustomToolRun,
    cancel: CancellationToken,
) -> Result<CustomToolOutput, CustomToolError> {
    let CustomToolRun { name, runtime, handler_file, function, input, timeout_ms } = request;
    let bad = |reason: String| CustomToolError::new(error_code::BAD_REQUEST, format!("custom tool {name}: {reason}"));
    let handler = handler::resolve(bundle_root, &handler_file, &runtime).map_err(bad)?;
    handler::check_function(handler.language, &function).map_err(bad)?;
    if timeout_ms == 0 {
        return Err(bad("timeout_ms must be positive".to_owned()));
    }
    let input = serde_json::to_vec(&input).map_err(|error| bad(format!("encode the input: {error}")))?;
    if input.len() > MAX_INPUT_BYTES {
        return Err(bad(format!(
            "the input is {} bytes of JSON, more than the limit of {MAX_INPUT_BYTES}",
            input.len()
        )));
    }

    let mut env = handler_env(tools, &handler);
    let launch = launcher::choose(&name, &handler, &env, &cancel).await;
    if cancel.is_cancelled() {
        // The probe of node's version may have been cut short: that is no missing runtime.
        let message = format!("custom tool {name} was cancelled before it started");
        return Err(CustomToolError::new(error_code::CANCELLED, message).with(json!({ "logs": "" })));
    }
    let launch = launch.map_err(|message| CustomToolError::new(error_code::RUNTIME_MISSING, message))?;
    let scratch = Scratch::create(tools.workspace.root()).await?;
    let result_file = scratch.dir.join("result.json");
    env.push((ENV_TOOL_RESULT_FILE.into(), result_file.clone().into_os_string()));
    let spec = ChildSpec {
        program: launch.program.clone().into_os_string(),
        args: runner_args(&launch, &scratch, &handler, &function).await?,
        cwd: handler.dir.clone(),
        env: Env::Inherit { overrides: env },
        stdin: Stdin::Piped,
        stdout: Capture::Piped,
        stderr: Capture::Piped,
    };
    tracing::debug!(program = %launch.program.display(), handler = %handler.shown, "starting the handler");
    let oom_kills_before = memory::oom_kills();
    let mut child = spec.spawn().map_err(|error| spawn_failed(&name, &launch, error))?;
    let timeout = Duration::from_millis(timeout_ms);
    let supervision = logs::bounded(timeout, cancel, Some(Bytes::from(input)));
    let (completion, logs) = logs::run_collecting(&mut child, supervision, MAX_LOG_BYTES).await;
    let logs = logs.finish();
    let completion = completion.map_err(|error| CustomToolError::failed(format!("run custom tool {name}: {error}")))?;
    match completion.ending {
        Ending::Exited => {}
        Ending::TimedOut => {
            let message = format!("custom tool {name} timed out after {timeout:?} and was killed");
            return Err(CustomToolError::new(error_code::TIMED_OUT, message).with(json!({ "logs": logs })));
        }
        Ending::Cancelled => {
            let message = format!("custom tool {name} was cancelled and killed");
            return Err(CustomToolError::new(error_code::CANCELLED, message).with(json!({ "logs": logs })));
        }
    }
    let result = read_result(&name, &result_file, completion.status).await;
    drop(scratch);
    match result {
        Ok(HandlerResult { ok: true, output, .. }) => Ok(CustomToolOutput { output, logs }),
        Ok(HandlerResult { error, traceback, .. }) => {
            Err(CustomToolError::new(error_code::TOOL_FAILED, error)
                .with(json!({ "logs": logs, "traceback": traceback })))
        }
        Err(message) => {
            let out_of_memory = memory::killed_since(oom_kills_before);
            let message = match &out_of_memory {
                Some(explanation) => format!("{message}. {explanation}"),
                None => message,
            };
            let exit = exit_details(completion.status);
            Err(CustomToolError::new(error_code::TOOL_FAILED, message)
                .with(json!({ "logs": logs, "traceback": "", "exit": exit, "out_of_memory": out_of_memory.is_some() })))
        }
    }
}

/// The environment on top of the daemon's: the tools' variables (such as
/// `DARI_SOURCE_BUNDLE_ROOT`) and `PWD`. The daemon's `SANDBOXD_*` configuration is left out even
/// if the tools' variables name it.
fn handler_env(tools: &ToolContext, handler: &Handler) -> Vec<(OsString, OsString)> {
    let tool_vars = tools.bash.env.iter().filter(|(key, _)| !key.starts_with(DAEMON_ENV_PREFIX));
    std::iter::once(("PWD".into(), handler.dir.clone().into_os_string()))
        .chain(tool_vars.map(|(key, value)| (key.into(), value.into())))
        .collect()
}

/// The arguments after the program: its flags, the runner script, then the handler's absolute
/// path, the function and the path as written (for messages).
async fn runner_args(
    launch: &Launch,
    scratch: &Scratch,
    handler: &Handler,
    function: &str,
) -> Result<Vec<OsString>, CustomToolError> {
    let mut args = launch.flags.clone();
    match launch.runner {
        Runner::Python => args.extend(["-c".into(), PYTHON_RUNNER.into()]),
        Runner::Module => {
            let script = scratch.dir.join("runner.mjs");
            tokio::fs::write(&script, MODULE_RUNNER)
                .await
                .map_err(|error| CustomToolError::failed(format!("write {}: {error}", script.display())))?;
            args.push(script.into_os_string());
        }
    }
    args.extend([handler.path.clone().into_os_string(), function.into(), handler.shown.clone().into()]);
    Ok(args)
}

fn spawn_failed(name: &str, launch: &Launch, error: ProcessError) -> CustomToolError {
    let program = launch.program.display();
    match &error {
        ProcessError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            let message = format!("custom tool {name} needs {program}, which could not be started: {source}");
            CustomToolError::new(error_code::RUNTIME_MISSING, message)
        }
        _ => CustomToolError::failed(format!("run custom tool {name}: {error}: {}", source_text(&error))),
    }
}

/// Reads what the runner wrote; the error says why there is no usable result.
async fn read_result(name: &str, result_file: &Path, status: ExitStatus) -> Result<HandlerResult, String> {
    let without = |what: &str| format!("custom tool {name} {} {what}; see its logs", describe_exit(status));
    match tokio::fs::metadata(result_file).await {
        Ok(metadata) if metadata.len() > MAX_RESULT_BYTES => {
            return Err(format!(
                "custom tool {name} returned {} bytes of JSON, more than the limit of {MAX_RESULT_BYTES}",
                metadata.len()
            ));
        }
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(without("without a result")),
        Err(error) => return Err(without(&format!("and its result cannot be read: {error}"))),
    }
    let bytes = tokio::fs::read(result_file)
        .await
        .map_err(|error| without(&format!("and its result cannot be read: {error}")))?;
    serde_json::from_slice(&bytes).map_err(|error| without(&format!("with a malformed result ({error})")))
}

/// "exited with code 3" or "was killed by signal 9".
fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
    }
}

fn exit_details(status: ExitStatus) -> Value {
    json!({ "code": status.code(), "signal": status.signal() })
}

fn source_text(error: &dyn std::error::Error) -> String {
    error.source().map_or_else(String::new, ToString::to_string)
}

// === impl CustomToolError ===

impl CustomToolError {
    fn new(code: &str, message: impl Into<String>) -> CustomToolError {
        CustomToolError(OpError { code: code.to_owned(), message: message.into(), details: Value::Null })
    }

    fn failed(message: String) -> CustomToolError {
        CustomToolError::new(error_code::FAILED, message)
    }

    fn with(mut self, details: Value) -> CustomToolError {
        self.0.details = details;
        self
    }
}

// === impl Scratch ===

impl Scratch {
    /// Creates a fresh directory under `<workspace>/.dari/tmp/`.
    async fn create(workspace: &Path) -> Result<Scratch, CustomToolError> {
        let parent = workspace.join(SCRATCH_DIR);
        let dir = parent.join(format!("custom-tool-{:016x}", fastrand::u64(..)));
        let created = async {
            tokio::fs::create_dir_all(&parent).await?;
            tokio::fs::create_dir(&dir).await
        };
        created.await.map_err(|error| CustomToolError::failed(format!("create {}: {error}", dir.display())))?;
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("failed to remove {}: {error:#}", self.dir.display());
        }
    }
}
