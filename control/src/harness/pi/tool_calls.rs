//! The tool calls of one model answer: validated, then run at once in the sandbox (built-in and
//! `kind: main` tools), each result committed in call order as it comes; external tools wait for
//! the client's `tool.result_submitted`, or time out with an error result for the model.
//!
//! A sandbox call's request id is `{message_id}:{tool_call_id}` (`…:{attempt}` for the retries of
//! a main tool), and before the calls go out the message notes where they went. A worker that
//! takes the message over asks the same daemon the same ids, and the daemon answers from its
//! record instead of running them again. When that daemon is gone, the calls' effects are
//! unknown: they get an error result saying so, and nothing runs twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dari_protocol::link::{CustomToolOutput, CustomToolRun, Operation, Outcome};
use dari_protocol::manifest::ToolRuntime;
use dari_protocol::tools::{ContentBlock, ToolResult};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde_json::{Value, json};

use super::PiHarness;
use super::model::{ToolCall, ToolResultEntry};
use super::resources::AgentResources;
use super::steps::{self, CallKind};
use super::tools::{CatalogTool, CatalogToolKind};
use super::turn::{Turn, internal, millis};
use crate::harness::in_sandbox::{LINK_MARGIN, request};
use crate::harness::{TurnContext, TurnFailure};
use crate::persistence::{Step, now_millis};
use crate::sandboxes::ReadySandbox;

/// The longest a built-in tool other than bash may take.
const TOOL_DEADLINE: Duration = Duration::from_secs(5 * 60);

#[derive(Clone, Debug)]
pub struct PendingCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

