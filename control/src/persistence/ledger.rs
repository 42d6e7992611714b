//! A session's ledger: the append-only list of its events, numbered 1, 2, 3, … within the
//! session, and the state machine whose every step is written there.
//!
//! Every write to a session runs in one transaction that starts by locking the session's row
//! ([`Store::lock_session`]): the next sequence numbers come from that row, so two writers to a
//! session take turns (PostgreSQL's row lock; SQLite's single writer), and the ledger has no gap
//! and no duplicate. Status changes are events too (`message.status_changed`,
//! `session.status_changed`), written by [`LockedSession::set_message_status`] and
//! [`LockedSession::settle_status`], so a client that follows the ledger sees every step.

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::sessions::{SESSION_COLUMNS, SequencedQuery, session_from_row};
use super::{MessageStatus, Page, SessionRecord, SessionStatus, Store, Tx, now_millis};

/// The event types the control plane writes today, as they appear in `type`.
pub mod event_type {
    pub const USER_MESSAGE: &str = "user.message";
    pub const MESSAGE_STATUS_CHANGED: &str = "message.status_changed";
    pub const SESSION_STATUS_CHANGED: &str = "session.status_changed";
    pub const TOOL_CALL_REQUESTED: &str = "tool.call_requested";
    pub const TOOL_RESULT_SUBMITTED: &str = "tool.result_submitted";
    pub const TOOL_CALL_COMPLETED: &str = "tool.call_completed";
    pub const TOOL_CALL_FAILED: &str = "tool.call_failed";
    pub const ASSISTANT_MESSAGE_COMPLETED: &str = "assistant.message_completed";
    // Our additions (docs/pi-harness.md): the managed harness's steps.
    /// A tool call the sandbox runs (built-in or `kind: main`) started.
    pub const TOOL_CALL_STARTED: &str = "tool.call_started";
    /// One model answer of a turn: its text and tool calls, usage and stop reason.
    pub const ASSISTANT_STEP_COMPLETED: &str = "assistant.step_completed";
    /// A model call failed in a way worth retrying; the next attempt waits `delay_ms`.
    pub const ASSISTANT_RETRY_SCHEDULED: &str = "assistant.retry_scheduled";
    /// The start of the conversation was summarised to fit the model's context window.
    pub const SESSION_COMPACTED: &str = "session.compacted";
    /// Text as the model writes it: only on live streams, never stored in the ledger.
    pub const ASSISTANT_TEXT_DELTA: &str = "assistant.text_delta";
}

/// Who wrote an event: `source` is the kind of writer, `actor` the writer itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `user` (an API caller), `agent` (the harness, for the model) or `system` (the control
    /// plane's own bookkeeping).
    pub kind: &'static str,
    pub id: String,
}

impl Actor {
    /// An API caller, named by its organization.
    pub fn user(org_id: &str) -> Actor {
        Actor { kind: "user", id: org_id.to_owned() }
    }

    /// The agent, acting through its harness.
    pub fn agent(agent_id: &str) -> Actor {
        Actor { kind: "agent", id: agent_id.to_owned() }
    }

    /// The control plane itself.
    pub fn system() -> Actor {
        Actor { kind: "system", id: "dari".to_owned() }
    }

    fn to_json(&self) -> String {
        json!({"type": self.kind, "id": self.id}).to_string()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    pub session_id: String,
    pub sequence_number: i64,
    pub org_id: String,
    pub message_id: Option<String>,
    pub event_type: String,
    pub source: String,
    /// `{"type", "id"}`
    pub actor: Value,
    pub data: Value,
    pub created_at: i64,
}

impl EventRecord {
    /// The event's public id: `{session_id}:evt_{sequence_number}`.
    pub fn public_id(&self) -> String {
        event_id(&self.session_id, self.sequence_number)
    }
}

/// The public id of a session's event.
pub fn event_id(session_id: &str, sequence_number: i64) -> String {
    format!("{session_id}:evt_{sequence_number}")
}

/// Why a write to a session's ledger was refused.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("session {0} not found")]
    SessionNotFound(String),
    #[error("message {0} not found")]
    MessageNotFound(String),
    #[error(
        "Idempotency-Key {key:?} was already used for a different request to this session; send the same request again, or use a new key"
    )]
    IdempotencyConflict { key: String },
    /// The request names a tool call that is not waiting for a result; the text says why.
    #[error("{0}")]
    ToolCall(String),
    #[error("session {0} is completed: the agent ended it, and it takes no more messages; start a new session")]
    SessionCompleted(String),
    /// The worker's lease on the message expired and another worker took it over, or the
    /// message ended meanwhile: this worker's outcome is not recorded.
    #[error("message {0} is no longer leased to this worker")]
    LeaseLost(String),
    #[error("message {message_id} is {from}; it cannot become {to}")]
    InvalidTransition { message_id: String, from: &'static str, to: &'static str },
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

