//! The `bash` tool: `<shell> -c <command>` in the workspace root, with pi's semantics (stdout and
//! stderr merged, the tail kept, the full output saved to a file named in the footer, a non-zero
//! exit as an error) and what pi lacks: a default and a maximum timeout, and background jobs that
//! cannot hang the call, because the whole process group is killed once the shell exits.

#[cfg(test)]
mod tests;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use dari_protocol::tools::ToolResult;
use nix::sys::signal::Signal;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::truncate::{DEFAULT_MAX_BYTES, DEFAULT_MAX_LINES, Truncation, format_size, truncate_tail};
use super::{BashConfig, ToolContext, ToolError, ToolUpdate, Workspace, args};
use crate::memory;
use crate::process::{self, Capture, ChildSpec, Completion, Ending, Env, Stdin, Supervision};

/// The most recent output kept in memory: twice what reaches the model, so that the kept tail
/// never reaches the cut at the start of the buffer.
const ROLLING_BYTES: usize = 2 * DEFAULT_MAX_BYTES;
/// Updates are sent at most this often.
const UPDATE_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Deserialize)]
struct BashParams {
    command: String,
    #[serde(default)]
    timeout: Option<Value>,
}

/// Runs one command. Updates are sent without waiting while the command runs (a full channel
/// delays them); the last one is awaited, so the receiver must be drained while the tool runs.
pub(crate) async fn run(
    context: &ToolContext,
    arguments: Value,
    cancel: CancellationToken,
    updates: Option<mpsc::Sender<ToolUpdate>>,
) -> Result<ToolResult, ToolError> {
    let params: BashParams = args::parse("bash", arguments)?;
    let timeout = effective_timeout(params.timeout.as_ref(), &context.bash)?;
    if params.command.contains('\0') {
        return Err(ToolError::new("invalid arguments for bash: command contains a NUL byte"));
    }
    let root = context.workspace.root();
    let spec = ChildSpec {
        program: context.bash.shell.clone().into_os_string(),
        args: vec!["-c".into(), params.command.into()],
        cwd: root.to_path_buf(),
        env: Env::Inherit {
            overrides: std::iter::once(("PWD".into(), root.as_os_str().to_owned()))
                .chain(context.bash.env.iter().map(|(key, value)| (key.into(), value.into())))
                .collect(),
        },
        stdin: Stdin::Null,
        stdout: Capture::Piped,
        stderr: Capture::Piped,
    };
    let oom_kills_before = memory::oom_kills();
    let mut child = spec.spawn().map_err(|error| ToolError(error_chain(&error)))?;
    let (chunks_tx, chunks_rx) = mpsc::channel(16);
    let supervision = Supervision { deadline: Some(Instant::now() + timeout), cancel, stdin: None };
    let collector = Collector::new(context.bash.output_dir.clone(), updates);
    let (completion, collector) = tokio::join!(
        process::supervise(&mut child, supervision, chunks_tx, |_stream, chunk| chunk),
        collector.collect(chunks_rx),
    );
    let completion = completion.map_err(|error| ToolError(error_chain(&error)))?;
    let mut result = collector.finish(&context.workspace, completion, timeout).await;
    if let Some(explanation) = memory::killed_since(oom_kills_before) {
        result.append_paragraph(&explanation);
        result.details["outOfMemory"] = Value::Bool(true);
    }
    Ok(result)
}

/// The call's timeout: the default when absent, clamped to the maximum; zero, negative or not a
/// number is an error.
fn effective_timeout(value: Option<&Value>, config: &BashConfig) -> Result<Duration, ToolError> {
    let seconds = match value {
        None | Some(Value::Null) => return Ok(config.default_timeout.min(config.max_timeout)),
        Some(Value::Number(number)) => number.as_f64(),
        Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match seconds {
        Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
            Ok(Duration::try_from_secs_f64(seconds).unwrap_or(config.max_timeout).min(config.max_timeout))
        }
        _ => Err(ToolError(format!(
            "invalid arguments for bash: timeout must be a positive number of seconds, got {}",
            value.map_or_else(String::new, Value::to_string)
        ))),
    }
}

/// Everything the command printed, as far as we keep it.
struct Collector {
    /// The last `ROLLING_BYTES` to `2 * ROLLING_BYTES` bytes of output (trimmed in steps).
    tail: Vec<u8>,
    total_bytes: usize,
    newlines: usize,
    /// Bytes after the last newline.
    last_line_bytes: usize,
    output_dir: PathBuf,
    full_output: FullOutput,
    updates: Option<mpsc::Sender<ToolUpdate>>,
    /// Output not sent as an update yet.
    pending: Vec<u8>,
    last_update: Option<Instant>,
}