impl PendingCall {
    fn borrowed(&self) -> ToolCall<'_> {
        ToolCall { id: &self.id, name: &self.name, arguments: &self.arguments }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolsOutcome {
    /// Every call has its result, or results came in while parking: the loop goes on.
    Done,
    /// The message waits for external results; the worker lets go of it.
    Parked,
}

/// A finished call, ready to commit.
struct Finished {
    result: ToolResultEntry,
    /// The tool's own output (a main tool's JSON), for events.
    raw: Option<Value>,
    details: Value,
}

impl Finished {
    fn error(call: &PendingCall, text: impl Into<String>, details: Value) -> Finished {
        Finished {
            result: ToolResultEntry {
                tool_call_id: call.id.clone(),
                tool_name: call.name.clone(),
                content: vec![ContentBlock::Text { text: text.into() }],
                is_error: true,
            },
            raw: None,
            details,
        }
    }
}

/// Runs the answer's calls that have no result yet. `answer_position` is the answer's place in
/// the conversation, `requested_at` when it was committed.
pub async fn run(
    turn: &mut Turn<'_>,
    calls: Vec<PendingCall>,
    answer_position: i64,
    requested_at: i64,
) -> Result<ToolsOutcome, TurnFailure> {
    let (external, sandboxed): (Vec<PendingCall>, Vec<PendingCall>) =
        calls.into_iter().partition(|call| turn.kind_of(&call.name) == CallKind::External);
    if !sandboxed.is_empty() {
        run_in_sandbox(turn, sandboxed, answer_position).await?;
    }
    if external.is_empty() {
        return Ok(ToolsOutcome::Done);
    }
    collect_external(turn, external, requested_at).await
}

async fn run_in_sandbox(turn: &mut Turn<'_>, calls: Vec<PendingCall>, answer_position: i64) -> Result<(), TurnFailure> {
    let context = turn.context;
    let sandbox = turn.sandbox().await?;
    let message_id = context.claimed.message.id.clone();
    let here = format!("{}:{}:{answer_position}", sandbox.record.id, sandbox.boot_id);
    let before =
        context.store.tools_dispatched_to(&message_id).await.map_err(|error| internal(format!("{error:#}")))?;
    let lost =
        before.as_deref().is_some_and(|before| before.ends_with(&format!(":{answer_position}")) && before != here);
    if lost {
        let text = "The sandbox that ran this tool call was lost before it answered, so whether it finished is unknown. Check the workspace before running it again.";
        for call in &calls {
            let finished = Finished::error(call, text, json!({"sandbox_lost": true}));
            commit_finished(turn, call, finished, true).await?;
        }
        return Ok(());
    }
    if before.as_deref() != Some(here.as_str()) {
        context.store.note_tools_dispatched(context.owner, &message_id, &here).await.map_err(|error| match error {
            crate::persistence::LedgerError::LeaseLost(id) => TurnFailure::LeaseLost(id),
            other => internal(format!("note where the tool calls went: {other}")),
        })?;
    }
    let runner = Runner { harness: turn.harness, context, resources: turn.resources.clone(), sandbox };
    let mut running: FuturesOrdered<_> = calls
        .iter()
        .map(|call| {
            let runner = runner.clone();
            let call = call.clone();
            async move {
                let finished = runner.run(&call).await;
                (call, finished)
            }
        })
        .collect();
    while let Some((call, finished)) = running.next().await {
        commit_finished(turn, &call, finished?, true).await?;
    }
    Ok(())
}

async fn collect_external(
    turn: &mut Turn<'_>,
    calls: Vec<PendingCall>,
    requested_at: i64,
) -> Result<ToolsOutcome, TurnFailure> {
    let context = turn.context;
    let message = &context.claimed.message;
    let submitted: HashMap<String, Value> = context
        .store
        .submitted_tool_results(&message.session_id, &message.id)
        .await
        .map_err(|error| internal(format!("{error:#}")))?
        .into_iter()
        .collect();
    let now = now_millis();
    let mut wait_until: Option<i64> = None;
    for call in &calls {
        let tool = turn.resources.catalog.get(&call.name);
        if let Some(data) = submitted.get(&call.id) {
            let finished = submitted_result(turn, tool, call, data);
            commit_finished(turn, call, finished, false).await?;
            continue;
        }
        let timeout = external_timeout(tool).unwrap_or(Duration::ZERO);
        let deadline = requested_at + millis(timeout);
        if now >= deadline {
            let text = format!(
                "Tool {} did not return a result within {}: the client that runs it did not submit one in time.",
                call.name,
                humantime::format_duration(timeout)
            );
            commit_finished(turn, call, Finished::error(call, text, json!({"timed_out": true})), true).await?;
        } else {
            wait_until = Some(wait_until.map_or(deadline, |until| until.min(deadline)));
        }
    }
    let Some(wait_until) = wait_until else { return Ok(ToolsOutcome::Done) };
    // The message's own deadline wakes it too, to fail it with `message_timeout`.
    let wait_until = wait_until.min(turn.deadline());
    let parked = turn.commit(Step { wait_until: Some(wait_until), ..Step::default() }, Vec::new()).await?;
    Ok(if parked { ToolsOutcome::Parked } else { ToolsOutcome::Done })
}

/// A client's `tool.result_submitted`, as the model sees it.
fn submitted_result(turn: &Turn<'_>, tool: Option<&CatalogTool>, call: &PendingCall, data: &Value) -> Finished {
    let result = data.get("result").cloned().unwrap_or(Value::Null);
    let is_error = data.get("is_error").and_then(Value::as_bool).unwrap_or(false);
    if !is_error
        && tool.is_some()
        && let Err(problem) = turn.resources.catalog.check_output(&call.name, &result)
    {
        return Finished::error(
            call,
            format!("The result of tool {} does not match its output schema: {problem}", call.name),
            Value::Null,
        );
    }
    let text = match &result {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    Finished {
        result: ToolResultEntry {
            tool_call_id: call.id.clone(),
            tool_name: call.name.clone(),
            content: vec![ContentBlock::Text { text: cap_text(text, turn.harness.settings.max_tool_result_bytes) }],
            is_error,
        },
        raw: Some(result),
        details: Value::Null,
    }
}

async fn commit_finished(
    turn: &mut Turn<'_>,
    call: &PendingCall,
    finished: Finished,
    record_event: bool,
) -> Result<(), TurnFailure> {
    let step = steps::result_step(
        &turn.context.claimed.message.id,
        call.borrowed(),
        &finished.result,
        finished.raw.as_ref(),
        &finished.details,
        record_event,
    );
    turn.commit(step, vec![super::model::Entry::ToolResult(finished.result)]).await?;
    Ok(())
}

/// What a running call needs, without borrowing the turn (which commits meanwhile).
#[derive(Clone)]
struct Runner<'a> {
    harness: &'a PiHarness,
    context: &'a TurnContext<'a>,
    resources: Arc<AgentResources>,
    sandbox: ReadySandbox,
}

impl Runner<'_> {
    async fn run(&self, call: &PendingCall) -> Result<Finished, TurnFailure> {
        let (tool, arguments) = match self.resources.catalog.prepare(&call.name, &call.arguments) {
            Ok(prepared) => prepared,
            Err(problem) => return Ok(Finished::error(call, problem, Value::Null)),
        };
        match &tool.kind {
            CatalogToolKind::BuiltIn(_) => self.run_built_in(call, arguments).await,
            CatalogToolKind::Main { .. } => self.run_main(tool, call, arguments).await,
            CatalogToolKind::External { .. } => {
                Ok(Finished::error(call, "external tools are not run in the sandbox", Value::Null))
            }
        }
    }