const EVENT_COLUMNS: &str =
    "session_id, sequence_number, org_id, message_id, type, source, actor, data, tool_call_id, created_at";

/// An event to append.
pub(super) struct NewEvent<'a> {
    pub message_id: Option<&'a str>,
    pub event_type: &'a str,
    pub actor: &'a Actor,
    pub data: Value,
    pub tool_call_id: Option<&'a str>,
}

/// A session whose row this transaction has locked: the ledger's writer.
pub(super) struct LockedSession {
    pub session: SessionRecord,
    /// The time of this write: every event it appends carries it.
    pub now: i64,
}

impl Store {
    /// Locks a session's row for the rest of `tx` and reads it. `None` when the organization has
    /// no such session.
    pub(super) async fn lock_session(
        &self,
        tx: &mut Tx,
        org_id: &str,
        session_id: &str,
    ) -> anyhow::Result<Option<LockedSession>> {
        let now = now_millis();
        let row = sqlx::query(&format!(
            "UPDATE sessions SET updated_at = $1 WHERE org_id = $2 AND id = $3 RETURNING {SESSION_COLUMNS}"
        ))
        .bind(now)
        .bind(org_id)
        .bind(session_id)
        .fetch_optional(&mut **tx)
        .await
        .context("lock session")?;
        row.map(|row| Ok(LockedSession { session: session_from_row(&row)?, now })).transpose()
    }

