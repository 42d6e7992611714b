//! The `customRuntimeServer` harness (`dari-runtime-v1`, `docs/runtime-protocol.md`): the
//! agent's own HTTP server runs in the session's sandbox; each message is one advance request,
//! and its answer's `text`, `state`, `events` and `action` are recorded.
//!
//! Per sandbox boot, once: the bundle is materialized and the server started (sandboxd waits for
//! its health). Per turn: one `runtime.advance` whose request id is
//! `{message_id}:{attempt}:advance`, so that a worker that takes over a turn after a crash of
//! control asks the same daemon the same question and gets the recorded answer, not a second
//! advance.

use std::collections::BTreeMap;
use std::time::Duration;

use dari_protocol::link::{AdvanceResponse, Operation, Outcome, RuntimeStart, error_code};
use dari_protocol::manifest::{CustomRuntimeServer, Manifest, RUNTIME_PROTOCOL};
use serde_json::{Map, Value, json};

use super::in_sandbox::{BUNDLE_DIR, PerBoot, materialize_bundle, request};
use super::{TurnContext, TurnFailure};
use crate::ids::new_id;
use crate::persistence::{StateChange, TurnError, TurnOutcome};
use crate::sandboxes::ReadySandbox;

/// Limits on an answer (see the protocol page).
const MAX_STATE_BYTES: usize = 1024 * 1024;
const MAX_EVENTS: usize = 100;
const MAX_EVENT_TYPE_CHARS: usize = 64;

/// How long a runtime server may take.
#[derive(Clone, Copy, Debug)]
pub struct RuntimeLimits {
    /// To become healthy after it is started.
    pub start_timeout: Duration,
    /// To answer one advance.
    pub advance_timeout: Duration,
}

impl Default for RuntimeLimits {
    fn default() -> RuntimeLimits {
        RuntimeLimits { start_timeout: Duration::from_secs(60), advance_timeout: Duration::from_secs(600) }
    }
}

/// The harness, with what it remembers between turns: which daemon boot has the runtime started.
#[derive(Debug, Default)]
pub struct CustomRuntimeHarness {
    limits: RuntimeLimits,
    /// The daemon boots whose runtime server is started.
    started: PerBoot,
}

impl CustomRuntimeHarness {
    pub fn new(limits: RuntimeLimits) -> CustomRuntimeHarness {
        CustomRuntimeHarness { limits, started: PerBoot::default() }
    }

    /// Runs one turn of `context`'s message in `sandbox`.
    pub async fn run_turn(
        &self,
        context: &TurnContext<'_>,
        spec: &CustomRuntimeServer,
        manifest: &Manifest,
        sandbox: &ReadySandbox,
    ) -> Result<TurnOutcome, TurnFailure> {
        self.start_runtime(context, spec, manifest, sandbox).await?;
        let message = &context.claimed.message;
        let request_id = format!("{}:{}:advance", message.id, context.attempt);
        let op = Operation::RuntimeAdvance {
            body: advance_body(context),
            timeout_ms: millis(self.limits.advance_timeout),
            headers: advance_headers(context),
        };
        let outcome = request(context, sandbox, request_id, op, self.limits.advance_timeout).await?;
        match outcome {
            Outcome::Ok { value } => {
                let response: AdvanceResponse = serde_json::from_value(value).map_err(|error| {
                    TurnFailure::Final(TurnError::new(
                        "runtime_bad_response",
                        format!("sandboxd's advance result does not parse: {error}"),
                        Value::Null,
                    ))
                })?;
                parse_answer(response.body).map_err(TurnFailure::Final)
            }
            Outcome::Error { error } if error.code == error_code::RUNTIME_NOT_STARTED => {
                // The daemon restarted under us: start the server again on the next attempt.
                self.forget(&sandbox.record.id);
                Err(TurnFailure::Retryable(error.message))
            }
            // The daemon is stopping, or the request was cancelled when a worker let go of the
            // turn (its record now answers this request id with the cancellation): the next
            // attempt is a new request.
            Outcome::Error { error }
                if error.code == error_code::SHUTTING_DOWN || error.code == error_code::CANCELLED =>
            {
                Err(TurnFailure::Retryable(error.message))
            }
            Outcome::Error { error } => {
                let kind = match error.code.as_str() {
                    error_code::TIMED_OUT => "runtime_timeout",
                    error_code::RUNTIME_UNHEALTHY => "runtime_unhealthy",
                    code if code == error_code::RUNTIME_CRASHED => "runtime_crashed",
                    error_code::RUNTIME_HTTP_ERROR => "runtime_http_error",
                    _ => "runtime_error",
                };
                if kind != "runtime_http_error" && kind != "runtime_timeout" {
                    // A crashed or unhealthy server is started afresh for the next message.
                    self.forget(&sandbox.record.id);
                }
                Err(TurnFailure::Final(TurnError::new(kind, error.message, error.details)))
            }
        }
    }

