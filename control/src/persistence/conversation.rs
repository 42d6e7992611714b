//! The managed pi harness's steps: each session's conversation with its model (one row per
//! entry), and the step writes that grow it. A step (a model answer, a tool result, a
//! compaction, a wait for external tools) is committed in one transaction with its ledger events
//! and the message's output, by the holder of the message's lease only, before the next step
//! starts. A worker that takes a message over reads the conversation back and resumes after the
//! last committed step.
//!
//! Entries are stored as JSON; their shape belongs to the harness (`harness::pi::model::Entry`).

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::Row;

use super::ledger::{Actor, LedgerError, NewEvent, event_type};
use super::queue::check_lease;
use super::{MessageStatus, SessionRecord, Store, Tx};

/// An entry of a session's conversation.
#[derive(Clone, Debug)]
pub struct StoredEntry {
    pub position: i64,
    pub message_id: String,
    pub entry: Value,
    /// When it was committed (milliseconds).
    pub created_at: i64,
}

/// A ledger event a step records.
#[derive(Clone, Debug)]
pub struct StepEvent {
    pub event_type: &'static str,
    pub data: Value,
    /// The tool call the event is about, which the ledger indexes.
    pub tool_call_id: Option<String>,
}

/// One step of a message's turn.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// Appended to the conversation, in order.
    pub entries: Vec<Value>,
    pub events: Vec<StepEvent>,
    /// Appended to the message's `output.parts`.
    pub parts: Vec<Value>,
    /// The message's `output.usage` from now on: the turn's tokens so far.
    pub usage: Option<Value>,
    /// Entries up to this position, and every earlier compaction summary, left the model's
    /// context (a compaction replaced them). Applied before the step's entries are added.
    pub compact_through: Option<i64>,
    /// The message's attempt from now on (a model call is being retried).
    pub attempt: Option<i64>,
    /// Park the message `waiting_for_tool` until this time (milliseconds), and let go of its
    /// lease: it is claimed again when the last result comes in, or at this time.
    pub wait_until: Option<i64>,
}

/// What a committed step left.
#[derive(Debug)]
pub struct CommittedStep {
    pub session: SessionRecord,
    /// The positions of the entries the step added, in order.
    pub positions: Vec<i64>,
    /// False when a wait was asked for but every tool call had its result already: the message
    /// stays `running` with its lease, and the turn goes on.
    pub parked: bool,
}

