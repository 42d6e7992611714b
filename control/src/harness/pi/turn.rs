//! One message's run of pi's loop, resumable at every step.
//!
//! The loop looks at the conversation as the database has it and takes the next step: the
//! user's message enters it; the model answers; the answer's tool calls run (or wait for the
//! client); the model answers again; until an answer calls no tool. Each step is committed
//! before the next starts, so a worker that takes the message over after a crash reads the same
//! conversation and goes on from there.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use dari_protocol::manifest::Manifest;
use serde_json::Value;

use super::PiHarness;
use super::endpoint::ModelChoice;
use super::model::{Entry, Usage};
use super::resources::AgentResources;
use super::steps::{self, CallKind};
use super::tool_calls::{self, PendingCall, ToolsOutcome};
use crate::harness::in_sandbox::materialize_bundle;
use crate::harness::{TurnContext, TurnFailure};
use crate::persistence::{LedgerError, Step, StoredEntry, TurnError, TurnOutcome, now_millis};
use crate::sandboxes::ReadySandbox;

/// An entry of the conversation as this turn holds it.
#[derive(Clone, Debug)]
pub struct Held {
    pub position: i64,
    pub message_id: String,
    pub entry: Entry,
    pub created_at: i64,
}

impl Held {
    pub fn from_stored(stored: StoredEntry) -> Result<Held, TurnFailure> {
        let entry = serde_json::from_value(stored.entry).map_err(|error| {
            internal(format!("decode conversation entry {} of message {}: {error}", stored.position, stored.message_id))
        })?;
        Ok(Held { position: stored.position, message_id: stored.message_id, entry, created_at: stored.created_at })
    }
}

/// What the loop does next.
enum Action {
    CallModel,
    RunTools { calls: Vec<PendingCall>, answer_position: i64, requested_at: i64 },
    Finish(String),
}

pub struct Turn<'a> {
    pub harness: &'a PiHarness,
    pub context: &'a TurnContext<'a>,
    pub manifest: &'a Manifest,
    pub resources: Arc<AgentResources>,
    pub choice: ModelChoice,
    pub system: String,
    pub held: Vec<Held>,
    /// The tokens this message's model calls used.
    pub usage: Usage,
    pub attempt: i64,
    /// The session's sandbox, once a tool call needed it.
    pub sandbox: Option<ReadySandbox>,
    /// Passes over external calls in a row that neither parked nor found a result.
    pub unparked_passes: u32,
}