    /// Materializes the bundle and starts the server, once per daemon boot.
    async fn start_runtime(
        &self,
        context: &TurnContext<'_>,
        spec: &CustomRuntimeServer,
        manifest: &Manifest,
        sandbox: &ReadySandbox,
    ) -> Result<(), TurnFailure> {
        if self.started.is_done(sandbox) {
            return Ok(());
        }
        materialize_bundle(context, sandbox).await?;
        let port =
            context.sandboxes.runtime_port(spec.port, context.claimed.session.internet_access).map_err(|error| {
                TurnFailure::Final(TurnError::new(
                    "sandbox_setup_failed",
                    format!("find a free port: {error}"),
                    Value::Null,
                ))
            })?;
        // The sandbox's environment already holds `sandbox.env` and the secrets; the server gets
        // them again explicitly, so that a daemon adopted from an earlier configuration agrees.
        let env = context
            .secrets
            .environment(&context.claimed.session, &manifest.sandbox)
            .await
            .map_err(|error| TurnFailure::Final(error.into_turn_error()))?
            .0;
        let start = Operation::RuntimeStart(RuntimeStart {
            command: spec.command.clone(),
            port,
            health_path: spec.health_path.clone(),
            advance_path: spec.advance_path.clone(),
            cwd: Some(BUNDLE_DIR.to_owned()),
            env,
            start_timeout_ms: millis(self.limits.start_timeout),
        });
        match request(context, sandbox, new_id("start"), start, self.limits.start_timeout).await? {
            Outcome::Ok { .. } => {
                self.started.mark_done(sandbox, context.sandboxes.hub());
                Ok(())
            }
            Outcome::Error { error } => Err(TurnFailure::Final(TurnError::new(
                "runtime_unhealthy",
                format!("start the runtime server `{}`: {}", spec.command, error.message),
                error.details,
            ))),
        }
    }

    /// Forgets that a sandbox's server was started (it was torn down, or must start afresh).
    pub fn forget(&self, sandbox_id: &str) {
        self.started.forget(sandbox_id);
    }
}

/// The advance request's JSON body.
fn advance_body(context: &TurnContext<'_>) -> Value {
    let message = &context.claimed.message;
    let session = &context.claimed.session;
    let mut body = json!({
        "protocol": RUNTIME_PROTOCOL,
        "input": {
            "type": "user_message",
            "message": {"id": message.id, "content": message.parts, "metadata": message.metadata},
        },
        "session": {
            "id": session.id,
            "agent_id": session.agent_id,
            "version_id": session.version_id,
            "name": session.name,
            "metadata": session.metadata,
        },
        "message": {"id": message.id, "sequence_number": message.sequence_number, "attempt": context.attempt},
    });
    if let Some(state) = &context.claimed.runtime_state {
        body["state_ref"] = json!({"json": state});
    }
    body
}

fn advance_headers(context: &TurnContext<'_>) -> BTreeMap<String, String> {
    let message = &context.claimed.message;
    BTreeMap::from([
        ("Dari-Protocol".to_owned(), RUNTIME_PROTOCOL.to_owned()),
        ("Dari-Session-Id".to_owned(), message.session_id.clone()),
        ("Dari-Message-Id".to_owned(), message.id.clone()),
        ("Idempotency-Key".to_owned(), format!("{}:{}", message.id, context.attempt)),
    ])
}

