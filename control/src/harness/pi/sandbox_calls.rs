//! Running one tool call in the session's sandbox: a built-in tool (`tool.run`) or a custom tool
//! of `kind: main` (`custom_tool.run`, tried again by its retry schedule), with request ids that
//! a resumed turn repeats (see `tool_calls.rs`), and the result cut to the model's budget.

use std::sync::Arc;
use std::time::Duration;

use dari_protocol::link::{CustomToolOutput, CustomToolRun, Operation, Outcome, error_code};
use dari_protocol::manifest::ToolRuntime;
use dari_protocol::tools::{ContentBlock, ToolResult};
use serde_json::{Value, json};

use super::PiHarness;
use super::model::ToolResultEntry;
use super::resources::AgentResources;
use super::tool_calls::{Finished, PendingCall};
use super::tools::{CatalogTool, CatalogToolKind};
use crate::harness::in_sandbox::{LINK_MARGIN, request};
use crate::harness::{TurnContext, TurnFailure};
use crate::sandboxes::ReadySandbox;

/// The longest a built-in tool other than bash may take.
const TOOL_DEADLINE: Duration = Duration::from_secs(5 * 60);

/// What a running call needs, without borrowing the turn (which commits meanwhile).
#[derive(Clone)]
pub(super) struct Runner<'a> {
    pub(super) harness: &'a PiHarness,
    pub(super) context: &'a TurnContext<'a>,
    pub(super) resources: Arc<AgentResources>,
    pub(super) sandbox: ReadySandbox,
}

impl Runner<'_> {
    pub(super) async fn run(&self, call: &PendingCall) -> Result<Finished, TurnFailure> {
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
                // The attempt ran, and the daemon no longer knows how it ended: running it again
                // could do its work twice.
                Outcome::Error { error } if error.code == error_code::RESULT_FORGOTTEN => {
                    let text =
                        format!("Tool {} ran, but its result was lost; whether it finished is unknown.", call.name);
                    return Ok(Finished::error(call, text, json!({"attempts": attempt})));
                }
                // The daemon is stopping, or let go of the request: the turn's next attempt asks again.
                Outcome::Error { error }
                    if error.code == error_code::SHUTTING_DOWN || error.code == error_code::CANCELLED =>
                {
                    return Err(TurnFailure::Retryable(error.message));
                }
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
            return Finished::error(call, problem, details);
        }
        Finished::json(call, output.output, false, details, self.harness.settings.max_tool_result_bytes)
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

fn runtime_name(runtime: ToolRuntime) -> &'static str {
    match runtime {
        ToolRuntime::Python => "python",
        ToolRuntime::Typescript => "typescript",
    }
}

/// Cuts text to `max` bytes (at a character boundary) with a note saying how much was cut.
pub(super) fn cap_text(mut text: String, max: usize) -> String {
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
