//! One model step of a turn: the call (streamed, its text published live), retried by the
//! option's retry policy, compacting once when the prompt is too long, and the answer committed
//! with its events.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::backoff::Backoff;
use super::context::request_entries;
use super::model::{AssistantBlock, AssistantTurn, Entry, ModelError, ModelErrorKind, ModelRequest, StreamEvent};
use super::steps;
use super::tool_calls;
use super::turn::{Turn, internal, millis};
use super::{compaction, provider};
use crate::harness::TurnFailure;
use crate::ids::new_id;
use crate::persistence::{TurnError, now_millis};

impl Turn<'_> {
    pub(super) fn model_turns(&self) -> usize {
        let message_id = self.message_id();
        self.held
            .iter()
            .filter(|held| held.message_id == message_id && matches!(held.entry, Entry::Assistant(_)))
            .count()
    }

    /// Asks the model for its next answer, retrying by the option's retry policy, and commits
    /// the answer.
    pub(super) async fn call_model(&mut self) -> Result<(), TurnFailure> {
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
                Err(error) if error.kind == ModelErrorKind::ContextOverflow && !compacted_for_overflow => {
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
        self.make_call_ids_unique(&mut answer).await?;
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
    /// An id is taken when the conversation in context has it, or the session's ledger does
    /// (compaction takes older answers out of context, not out of the ledger).
    async fn make_call_ids_unique(&self, answer: &mut AssistantTurn) -> Result<(), TurnFailure> {
        let mut seen: HashSet<String> = self
            .held
            .iter()
            .filter_map(|held| match &held.entry {
                Entry::Assistant(turn) => Some(turn.tool_calls().map(|call| call.id.to_owned()).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        let session_id = &self.context.claimed.session.id;
        for block in &mut answer.content {
            if let AssistantBlock::ToolCall { id, .. } = block {
                let usable = !id.is_empty()
                    && id.len() <= 64
                    && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                let taken = !usable
                    || seen.contains(id.as_str())
                    || self
                        .context
                        .store
                        .tool_call_id_taken(session_id, id)
                        .await
                        .map_err(|error| internal(format!("{error:#}")))?;
                if taken {
                    *id = new_id("call");
                }
                seen.insert(id.clone());
            }
        }
        Ok(())
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
}