/// The file that receives the whole output once it passes `DEFAULT_MAX_BYTES`.
enum FullOutput {
    NotNeeded,
    Open { path: PathBuf, writer: BufWriter<tokio::fs::File> },
    Written { path: PathBuf },
    Failed { reason: String },
}

impl Collector {
    fn new(output_dir: PathBuf, updates: Option<mpsc::Sender<ToolUpdate>>) -> Collector {
        Collector {
            tail: Vec::new(),
            total_bytes: 0,
            newlines: 0,
            last_line_bytes: 0,
            output_dir,
            full_output: FullOutput::NotNeeded,
            updates,
            pending: Vec::new(),
            last_update: None,
        }
    }

    /// Receives the output until the command is over, sending throttled updates.
    async fn collect(mut self, mut chunks: mpsc::Receiver<Bytes>) -> Collector {
        let mut next_update: Option<Instant> = None;
        loop {
            let update_due = async move {
                match next_update {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                chunk = chunks.recv() => {
                    let Some(chunk) = chunk else { break };
                    self.record(&chunk).await;
                    if self.updates.is_some() && next_update.is_none() {
                        next_update = Some(self.last_update.map_or_else(Instant::now, |last| last + UPDATE_INTERVAL));
                    }
                }
                () = update_due => next_update = self.send_update(),
            }
        }
        self.send_last_update().await;
        self
    }

    async fn record(&mut self, chunk: &[u8]) {
        self.total_bytes += chunk.len();
        match chunk.iter().rposition(|&byte| byte == b'\n') {
            Some(last) => {
                self.newlines += chunk.iter().filter(|&&byte| byte == b'\n').count();
                self.last_line_bytes = chunk.len() - last - 1;
            }
            None => self.last_line_bytes += chunk.len(),
        }
        if self.total_bytes > DEFAULT_MAX_BYTES && matches!(self.full_output, FullOutput::NotNeeded) {
            // Everything so far is still in `tail`: it is trimmed only past `ROLLING_BYTES`.
            self.full_output = FullOutput::open(&self.output_dir, &self.tail).await;
        }
        self.full_output.write(chunk).await;
        keep_last(&mut self.tail, chunk, ROLLING_BYTES);
        if self.updates.is_some() {
            // A receiver that falls far behind misses the middle, not the end.
            keep_last(&mut self.pending, chunk, ROLLING_BYTES);
        }
    }

    /// Sends what is pending without waiting; returns when to try again if the channel is full.
    fn send_update(&mut self) -> Option<Instant> {
        let updates = self.updates.as_ref()?;
        let complete = complete_utf8_prefix(&self.pending);
        if complete == 0 {
            return None;
        }
        let chunk = String::from_utf8_lossy(&self.pending[..complete]).into_owned();
        match updates.try_send(ToolUpdate { chunk }) {
            Ok(()) => {
                self.pending.drain(..complete);
                self.last_update = Some(Instant::now());
                None
            }
            Err(TrySendError::Full(_)) => Some(Instant::now() + UPDATE_INTERVAL),
            Err(TrySendError::Closed(_)) => {
                self.updates = None;
                self.pending = Vec::new();
                None
            }
        }
    }

    async fn send_last_update(&mut self) {
        let Some(updates) = self.updates.take() else { return };
        if !self.pending.is_empty() {
            let chunk = String::from_utf8_lossy(&self.pending).into_owned();
            // A receiver that is gone does not want it.
            let _ = updates.send(ToolUpdate { chunk }).await;
        }
    }

    /// Builds the result the model sees, with pi's texts and footers.
    async fn finish(mut self, workspace: &Workspace, completion: Completion, timeout: Duration) -> ToolResult {
        if self.tail.len() > ROLLING_BYTES {
            self.tail.drain(..self.tail.len() - ROLLING_BYTES);
        }
        let text = String::from_utf8_lossy(&self.tail);
        let mut truncation = truncate_tail(&text, DEFAULT_MAX_LINES, DEFAULT_MAX_BYTES);
        let mut details = json!({
            "exitCode": completion.status.code(),
            "timedOut": completion.ending == Ending::TimedOut,
        });
        let body = if truncation.truncated {
            // The buffer may hold only the end of the output; the totals are the stream's.
            truncation.total_lines = self.newlines + 1;
            truncation.total_bytes = self.total_bytes;
            if matches!(self.full_output, FullOutput::NotNeeded) {
                // Truncated by lines while under the byte limit: `tail` is still everything.
                self.full_output = FullOutput::open(&self.output_dir, &self.tail).await;
            }
            self.full_output.close().await;
            let location = match &self.full_output {
                FullOutput::Written { path } => {
                    let shown = workspace.display(path);
                    details["fullOutputPath"] = Value::String(shown.clone());
                    format!("Full output: {shown}")
                }
                FullOutput::Failed { reason } => format!("Full output could not be saved: {reason}"),
                FullOutput::NotNeeded | FullOutput::Open { .. } => unreachable!("closed above"),
            };
            details["truncation"] = truncation_details(&truncation);
            format!("{}\n\n{}", truncation.content, footer(&truncation, self.last_line_bytes, &location))
        } else {
            self.full_output.close().await;
            truncation.content
        };
        let ending = match completion.ending {
            Ending::TimedOut => format!("Command timed out after {} seconds", timeout.as_secs_f64()),
            Ending::Cancelled => "Command aborted".to_owned(),
            Ending::Exited => match (completion.status.code(), completion.status.signal()) {
                (Some(0), _) => {
                    let text = if body.is_empty() { "(no output)".to_owned() } else { body };
                    return ToolResult::text(text, details);
                }
                (Some(code), _) => {
                    let body = if body.is_empty() { "(no output)" } else { &body };
                    return ToolResult::error(format!("{body}\n\nCommand exited with code {code}"), details);
                }
                (None, Some(signal)) => format!("Command terminated by signal {}", signal_name(signal)),
                (None, None) => format!("Command ended with {}", completion.status),
            },
        };
        let text = if body.is_empty() { ending } else { format!("{body}\n\n{ending}") };
        ToolResult::error(text, details)
    }
}

impl FullOutput {
    async fn open(dir: &Path, so_far: &[u8]) -> FullOutput {
        match FullOutput::create(dir, so_far).await {
            Ok((path, writer)) => FullOutput::Open { path, writer },
            Err(error) => {
                tracing::warn!(dir = %dir.display(), "failed to save the full bash output: {error:#}");
                FullOutput::Failed { reason: error.to_string() }
            }
        }
    }

