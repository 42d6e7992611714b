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
use std::time::Duration;

use dari_protocol::tools::ContentBlock;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde_json::{Value, json};

use super::model::{ToolCall, ToolResultEntry};
use super::sandbox_calls::{Runner, cap_text};
use super::steps::{self, CallKind};
use super::tools::{CatalogTool, CatalogToolKind};
use super::turn::{Turn, internal, millis};
use crate::harness::TurnFailure;
use crate::persistence::{Step, now_millis};

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
pub(super) struct Finished {
    pub(super) result: ToolResultEntry,
    /// The tool's own output (a main tool's JSON), for events.
    pub(super) raw: Option<Value>,
    pub(super) details: Value,
}

impl Finished {
    /// A tool's JSON output as the model reads it: a string as itself, anything else as JSON
    /// text, cut to `max_bytes`.
    pub(super) fn json(
        call: &PendingCall,
        output: Value,
        is_error: bool,
        details: Value,
        max_bytes: usize,
    ) -> Finished {
        let text = match &output {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        Finished {
            result: ToolResultEntry {
                tool_call_id: call.id.clone(),
                tool_name: call.name.clone(),
                content: vec![ContentBlock::Text { text: cap_text(text, max_bytes) }],
                is_error,
            },
            raw: Some(output),
            details,
        }
    }

    pub(super) fn error(call: &PendingCall, text: impl Into<String>, details: Value) -> Finished {
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
    // When no call can run (unknown tools, bad arguments), they are answered without a sandbox.
    // Otherwise every call goes through the runner, which answers those at once, so that results
    // are committed in call order.
    if calls.iter().all(|call| turn.resources.catalog.prepare(&call.name, &call.arguments).is_err()) {
        for call in &calls {
            let problem = turn.resources.catalog.prepare(&call.name, &call.arguments).err().unwrap_or_default();
            commit_finished(turn, call, Finished::error(call, problem, Value::Null), true).await?;
        }
        return Ok(());
    }
    let context = turn.context;
    let message_id = context.claimed.message.id.clone();
    let before =
        context.store.tools_dispatched_to(&message_id).await.map_err(|error| internal(format!("{error:#}")))?;
    // The daemon a dispatched call went to is the one that knows how it ended; the session's
    // sandbox is that daemon unless it was lost (or restarted) meanwhile.
    let sandbox = turn.sandbox().await?;
    let here = format!("{}:{}:{answer_position}", sandbox.record.id, sandbox.boot_id);
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
    // Every result that came is committed, even when another call failed in a way that ends the
    // attempt (its daemon went away): a result in hand is never reported lost.
    let mut failure = None;
    while let Some((call, finished)) = running.next().await {
        match finished {
            Ok(finished) => commit_finished(turn, &call, finished, true).await?,
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    failure.map_or(Ok(()), Err)
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
    let mut answered = 0;
    for call in &calls {
        let tool = turn.resources.catalog.get(&call.name);
        if let Some(data) = submitted.get(&call.id) {
            let finished = submitted_result(turn, tool, call, data);
            commit_finished(turn, call, finished, false).await?;
            answered += 1;
            turn.unparked_passes = 0;
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
    if parked {
        return Ok(ToolsOutcome::Parked);
    }
    // Not parked: every call is answered in the ledger. The results that came meanwhile are read
    // on the next pass; a second pass that finds none would loop forever.
    if answered == 0 {
        turn.unparked_passes += 1;
        if turn.unparked_passes > 1 {
            return Err(internal(format!(
                "the ledger shows results for the external calls of message {}, but none can be read",
                context.claimed.message.id
            )));
        }
    }
    Ok(ToolsOutcome::Done)
}

/// A client's `tool.result_submitted`, as the model sees it.
fn submitted_result(turn: &Turn<'_>, tool: Option<&CatalogTool>, call: &PendingCall, data: &Value) -> Finished {
    let result = data.get("result").cloned().unwrap_or(Value::Null);
    let is_error = data.get("is_error").and_then(Value::as_bool).unwrap_or(false);
    if !is_error
        && tool.is_some()
        && let Err(problem) = turn.resources.catalog.check_output(&call.name, &result)
    {
        return Finished::error(call, problem, Value::Null);
    }
    Finished::json(call, result, is_error, Value::Null, turn.harness.settings.max_tool_result_bytes)
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