/// Reads the server's answer: `text`, `state`, `events`, `action`, each checked against the
/// protocol's rules; a breach names the field.
pub fn parse_answer(body: Value) -> Result<TurnOutcome, TurnError> {
    let bad = |message: String| TurnError::new("runtime_bad_response", message, Value::Null);
    let Value::Object(mut answer) = body else {
        return Err(bad(format!("the answer must be a JSON object, not {}", kind_of(&body))));
    };
    let text = match answer.remove("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => return Err(bad(format!("text must be a string or null, not {}", kind_of(&other)))),
    };
    let state = match answer.remove("state") {
        None => StateChange::Keep,
        Some(Value::Null) => StateChange::Clear,
        Some(state) => {
            let size = state.to_string().len();
            if size > MAX_STATE_BYTES {
                return Err(bad(format!(
                    "state is {size} bytes serialized; the limit is {MAX_STATE_BYTES}: keep large data in files and a reference in state"
                )));
            }
            StateChange::Set(state)
        }
    };
    let events = match answer.remove("events") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(events)) => parse_events(events).map_err(bad)?,
        Some(other) => return Err(bad(format!("events must be an array, not {}", kind_of(&other)))),
    };
    let complete_session = match answer.remove("action") {
        None | Some(Value::Null) => false,
        Some(Value::Object(action)) => match action.get("type").and_then(Value::as_str) {
            Some("complete_session") => true,
            Some(other) => {
                return Err(bad(format!("action.type {other:?} is not known; the one action is \"complete_session\"")));
            }
            None => return Err(bad("action.type is missing; the one action is \"complete_session\"".to_owned())),
        },
        Some(other) => return Err(bad(format!("action must be an object, not {}", kind_of(&other)))),
    };
    Ok(TurnOutcome { text, state, events, complete_session, usage: None })
}

fn parse_events(events: Vec<Value>) -> Result<Vec<(String, Value)>, String> {
    if events.len() > MAX_EVENTS {
        return Err(format!("events has {} items; the limit is {MAX_EVENTS}", events.len()));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            let Value::Object(mut event) = event else {
                return Err(format!("events[{index}] must be an object {{\"type\", \"data\"}}"));
            };
            let Some(Value::String(kind)) = event.remove("type") else {
                return Err(format!("events[{index}].type must be a string"));
            };
            let valid = !kind.is_empty()
                && kind.len() <= MAX_EVENT_TYPE_CHARS
                && kind.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"_.".contains(&byte));
            if !valid {
                return Err(format!(
                    "events[{index}].type {kind:?} must be 1 to {MAX_EVENT_TYPE_CHARS} characters of a-z, 0-9, _ and ."
                ));
            }
            let data = match event.remove("data") {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(data @ Value::Object(_)) => data,
                Some(other) => return Err(format!("events[{index}].data must be an object, not {}", kind_of(&other))),
            };
            Ok((format!("runtime.{kind}"), data))
        })
        .collect()
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_the_protocol_rules() {
        let outcome = parse_answer(json!({"text": "hi", "state": {"n": 1}, "extra": true})).expect("valid");
        assert_eq!(outcome.text.as_deref(), Some("hi"));
        assert_eq!(outcome.state, StateChange::Set(json!({"n": 1})));
        assert_eq!(parse_answer(json!({})).expect("valid").state, StateChange::Keep);
        assert_eq!(parse_answer(json!({"state": null})).expect("valid").state, StateChange::Clear);
        let outcome = parse_answer(json!({"events": [{"type": "tool.used", "data": {"x": 1}}, {"type": "note"}],
                                          "action": {"type": "complete_session"}}))
        .expect("valid");
        assert_eq!(
            outcome.events,
            vec![("runtime.tool.used".to_owned(), json!({"x": 1})), ("runtime.note".to_owned(), json!({}))]
        );
        assert!(outcome.complete_session);
    }

    #[test]
    fn a_bad_answer_names_the_field() {
        for (answer, expected) in [
            (json!([1]), "must be a JSON object"),
            (json!({"text": 5}), "text must be a string"),
            (json!({"events": {}}), "events must be an array"),
            (json!({"events": [{"type": "Bad Name"}]}), "events[0].type"),
            (json!({"events": [{"type": "ok", "data": 3}]}), "events[0].data"),
            (json!({"action": {"type": "explode"}}), "\"explode\""),
            (json!({"state": "x".repeat(MAX_STATE_BYTES + 1)}), "state is"),
        ] {
            let error = parse_answer(answer).expect_err("invalid");
            assert_eq!(error.kind, "runtime_bad_response");
            assert!(error.message.contains(expected), "{} does not mention {expected}", error.message);
        }
    }
}