    async fn run_built_in(&self, call: &PendingCall, arguments: Value) -> Result<Finished, TurnFailure> {
        let deadline = if call.name == "bash" {
            let asked = arguments.get("timeout").and_then(Value::as_f64).unwrap_or(0.0);
            Duration::from_secs_f64(asked.clamp(0.0, 30.0 * 60.0)).max(Duration::from_secs(120))
        } else {
            TOOL_DEADLINE
        };
        let id = format!("{}:{}", self.context.claimed.message.id, call.id);
        let op = Operation::ToolRun { name: call.name.clone(), arguments };
        let outcome = request(self.context, &self.sandbox, id, op, deadline + LINK_MARGIN).await?;
        Ok(match outcome {
            Outcome::Ok { value } => match serde_json::from_value::<ToolResult>(value) {
                Ok(result) => Finished {
                    result: ToolResultEntry {
                        tool_call_id: call.id.clone(),
                        tool_name: call.name.clone(),
                        content: self.cap(result.content),
                        is_error: result.is_error,
                    },
                    raw: None,
                    details: result.details,
                },
                Err(error) => Finished::error(call, format!("sandboxd's result does not parse: {error}"), Value::Null),
            },
            Outcome::Error { error } => Finished::error(call, error.message, error.details),
        })
    }

    async fn run_main(&self, tool: &CatalogTool, call: &PendingCall, input: Value) -> Result<Finished, TurnFailure> {
        let CatalogToolKind::Main { runtime, handler, timeout, retry } = &tool.kind else {
            return Ok(Finished::error(call, "not a main tool", Value::Null));
        };
        let mut attempt: u32 = 1;
        loop {
            let id = format!("{}:{}:{attempt}", self.context.claimed.message.id, call.id);
            let op = Operation::CustomToolRun(CustomToolRun {
                name: call.name.clone(),
                runtime: runtime_name(*runtime).to_owned(),
                handler_file: handler.file.clone(),
                function: handler.function.clone(),
                input: input.clone(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            });
            let outcome = request(self.context, &self.sandbox, id, op, *timeout).await?;
            let failure = match outcome {
                Outcome::Ok { value } => match serde_json::from_value::<CustomToolOutput>(value) {
                    Ok(output) => return Ok(self.main_output(call, output, attempt)),
                    Err(error) => (format!("sandboxd's result does not parse: {error}"), Value::Null),
                },
                Outcome::Error { error } => (error.message, error.details),
            };
            match retry.delay_before(attempt + 1) {
                Some(delay) => {
                    tracing::info!(tool = %call.name, attempt, "retrying a failed tool call: {}", failure.0);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                None => {
                    let mut details = failure.1;
                    if details.is_null() {
                        details = json!({});
                    }
                    details["attempts"] = json!(attempt);
                    return Ok(Finished::error(call, format!("Tool {} failed: {}", call.name, failure.0), details));
                }
            }
        }
    }

    fn main_output(&self, call: &PendingCall, output: CustomToolOutput, attempts: u32) -> Finished {
        let details = json!({"logs": output.logs, "attempts": attempts});
        if let Err(problem) = self.resources.catalog.check_output(&call.name, &output.output) {
            return Finished::error(
                call,
                format!("Tool {} returned a result that does not match its output schema: {problem}", call.name),
                details,
            );
        }
        let text = match &output.output {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        Finished {
            result: ToolResultEntry {
                tool_call_id: call.id.clone(),
                tool_name: call.name.clone(),
                content: vec![ContentBlock::Text { text: cap_text(text, self.harness.settings.max_tool_result_bytes) }],
                is_error: false,
            },
            raw: Some(output.output),
            details,
        }
    }

    fn cap(&self, content: Vec<ContentBlock>) -> Vec<ContentBlock> {
        let max = self.harness.settings.max_tool_result_bytes;
        content
            .into_iter()
            .map(|block| match block {
                ContentBlock::Text { text } => ContentBlock::Text { text: cap_text(text, max) },
                image => image,
            })
            .collect()
    }
}

/// How a call of `name` runs, as events say it.
pub fn kind_of(tool: Option<&CatalogTool>) -> CallKind {
    match tool.map(|tool| &tool.kind) {
        Some(CatalogToolKind::BuiltIn(_)) => CallKind::BuiltIn,
        Some(CatalogToolKind::Main { .. }) => CallKind::Main,
        Some(CatalogToolKind::External { .. }) => CallKind::External,
        None => CallKind::Unknown,
    }
}

/// How long the client has to answer a call of an external tool.
pub fn external_timeout(tool: Option<&CatalogTool>) -> Option<Duration> {
    match tool.map(|tool| &tool.kind) {
        Some(CatalogToolKind::External { timeout }) => Some(*timeout),
        _ => None,
    }
}

fn runtime_name(runtime: ToolRuntime) -> &'static str {
    match runtime {
        ToolRuntime::Python => "python",
        ToolRuntime::Typescript => "typescript",
    }
}

/// Cuts text to `max` bytes (at a character boundary) with a note saying how much was cut.
fn cap_text(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!("\n\n[Tool output truncated: {cut} of {total} bytes shown.]"));
    text
}

#[cfg(test)]
mod tests {
    use super::cap_text;

    #[test]
    fn text_is_cut_at_a_character_boundary_with_a_note() {
        assert_eq!(cap_text("short".to_owned(), 10), "short");
        let cut = cap_text("ééééé".to_owned(), 5);
        assert!(cut.starts_with("éé\n\n[Tool output truncated: 4 of 10 bytes shown.]"), "{cut}");
    }
}
