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

use base64::Engine as _;
use dari_protocol::manifest::Manifest;
use dari_protocol::tools::ContentBlock;
use serde_json::{Value, json};

use super::PiHarness;
use super::backoff::Backoff;
use super::context::request_entries;
use super::endpoint::ModelChoice;
use super::model::{AssistantBlock, AssistantTurn, Entry, ModelError, ModelRequest, StreamEvent, Usage};
use super::prompt::expand_skill_command;
use super::resources::AgentResources;
use super::steps::{self, CallKind};
use super::tool_calls::{self, PendingCall, ToolsOutcome};
use super::{compaction, provider};
use crate::harness::in_sandbox::materialize_bundle;
use crate::harness::{TurnContext, TurnFailure};
use crate::ids::new_id;
use crate::persistence::{LedgerError, Step, StoredEntry, TurnError, TurnOutcome, file_blob_key, now_millis};
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
}

impl Turn<'_> {
    /// The session's sandbox, provisioned on first need, with the bundle materialized once per
    /// daemon boot (skills and main tools live in it).
    pub async fn sandbox(&mut self) -> Result<ReadySandbox, TurnFailure> {
        if let Some(sandbox) = &self.sandbox {
            return Ok(sandbox.clone());
        }
        let context = self.context;
        let sandbox = context
            .sandboxes
            .ensure(&context.claimed.session, self.manifest.sandbox.provider)
            .await
            .map_err(|error| TurnFailure::Retryable(error.0))?;
        if !self.harness.bundles.is_done(&sandbox) {
            materialize_bundle(context, &sandbox).await?;
            self.harness.bundles.mark_done(&sandbox);
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
            self.check_clock()?;
            match self.next_action() {
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

    /// The message as the model sees it: text, images, `/skill:` expanded.
    async fn user_entry(&self) -> Result<Entry, TurnFailure> {
        let message = &self.context.claimed.message;
        let parts = message.parts.as_array().cloned().unwrap_or_default();
        let mut content = Vec::with_capacity(parts.len());
        for part in parts {
            let field = |name: &str| part.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
            match part.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let text = field("text");
                    let expanded = if content.is_empty() {
                        expand_skill_command(&text, &self.resources.skills)
                            .map_err(|error| TurnFailure::Final(TurnError::new("unknown_skill", error, Value::Null)))?
                    } else {
                        None
                    };
                    content.push(ContentBlock::Text { text: expanded.unwrap_or(text) });
                }
                Some(kind @ ("file" | "image")) => content.push(self.file_block(kind, &field("file_id")).await?),
                _ => {}
            }
        }
        Ok(Entry::User { content })
    }

    /// An image the model can see, or a note naming an attached file.
    async fn file_block(&self, kind: &str, file_id: &str) -> Result<ContentBlock, TurnFailure> {
        let context = self.context;
        let org_id = &context.claimed.message.org_id;
        let record = context.store.file(org_id, file_id).await.map_err(|error| internal(format!("{error:#}")))?;
        let Some(record) = record else {
            return Ok(ContentBlock::Text { text: format!("[attached file {file_id} was deleted]") });
        };
        if kind == "image" && record.is_image() {
            let bytes = self
                .harness
                .blobs
                .get(&file_blob_key(file_id))
                .await
                .map_err(|error| internal(format!("read file {file_id}: {error:#}")))?;
            if let Some(bytes) = bytes {
                let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
                return Ok(ContentBlock::Image { data, mime_type: record.content_type.clone() });
            }
        }
        Ok(ContentBlock::Text {
            text: format!(
                "[attached file {} ({}, {} bytes), id {file_id}]",
                record.filename, record.content_type, record.size_bytes
            ),
        })
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
        let started = self.context.claimed.message.started_at.unwrap_or_else(now_millis);
        let limit = self.harness.settings.message_timeout;
        let elapsed = Duration::from_millis(u64::try_from(now_millis() - started).unwrap_or(0));
        if now_millis() >= self.deadline() {
            return Err(TurnFailure::Final(TurnError::new(
                "message_timeout",
                format!(
                    "the message ran for {}, longer than the server's limit of {}",
                    humantime::format_duration(Duration::from_secs(elapsed.as_secs())),
                    humantime::format_duration(limit)
                ),
                Value::Null,
            )));
        }
        Ok(())
    }

    fn model_turns(&self) -> usize {
        let message_id = self.message_id();
        self.held
            .iter()
            .filter(|held| held.message_id == message_id && matches!(held.entry, Entry::Assistant(_)))
            .count()
    }

    /// Asks the model for its next answer, retrying by the option's retry policy, and commits
    /// the answer.
    async fn call_model(&mut self) -> Result<(), TurnFailure> {
        let turns = self.model_turns();
        let limit = self.harness.settings.max_model_turns;
        if turns >= usize::try_from(limit).unwrap_or(usize::MAX) {
            return Err(TurnFailure::Final(TurnError::new(
                "turn_limit",
                format!(
                    "the model answered {turns} times in this message without finishing, the server's limit; send a new message to go on"
                ),
                json!({"model_turns": turns}),
            )));
        }
        compaction::compact_if_needed(self, false).await?;
        let backoff = Backoff::for_llm(self.choice.retry_policy.as_ref());
        let mut failures: u32 = 0;
        let mut compacted_for_overflow = false;
        loop {
            match self.stream_answer().await {
                Ok(answer) => {
                    self.commit_answer(answer).await?;
                    return Ok(());
                }
                Err(error)
                    if error.kind == super::model::ModelErrorKind::ContextOverflow && !compacted_for_overflow =>
                {
                    compacted_for_overflow = true;
                    if !compaction::compact_if_needed(self, true).await? {
                        return Err(TurnFailure::Final(self.model_failure(&error, failures + 1)));
                    }
                }
                Err(error) if error.kind.is_retryable() => {
                    failures += 1;
                    let Some(delay) = backoff.delay_before(failures + 1, error.retry_after) else {
                        return Err(TurnFailure::Final(self.model_failure(&error, failures)));
                    };
                    self.attempt += 1;
                    let step = steps::retry_step(
                        &self.context.claimed.message.id,
                        self.attempt,
                        backoff.maximum_attempts,
                        u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        &self.error_json(&error),
                    );
                    self.commit(step, Vec::new()).await?;
                    tracing::info!(message_id = %self.message_id(), failures, ?delay, "retrying the model call: {error}");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(TurnFailure::Final(self.model_failure(&error, failures + 1))),
            }
        }
    }

    async fn stream_answer(&self) -> Result<AssistantTurn, ModelError> {
        let entries = request_entries(&self.held);
        let tools: Vec<_> = self.resources.catalog.specs();
        let request = ModelRequest {
            model: &self.choice.upstream_model,
            system: &self.system,
            entries: &entries,
            tools: &tools,
            max_tokens: self.harness.settings.max_output_tokens,
        };
        let context = self.context;
        let session_id = context.claimed.session.id.clone();
        let message_id = context.claimed.message.id.clone();
        let mut on_event = |event: StreamEvent| {
            if let StreamEvent::TextDelta(delta) = event {
                context.bus.live(&session_id, &message_id, &delta);
            }
        };
        provider::stream_with(
            &self.harness.http,
            &self.choice.endpoint,
            &request,
            &self.harness.stream_config(),
            &mut on_event,
        )
        .await
    }

    async fn commit_answer(&mut self, mut answer: AssistantTurn) -> Result<bool, TurnFailure> {
        self.make_call_ids_unique(&mut answer);
        self.usage.add(&answer.usage);
        let number = u32::try_from(self.model_turns() + 1).unwrap_or(u32::MAX);
        let catalog = &self.resources.catalog;
        let now = now_millis();
        let step = steps::answer_step(
            &self.context.claimed.message.id,
            number,
            &answer,
            &self.usage,
            |name| tool_calls::kind_of(catalog.get(name)),
            |name| tool_calls::external_timeout(catalog.get(name)).map(|timeout| now + millis(timeout)),
        );
        self.commit(step, vec![Entry::Assistant(answer)]).await
    }

    /// Tool call ids index the ledger: a provider that repeats one (or sends none) gets new ones.
    fn make_call_ids_unique(&self, answer: &mut AssistantTurn) {
        let mut seen: HashSet<String> = self
            .held
            .iter()
            .filter_map(|held| match &held.entry {
                Entry::Assistant(turn) => Some(turn.tool_calls().map(|call| call.id.to_owned()).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        for block in &mut answer.content {
            if let AssistantBlock::ToolCall { id, .. } = block {
                let usable = !id.is_empty()
                    && id.len() <= 64
                    && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !usable || seen.contains(id.as_str()) {
                    *id = new_id("call");
                }
                seen.insert(id.clone());
            }
        }
    }

    pub fn error_json(&self, error: &ModelError) -> Value {
        json!({
            "type": format!("model_{}", error.kind.as_str()),
            "message": error.message,
            "status": error.status,
        })
    }

    /// The message's error when the model cannot answer: the provider's own words.
    fn model_failure(&self, error: &ModelError, attempts: u32) -> TurnError {
        let mut details = self.choice.describe();
        details["status"] = json!(error.status);
        details["attempts"] = json!(attempts);
        if let Some(body) = &error.body {
            details["body"] = json!(body);
        }
        TurnError::new(&format!("model_{}", error.kind.as_str()), error.message.clone(), details)
    }

    /// The kind of a tool name, for events.
    pub fn kind_of(&self, name: &str) -> CallKind {
        tool_calls::kind_of(self.resources.catalog.get(name))
    }
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