    async fn create(dir: &Path, so_far: &[u8]) -> std::io::Result<(PathBuf, BufWriter<tokio::fs::File>)> {
        tokio::fs::create_dir_all(dir).await?;
        let dir = tokio::fs::canonicalize(dir).await?;
        let path = dir.join(format!("bash-{:016x}.log", fastrand::u64(..)));
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        let mut writer = BufWriter::with_capacity(64 * 1024, file);
        writer.write_all(so_far).await?;
        Ok((path, writer))
    }

    async fn write(&mut self, chunk: &[u8]) {
        if let FullOutput::Open { path, writer } = self
            && let Err(error) = writer.write_all(chunk).await
        {
            tracing::warn!(path = %path.display(), "failed to write the full bash output: {error:#}");
            *self = FullOutput::Failed { reason: error.to_string() };
        }
    }

    async fn close(&mut self) {
        if let FullOutput::Open { path, writer } = self {
            *self = match writer.flush().await {
                Ok(()) => FullOutput::Written { path: std::mem::take(path) },
                Err(error) => {
                    tracing::warn!(path = %path.display(), "failed to write the full bash output: {error:#}");
                    FullOutput::Failed { reason: error.to_string() }
                }
            };
        }
    }
}

/// pi's footer for a truncated output.
fn footer(truncation: &Truncation, last_line_bytes: usize, location: &str) -> String {
    let end = truncation.total_lines;
    let start = (end + 1).saturating_sub(truncation.output_lines);
    if truncation.last_line_partial {
        let shown = format_size(truncation.output_bytes);
        format!("[Showing last {shown} of line {end} (line is {}). {location}]", format_size(last_line_bytes))
    } else if truncation.truncated_by == Some("lines") {
        format!("[Showing lines {start}-{end} of {end}. {location}]")
    } else {
        format!("[Showing lines {start}-{end} of {end} ({} limit). {location}]", format_size(DEFAULT_MAX_BYTES))
    }
}

/// The truncation record for `details`, without the kept text, which is already the content.
fn truncation_details(truncation: &Truncation) -> Value {
    let mut value = serde_json::to_value(truncation).expect("a truncation record serializes");
    if let Some(fields) = value.as_object_mut() {
        fields.remove("content");
    }
    value
}

/// Appends `chunk` to `buffer`, keeping at least the last `keep` bytes; trims only when the
/// buffer has doubled, so that each byte is moved at most once.
fn keep_last(buffer: &mut Vec<u8>, chunk: &[u8], keep: usize) {
    buffer.extend_from_slice(chunk);
    if buffer.len() > 2 * keep {
        buffer.drain(..buffer.len() - keep);
    }
}

/// The length of `bytes` without a UTF-8 sequence cut short at its end, which the next chunk
/// completes.
fn complete_utf8_prefix(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(3) {
        let byte = bytes[len - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue;
        }
        let needed = match byte {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if needed > back { len - back } else { len };
    }
    len
}

fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("{signal}"), |signal| signal.as_str().to_owned())
}

/// An error with its sources, for the model: `spawn /bin/bash: No such file or directory`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