impl Turn<'_> {
    /// The session's sandbox, provisioned on first need, with the bundle materialized once per
    /// daemon boot (skills and main tools live in it).
    pub async fn sandbox(&mut self) -> Result<ReadySandbox, TurnFailure> {
        if let Some(sandbox) = &self.sandbox {
            return Ok(sandbox.clone());
        }
        let context = self.context;
        let env = context
            .secrets
            .environment(&context.claimed.session, &self.manifest.sandbox)
            .await
            .map_err(|error| TurnFailure::Final(error.into_turn_error()))?;
        let sandbox = context
            .sandboxes
            .ensure(&context.claimed.session, &self.manifest.sandbox, &env)
            .await
            .map_err(TurnFailure::from)?;
        if !self.harness.bundles.is_done(&sandbox) {
            materialize_bundle(context, &sandbox).await?;
            self.harness.bundles.mark_done(&sandbox, context.sandboxes.hub());
        }
        self.sandbox = Some(sandbox.clone());
        Ok(sandbox)
    }

    pub fn message_id(&self) -> &str {
        &self.context.claimed.message.id
    }

    pub async fn run(mut self) -> Result<Option<TurnOutcome>, TurnFailure> {
        let message_id = self.message_id().to_owned();
        let has_user_entry =
            self.held.iter().any(|held| held.message_id == message_id && matches!(held.entry, Entry::User { .. }));
        if !has_user_entry {
            let entry = self.user_entry().await?;
            self.commit(steps::user_step(&entry), vec![entry]).await?;
        }
        self.usage = Usage::default();
        for held in self.held.iter().filter(|held| held.message_id == message_id) {
            if let Entry::Assistant(answer) = &held.entry {
                self.usage.add(&answer.usage);
            }
        }
        loop {
            let action = self.next_action();
            if !matches!(action, Action::Finish(_)) {
                self.check_clock()?;
            }
            match action {
                Action::Finish(text) => {
                    return Ok(Some(TurnOutcome {
                        text: (!text.is_empty()).then_some(text),
                        state: crate::persistence::StateChange::Keep,
                        events: Vec::new(),
                        complete_session: false,
                        usage: Some(steps::usage_json(&self.usage)),
                    }));
                }
                Action::CallModel => self.call_model().await?,
                Action::RunTools { calls, answer_position, requested_at } => {
                    if tool_calls::run(&mut self, calls, answer_position, requested_at).await? == ToolsOutcome::Parked {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Commits a step and holds the entries it added. True when the step parked the message
    /// (it asked to wait, and a tool call still has no result).
    pub async fn commit(&mut self, step: Step, entries: Vec<Entry>) -> Result<bool, TurnFailure> {
        let context = self.context;
        let message = &context.claimed.message;
        let committed = context
            .store
            .commit_step(context.owner, &message.org_id, &message.id, &step)
            .await
            .map_err(ledger_failure)?;
        context.bus.notify(&committed.session.id, committed.session.last_event_sequence);
        let now = now_millis();
        for (entry, position) in entries.into_iter().zip(committed.positions) {
            self.held.push(Held { position, message_id: message.id.clone(), entry, created_at: now });
        }
        Ok(committed.parked)
    }

    fn next_action(&self) -> Action {
        let message_id = self.message_id();
        let Some(index) = self
            .held
            .iter()
            .rposition(|held| held.message_id == message_id && matches!(held.entry, Entry::Assistant(_)))
        else {
            return Action::CallModel;
        };
        let Entry::Assistant(answer) = &self.held[index].entry else { return Action::CallModel };
        if answer.tool_calls().next().is_none() {
            return Action::Finish(answer.text());
        }
        let answered: HashSet<&str> = self.held[index + 1..]
            .iter()
            .filter_map(|held| match &held.entry {
                Entry::ToolResult(result) => Some(result.tool_call_id.as_str()),
                _ => None,
            })
            .collect();
        let calls: Vec<PendingCall> = answer
            .tool_calls()
            .filter(|call| !answered.contains(call.id))
            .map(|call| PendingCall {
                id: call.id.to_owned(),
                name: call.name.to_owned(),
                arguments: call.arguments.clone(),
            })
            .collect();
        if calls.is_empty() {
            Action::CallModel
        } else {
            Action::RunTools {
                calls,
                answer_position: self.held[index].position,
                requested_at: self.held[index].created_at,
            }
        }
    }

    /// When the message must have ended (milliseconds): `--pi-message-timeout` after its start.
    pub fn deadline(&self) -> i64 {
        let started = self.context.claimed.message.started_at.unwrap_or_else(now_millis);
        started.saturating_add(millis(self.harness.settings.message_timeout))
    }

    /// Fails the message once it has run longer than the operator allows.
    fn check_clock(&self) -> Result<(), TurnFailure> {
        if now_millis() >= self.deadline() {
            return Err(TurnFailure::Final(message_timeout(self.harness.settings.message_timeout)));
        }
        Ok(())
    }

    /// The kind of a tool name, for events.
    pub fn kind_of(&self, name: &str) -> CallKind {
        tool_calls::kind_of(self.resources.catalog.get(name))
    }
}

/// The message's error when it ran past `--pi-message-timeout`.
pub fn message_timeout(limit: Duration) -> TurnError {
    TurnError::new(
        "message_timeout",
        format!("the message ran longer than the server's limit of {}", humantime::format_duration(limit)),
        Value::Null,
    )
}

pub fn internal(message: String) -> TurnFailure {
    TurnFailure::Final(TurnError::new("internal_error", message, Value::Null))
}

fn ledger_failure(error: LedgerError) -> TurnFailure {
    match error {
        LedgerError::LeaseLost(message_id) => TurnFailure::LeaseLost(message_id),
        other => internal(format!("record the step: {other}")),
    }
}

pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