impl Store {
    /// The entries of a session's conversation that are in the model's context, in order.
    pub async fn conversation(&self, session_id: &str) -> anyhow::Result<Vec<StoredEntry>> {
        let rows = sqlx::query(
            "SELECT position, message_id, entry, created_at FROM conversation_entries WHERE session_id = $1 AND compacted = 0 ORDER BY position",
        )
        .bind(session_id)
        .fetch_all(self.reader())
        .await
        .context("read the conversation")?;
        rows.iter()
            .map(|row| {
                let entry: String = row.try_get("entry")?;
                Ok(StoredEntry {
                    position: row.try_get("position")?,
                    message_id: row.try_get("message_id")?,
                    entry: serde_json::from_str(&entry).context("decode a conversation entry")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Commits one step of a message's turn, if `owner` still holds its lease.
    pub async fn commit_step(
        &self,
        owner: &str,
        org_id: &str,
        message_id: &str,
        step: &Step,
    ) -> Result<CommittedStep, LedgerError> {
        let (mut tx, mut locked, mut message) = self.lock_message(org_id, message_id).await?;
        check_lease(&mut tx, owner, &message).await?;
        let session_id = locked.session.id.clone();
        if let Some(through) = step.compact_through {
            // Earlier summaries leave too: the new one took them in. (An entry's JSON starts with
            // its role, the tag serde writes first.)
            sqlx::query(
                "UPDATE conversation_entries SET compacted = 1 WHERE session_id = $1
                 AND (position <= $2 OR entry LIKE '{\"role\":\"compaction_summary\"%')",
            )
            .bind(&session_id)
            .bind(through)
            .execute(&mut *tx)
            .await
            .context("compact the conversation")?;
        }
        let positions = if step.entries.is_empty() {
            Vec::new()
        } else {
            append_entries(&mut tx, &session_id, message_id, &step.entries, locked.now).await?
        };
        let agent = Actor::agent(&locked.session.agent_id);
        for event in &step.events {
            locked
                .append(
                    &mut tx,
                    NewEvent {
                        message_id: Some(message_id),
                        event_type: event.event_type,
                        actor: &agent,
                        data: event.data.clone(),
                        tool_call_id: event.tool_call_id.as_deref(),
                    },
                )
                .await?;
        }
        if !step.parts.is_empty() || step.usage.is_some() {
            let output = message.output.as_object_mut().context("a message's output is an object")?;
            let parts = output.entry("parts").or_insert_with(|| json!([]));
            if let Value::Array(parts) = parts {
                parts.extend(step.parts.iter().cloned());
            }
            if let Some(usage) = &step.usage {
                output.insert("usage".to_owned(), usage.clone());
            }
            sqlx::query("UPDATE messages SET output = $1 WHERE id = $2")
                .bind(message.output.to_string())
                .bind(message_id)
                .execute(&mut *tx)
                .await
                .context("record the message's output")?;
        }
        if let Some(attempt) = step.attempt {
            sqlx::query("UPDATE messages SET attempt = $1 WHERE id = $2")
                .bind(attempt)
                .bind(message_id)
                .execute(&mut *tx)
                .await
                .context("count the attempt")?;
        }
        let mut parked = false;
        if let Some(wait_until) = step.wait_until
            && self.open_tool_calls(&mut tx, &message).await? > 0
        {
            sqlx::query(
                "UPDATE messages SET wait_until = $1, lease_owner = NULL, lease_expires_at = NULL WHERE id = $2",
            )
            .bind(wait_until)
            .bind(message_id)
            .execute(&mut *tx)
            .await
            .context("park the message")?;
            locked.set_message_status(&mut tx, &mut message, MessageStatus::WaitingForTool, None).await?;
            parked = true;
        }
        locked.save(&mut tx).await?;
        tx.commit().await.context("commit the step")?;
        Ok(CommittedStep { session: locked.session, positions, parked })
    }

    /// Notes where a message's tool calls were sent (`{sandbox_id}:{boot_id}`), before they are.
    pub async fn note_tools_dispatched(&self, owner: &str, message_id: &str, to: &str) -> Result<(), LedgerError> {
        let result = sqlx::query(
            "UPDATE messages SET tools_dispatched_to = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'running'",
        )
        .bind(to)
        .bind(message_id)
        .bind(owner)
        .execute(self.writer())
        .await
        .context("note where the tool calls went")?;
        if result.rows_affected() == 1 { Ok(()) } else { Err(LedgerError::LeaseLost(message_id.to_owned())) }
    }

    /// Where a message's tool calls were last sent, if anywhere.
    pub async fn tools_dispatched_to(&self, message_id: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT tools_dispatched_to FROM messages WHERE id = $1")
            .bind(message_id)
            .fetch_one(self.reader())
            .await
            .context("read where the tool calls went")?;
        Ok(row.try_get("tools_dispatched_to")?)
    }

    /// Whether a session's ledger has a tool call with this id.
    pub async fn tool_call_id_taken(&self, session_id: &str, tool_call_id: &str) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM events WHERE session_id = $1 AND tool_call_id = $2 LIMIT 1")
            .bind(session_id)
            .bind(tool_call_id)
            .fetch_optional(self.reader())
            .await
            .context("look up a tool call id")?;
        Ok(row.is_some())
    }

    /// The tool a session's `tool.call_requested` named, while that call waits for its result
    /// (`None` when the session has no such call, or it has its result).
    pub async fn open_tool_call_name(
        &self,
        org_id: &str,
        session_id: &str,
        tool_call_id: &str,
    ) -> anyhow::Result<Option<String>> {
        let row = sqlx::query(
            "SELECT data FROM events requested WHERE org_id = $1 AND session_id = $2 AND tool_call_id = $3 AND type = $4
             AND NOT EXISTS (SELECT 1 FROM events answer WHERE answer.session_id = $2 AND answer.tool_call_id = $3
                             AND answer.type IN ('tool.result_submitted', 'tool.call_completed', 'tool.call_failed'))",
        )
        .bind(org_id)
        .bind(session_id)
        .bind(tool_call_id)
        .bind(event_type::TOOL_CALL_REQUESTED)
        .fetch_optional(self.reader())
        .await
        .context("read the tool call")?;
        let Some(row) = row else { return Ok(None) };
        let data: String = row.try_get("data")?;
        let data: Value = serde_json::from_str(&data).context("decode the tool call")?;
        Ok(data.get("tool_name").and_then(Value::as_str).map(str::to_owned))
    }

    /// The results clients submitted for a message's tool calls: `(tool_call_id, data)` of each
    /// `tool.result_submitted`, in ledger order.
    pub async fn submitted_tool_results(
        &self,
        session_id: &str,
        message_id: &str,
    ) -> anyhow::Result<Vec<(String, Value)>> {
        let rows = sqlx::query(
            "SELECT tool_call_id, data FROM events WHERE session_id = $1 AND message_id = $2 AND type = $3 ORDER BY sequence_number",
        )
        .bind(session_id)
        .bind(message_id)
        .bind(event_type::TOOL_RESULT_SUBMITTED)
        .fetch_all(self.reader())
        .await
        .context("read the submitted tool results")?;
        rows.iter()
            .map(|row| {
                let data: String = row.try_get("data")?;
                let tool_call_id: Option<String> = row.try_get("tool_call_id")?;
                Ok((tool_call_id.unwrap_or_default(), serde_json::from_str(&data).context("decode a tool result")?))
            })
            .collect()
    }
}

async fn append_entries(
    tx: &mut Tx,
    session_id: &str,
    message_id: &str,
    entries: &[Value],
    now: i64,
) -> anyhow::Result<Vec<i64>> {
    let last: Option<i64> = sqlx::query("SELECT MAX(position) FROM conversation_entries WHERE session_id = $1")
        .bind(session_id)
        .fetch_one(&mut **tx)
        .await
        .context("read the conversation's length")?
        .try_get(0)?;
    let mut position = last.unwrap_or(0);
    let mut positions = Vec::with_capacity(entries.len());
    for entry in entries {
        position += 1;
        positions.push(position);
        sqlx::query(
            "INSERT INTO conversation_entries (session_id, position, message_id, entry, compacted, created_at)
             VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(session_id)
        .bind(position)
        .bind(message_id)
        .bind(entry.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await
        .context("append to the conversation")?;
    }
    Ok(positions)
}