    /// Events of a session after `after` (a sequence number; 0 for the start), oldest first.
    pub async fn list_events(
        &self,
        org_id: &str,
        session_id: &str,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Page<EventRecord>> {
        let query = SequencedQuery { columns: EVENT_COLUMNS, table: "events", what: "list events" };
        self.list_in_session(&query, org_id, session_id, after, limit, event_from_row).await
    }

    /// One event of a session, by sequence number.
    pub(super) async fn event_in(
        &self,
        tx: &mut Tx,
        session_id: &str,
        sequence_number: i64,
    ) -> anyhow::Result<EventRecord> {
        let row =
            sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE session_id = $1 AND sequence_number = $2"))
                .bind(session_id)
                .bind(sequence_number)
                .fetch_one(&mut **tx)
                .await
                .with_context(|| format!("read event {}", event_id(session_id, sequence_number)))?;
        event_from_row(&row)
    }
}

impl LockedSession {
    /// Appends one event; its sequence number follows the session's last.
    pub(super) async fn append(&mut self, tx: &mut Tx, event: NewEvent<'_>) -> anyhow::Result<EventRecord> {
        let record = EventRecord {
            session_id: self.session.id.clone(),
            sequence_number: self.session.last_event_sequence + 1,
            org_id: self.session.org_id.clone(),
            message_id: event.message_id.map(str::to_owned),
            event_type: event.event_type.to_owned(),
            source: event.actor.kind.to_owned(),
            actor: json!({"type": event.actor.kind, "id": event.actor.id}),
            data: event.data,
            created_at: self.now,
        };
        sqlx::query(&format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
            .bind(&record.session_id)
            .bind(record.sequence_number)
            .bind(&record.org_id)
            .bind(&record.message_id)
            .bind(&record.event_type)
            .bind(&record.source)
            .bind(event.actor.to_json())
            .bind(record.data.to_string())
            .bind(event.tool_call_id)
            .bind(record.created_at)
            .execute(&mut **tx)
            .await
            .with_context(|| format!("append {} to session {}", record.event_type, record.session_id))?;
        self.session.last_event_sequence = record.sequence_number;
        Ok(record)
    }

    /// Moves a message to `status`, recording `message.status_changed`, and settles the
    /// session's status. A message that has ended (`completed`, `failed`) does not move again.
    pub(super) async fn set_message_status(
        &mut self,
        tx: &mut Tx,
        message: &mut super::MessageRecord,
        status: MessageStatus,
        error: Option<&str>,
    ) -> Result<(), LedgerError> {
        if !message.status.is_pending() {
            return Err(LedgerError::InvalidTransition {
                message_id: message.id.clone(),
                from: message.status.as_str(),
                to: status.as_str(),
            });
        }
        let previous = message.status;
        let now = self.now;
        let started_at =
            if status == MessageStatus::Running { message.started_at.or(Some(now)) } else { message.started_at };
        let completed_at = if status.is_pending() { None } else { Some(now) };
        sqlx::query("UPDATE messages SET status = $1, started_at = $2, completed_at = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(started_at)
            .bind(completed_at)
            .bind(&message.id)
            .execute(&mut **tx)
            .await
            .context("update message status")?;
        message.status = status;
        message.started_at = started_at;
        message.completed_at = completed_at;
        let mut data =
            json!({"message_id": message.id, "status": status.as_str(), "previous_status": previous.as_str()});
        if let Some(error) = error {
            data["error"] = json!(error);
        }
        let actor = Actor::system();
        self.append(
            tx,
            NewEvent {
                message_id: Some(&message.id),
                event_type: event_type::MESSAGE_STATUS_CHANGED,
                actor: &actor,
                data,
                tool_call_id: None,
            },
        )
        .await?;
        if self.session.last_message_id.as_deref() == Some(message.id.as_str()) {
            self.session.last_message_status = Some(status);
        }
        self.settle_status(tx, Some(&message.id)).await?;
        Ok(())
    }

    /// Sets the session's status from its messages: `running` while one is pending, else
    /// `idle`; a change is recorded as `session.status_changed`, attributed to `message_id`.
    pub(super) async fn settle_status(&mut self, tx: &mut Tx, message_id: Option<&str>) -> anyhow::Result<()> {
        let pending: i64 = sqlx::query(
            "SELECT COUNT(*) FROM messages WHERE session_id = $1 AND status IN ('queued', 'running', 'waiting_for_tool')",
        )
        .bind(&self.session.id)
        .fetch_one(&mut **tx)
        .await
        .context("count pending messages")?
        .try_get(0)?;
        let status = match (self.session.status, pending) {
            (SessionStatus::Completed, _) => SessionStatus::Completed,
            (_, 0) => SessionStatus::Idle,
            _ => SessionStatus::Running,
        };
        if status != self.session.status {
            let previous = self.session.status;
            self.session.status = status;
            let actor = Actor::system();
            let data = json!({"status": status.as_str(), "previous_status": previous.as_str()});
            self.append(
                tx,
                NewEvent {
                    message_id,
                    event_type: event_type::SESSION_STATUS_CHANGED,
                    actor: &actor,
                    data,
                    tool_call_id: None,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Writes the session's derived state back to its row.
    pub(super) async fn save(&mut self, tx: &mut Tx) -> anyhow::Result<()> {
        self.session.updated_at = self.now;
        sqlx::query(
            "UPDATE sessions SET status = $1, last_message_id = $2, last_message_status = $3, last_event_sequence = $4,
                                 last_message_sequence = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(self.session.status.as_str())
        .bind(&self.session.last_message_id)
        .bind(self.session.last_message_status.map(MessageStatus::as_str))
        .bind(self.session.last_event_sequence)
        .bind(self.session.last_message_sequence)
        .bind(self.session.updated_at)
        .bind(&self.session.id)
        .execute(&mut **tx)
        .await
        .context("update session")?;
        Ok(())
    }
}

fn event_from_row(row: &AnyRow) -> anyhow::Result<EventRecord> {
    let actor: String = row.try_get("actor")?;
    let data: String = row.try_get("data")?;
    Ok(EventRecord {
        session_id: row.try_get("session_id")?,
        sequence_number: row.try_get("sequence_number")?,
        org_id: row.try_get("org_id")?,
        message_id: row.try_get("message_id")?,
        event_type: row.try_get("type")?,
        source: row.try_get("source")?,
        actor: serde_json::from_str(&actor).context("decode event actor")?,
        data: serde_json::from_str(&data).context("decode event data")?,
        created_at: row.try_get("created_at")?,
    })
}
