//! Messages, and the writes that clients make to a session's ledger: a user message (which
//! queues a message), a tool result (which answers a tool call the agent requested), and the
//! steps the harness records (a tool call requested, a message's status).
//!
//! Each write is one transaction on the locked session (see [`super::ledger`]). A write with an
//! `Idempotency-Key` records the key with a hash of the request: the same key and request return
//! the first write's event instead of writing again; the same key with another request is
//! refused.

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::ledger::{Actor, EventRecord, LedgerError, LockedSession, NewEvent, event_id, event_type};
use super::sessions::SequencedQuery;
use super::{MessageStatus, NewSession, Page, SessionRecord, SessionStatus, Store, Tx};
use crate::ids::{new_id, prefix};

#[derive(Clone, Debug, PartialEq)]
pub struct MessageRecord {
    pub id: String,
    pub org_id: String,
    pub session_id: String,
    /// 1, 2, 3, … within the session.
    pub sequence_number: i64,
    /// The user's content blocks.
    pub parts: Value,
    pub metadata: Value,
    pub status: MessageStatus,
    /// The attempt the message is on, from 1.
    pub attempt: i64,
    /// `{"parts": [...], "error": null | "..."}`: the assistant's turn.
    pub output: Value,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
}

/// An `Idempotency-Key` and the SHA-256 of the request it came with.
#[derive(Clone, Copy, Debug)]
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub request_sha256: &'a str,
}

/// A user message to append: its content blocks and metadata, as validated JSON.
#[derive(Debug)]
pub struct NewUserMessage<'a> {
    pub content: &'a Value,
    pub metadata: &'a Value,
    pub actor: &'a Actor,
    pub idempotency: Option<Idempotency<'a>>,
}

/// A tool result to append.
#[derive(Debug)]
pub struct NewToolResult<'a> {
    pub message_id: &'a str,
    pub tool_call_id: &'a str,
    pub result: &'a Value,
    pub is_error: bool,
    pub actor: &'a Actor,
    pub idempotency: Option<Idempotency<'a>>,
}

/// What a client's write recorded: the event, the message it concerns, and the session after it.
#[derive(Debug)]
pub struct Appended {
    pub event: EventRecord,
    pub message: MessageRecord,
    pub session: SessionRecord,
    /// True when an `Idempotency-Key` matched an earlier write, which this repeats.
    pub replayed: bool,
}

pub(super) const MESSAGE_COLUMNS: &str = "id, org_id, session_id, sequence_number, parts, metadata, status, attempt, output, \
                               created_at, started_at, completed_at";

/// The event types that give a tool call its result.
const TOOL_CALL_ANSWERS: &str = "('tool.result_submitted', 'tool.call_completed', 'tool.call_failed')";

impl Store {
    /// Appends a `user.message` to a session: a new `queued` message, its events, and the
    /// session's new state, in one transaction.
    pub async fn send_user_message(
        &self,
        org_id: &str,
        session_id: &str,
        new: &NewUserMessage<'_>,
    ) -> Result<Appended, LedgerError> {
        let mut tx = self.begin().await?;
        let mut locked = self
            .lock_session(&mut tx, org_id, session_id)
            .await?
            .ok_or_else(|| LedgerError::SessionNotFound(session_id.to_owned()))?;
        if let Some(appended) = self.replay(&mut tx, &locked, new.idempotency).await? {
            return Ok(appended);
        }
        if locked.session.status == SessionStatus::Completed {
            return Err(LedgerError::SessionCompleted(session_id.to_owned()));
        }
        let appended = self.append_user_message(&mut tx, &mut locked, new).await?;
        tx.commit().await.context("commit the message")?;
        Ok(appended)
    }

    /// Creates a session and appends its first `user.message`, in one transaction.
    pub async fn create_session_with_message(
        &self,
        session: &NewSession<'_>,
        message: &NewUserMessage<'_>,
    ) -> Result<Appended, LedgerError> {
        let mut tx = self.begin().await?;
        self.insert_session(&mut tx, session).await?;
        let mut locked =
            self.lock_session(&mut tx, session.org_id, session.id).await?.context("read the session just created")?;
        let appended = self.append_user_message(&mut tx, &mut locked, message).await?;
        tx.commit().await.context("commit the session and its message")?;
        Ok(appended)
    }

    async fn append_user_message(
        &self,
        tx: &mut Tx,
        locked: &mut LockedSession,
        new: &NewUserMessage<'_>,
    ) -> Result<Appended, LedgerError> {
        let message = MessageRecord {
            id: new_id(prefix::MESSAGE),
            org_id: locked.session.org_id.clone(),
            session_id: locked.session.id.clone(),
            sequence_number: locked.session.last_message_sequence + 1,
            parts: new.content.clone(),
            metadata: new.metadata.clone(),
            status: MessageStatus::Queued,
            attempt: 1,
            output: json!({"parts": [], "error": null}),
            created_at: locked.now,
            started_at: None,
            completed_at: None,
        };
        sqlx::query(&format!(
            "INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL)"
        ))
        .bind(&message.id)
        .bind(&message.org_id)
        .bind(&message.session_id)
        .bind(message.sequence_number)
        .bind(message.parts.to_string())
        .bind(message.metadata.to_string())
        .bind(message.status.as_str())
        .bind(message.attempt)
        .bind(message.output.to_string())
        .bind(message.created_at)
        .execute(&mut **tx)
        .await
        .context("insert message")?;
        locked.session.last_message_sequence = message.sequence_number;
        locked.session.last_message_id = Some(message.id.clone());
        locked.session.last_message_status = Some(message.status);
        let data = json!({"content": new.content, "metadata": new.metadata, "message_id": message.id});
        let event = locked
            .append(
                tx,
                NewEvent {
                    message_id: Some(&message.id),
                    event_type: event_type::USER_MESSAGE,
                    actor: new.actor,
                    data,
                    tool_call_id: None,
                },
            )
            .await?;
        let data = json!({"message_id": message.id, "status": message.status.as_str(), "previous_status": null});
        locked
            .append(
                tx,
                NewEvent {
                    message_id: Some(&message.id),
                    event_type: event_type::MESSAGE_STATUS_CHANGED,
                    actor: &Actor::system(),
                    data,
                    tool_call_id: None,
                },
            )
            .await?;
        locked.settle_status(tx, Some(&message.id)).await?;
        self.finish_write(tx, locked, new.idempotency, &event).await?;
        Ok(Appended { event, message, session: locked.session.clone(), replayed: false })
    }

    /// Appends a `tool.result_submitted`: accepted only for a tool call the ledger shows
    /// requested for that message and not yet answered. When it was the message's last open
    /// tool call, a message `waiting_for_tool` is `queued` again, for the harness to continue.
    pub async fn submit_tool_result(
        &self,
        org_id: &str,
        session_id: &str,
        new: &NewToolResult<'_>,
    ) -> Result<Appended, LedgerError> {
        let mut tx = self.begin().await?;
        let mut locked = self
            .lock_session(&mut tx, org_id, session_id)
            .await?
            .ok_or_else(|| LedgerError::SessionNotFound(session_id.to_owned()))?;
        if let Some(appended) = self.replay(&mut tx, &locked, new.idempotency).await? {
            return Ok(appended);
        }
        let Some(mut message) = self.message_in(&mut tx, session_id, new.message_id).await? else {
            return Err(LedgerError::ToolCall(format!(
                "message_id: session {session_id} has no message {}; send the message_id of the tool.call_requested event",
                new.message_id
            )));
        };
        let history = self.tool_call_history(&mut tx, session_id, new.tool_call_id).await?;
        match history.requested_for.as_deref() {
            None => {
                return Err(LedgerError::ToolCall(format!(
                    "tool_call_id: session {session_id} has no tool.call_requested event for tool call {}",
                    new.tool_call_id
                )));
            }
            Some(requested_for) if requested_for != new.message_id => {
                return Err(LedgerError::ToolCall(format!(
                    "message_id: tool call {} was requested by message {requested_for}, not {}",
                    new.tool_call_id, new.message_id
                )));
            }
            Some(_) => {}
        }
        if let Some(answered_by) = history.answered_by {
            return Err(LedgerError::ToolCall(format!(
                "tool call {} already has a result (event {answered_by}); a tool call takes one result",
                new.tool_call_id
            )));
        }
        let data = json!({"message_id": new.message_id, "tool_call_id": new.tool_call_id, "result": new.result, "is_error": new.is_error});
        let event = locked
            .append(
                &mut tx,
                NewEvent {
                    message_id: Some(new.message_id),
                    event_type: event_type::TOOL_RESULT_SUBMITTED,
                    actor: new.actor,
                    data,
                    tool_call_id: Some(new.tool_call_id),
                },
            )
            .await?;
        if message.status == MessageStatus::WaitingForTool && self.open_tool_calls(&mut tx, &message).await? == 0 {
            locked.set_message_status(&mut tx, &mut message, MessageStatus::Queued, None).await?;
        }
        self.finish_write(&mut tx, &mut locked, new.idempotency, &event).await?;
        tx.commit().await.context("commit the tool result")?;
        Ok(Appended { event, message, session: locked.session, replayed: false })
    }

    /// Records that the agent asked for a tool call in a message (the harness's step): a
    /// `tool.call_requested` event, and the message `waiting_for_tool`.
    pub async fn request_tool_call(
        &self,
        org_id: &str,
        message_id: &str,
        tool_call_id: &str,
        tool_name: &str,
        arguments: &Value,
    ) -> Result<EventRecord, LedgerError> {
        let (mut tx, mut locked, mut message) = self.lock_message(org_id, message_id).await?;
        if self.tool_call_history(&mut tx, &message.session_id, tool_call_id).await?.requested_for.is_some() {
            return Err(LedgerError::ToolCall(format!(
                "tool call {tool_call_id} was already requested in session {}",
                message.session_id
            )));
        }
        let actor = Actor::agent(&locked.session.agent_id);
        let data = json!({"message_id": message_id, "tool_call_id": tool_call_id, "tool_name": tool_name, "arguments": arguments});
        let event = locked
            .append(
                &mut tx,
                NewEvent {
                    message_id: Some(message_id),
                    event_type: event_type::TOOL_CALL_REQUESTED,
                    actor: &actor,
                    data,
                    tool_call_id: Some(tool_call_id),
                },
            )
            .await?;
        if message.status != MessageStatus::WaitingForTool {
            locked.set_message_status(&mut tx, &mut message, MessageStatus::WaitingForTool, None).await?;
        }
        locked.save(&mut tx).await?;
        tx.commit().await.context("commit the tool call")?;
        Ok(event)
    }

    /// Moves a message to `status` (the harness's step; `error` explains a failure), with its
    /// events and the session's new status.
    pub async fn set_message_status(
        &self,
        org_id: &str,
        message_id: &str,
        status: MessageStatus,
        error: Option<&str>,
    ) -> Result<(MessageRecord, SessionRecord), LedgerError> {
        let (mut tx, mut locked, mut message) = self.lock_message(org_id, message_id).await?;
        if let Some(error) = error {
            message.output["error"] = json!(error);
            sqlx::query("UPDATE messages SET output = $1 WHERE id = $2")
                .bind(message.output.to_string())
                .bind(message_id)
                .execute(&mut *tx)
                .await
                .context("record the message's error")?;
        }
        locked.set_message_status(&mut tx, &mut message, status, error).await?;
        locked.save(&mut tx).await?;
        tx.commit().await.context("commit the message status")?;
        Ok((message, locked.session))
    }

    /// A message of the organization.
    pub async fn message(&self, org_id: &str, message_id: &str) -> anyhow::Result<Option<MessageRecord>> {
        sqlx::query(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE org_id = $1 AND id = $2"))
            .bind(org_id)
            .bind(message_id)
            .fetch_optional(self.reader())
            .await
            .context("read message")?
            .map(|row| message_from_row(&row))
            .transpose()
    }

    /// Messages of a session after sequence number `after`, in order.
    pub async fn list_messages(
        &self,
        org_id: &str,
        session_id: &str,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Page<MessageRecord>> {
        let query = SequencedQuery { columns: MESSAGE_COLUMNS, table: "messages", what: "list messages" };
        self.list_in_session(&query, org_id, session_id, after, limit, message_from_row).await
    }

    /// Starts a write to a message's session: the transaction, the locked session, and the
    /// message as the transaction sees it.
    pub(super) async fn lock_message(
        &self,
        org_id: &str,
        message_id: &str,
    ) -> Result<(Tx, LockedSession, MessageRecord), LedgerError> {
        let not_found = || LedgerError::MessageNotFound(message_id.to_owned());
        let session_id = self.message(org_id, message_id).await?.ok_or_else(not_found)?.session_id;
        let mut tx = self.begin().await?;
        let locked = self
            .lock_session(&mut tx, org_id, &session_id)
            .await?
            .ok_or_else(|| LedgerError::SessionNotFound(session_id.clone()))?;
        let message = self.message_in(&mut tx, &session_id, message_id).await?.ok_or_else(not_found)?;
        Ok((tx, locked, message))
    }

    async fn message_in(
        &self,
        tx: &mut Tx,
        session_id: &str,
        message_id: &str,
    ) -> anyhow::Result<Option<MessageRecord>> {
        sqlx::query(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 AND id = $2"))
            .bind(session_id)
            .bind(message_id)
            .fetch_optional(&mut **tx)
            .await
            .context("read message")?
            .map(|row| message_from_row(&row))
            .transpose()
    }

    /// When the write carries an `Idempotency-Key` already used on this session: the first
    /// write's outcome (the same request), or a conflict (another request).
    async fn replay(
        &self,
        tx: &mut Tx,
        locked: &LockedSession,
        idempotency: Option<Idempotency<'_>>,
    ) -> Result<Option<Appended>, LedgerError> {
        let Some(idempotency) = idempotency else { return Ok(None) };
        let Some(row) = sqlx::query(
            "SELECT request_sha256, event_sequence FROM idempotency_keys WHERE session_id = $1 AND key = $2",
        )
        .bind(&locked.session.id)
        .bind(idempotency.key)
        .fetch_optional(&mut **tx)
        .await
        .context("look up the Idempotency-Key")?
        else {
            return Ok(None);
        };
        let request_sha256: String = row.try_get("request_sha256").context("read the request hash")?;
        if request_sha256 != idempotency.request_sha256 {
            return Err(LedgerError::IdempotencyConflict { key: idempotency.key.to_owned() });
        }
        let event =
            self.event_in(tx, &locked.session.id, row.try_get("event_sequence").context("read the event")?).await?;
        let message_id = event.message_id.clone().context("an idempotent write names its message")?;
        let message = self
            .message_in(tx, &locked.session.id, &message_id)
            .await?
            .context("read the message of a repeated write")?;
        // Nothing is written: the transaction rolls back, leaving the session's `updated_at` as
        // the last real write set it.
        let session = self.session(&locked.session.org_id, &locked.session.id).await?.context("read the session")?;
        Ok(Some(Appended { event, message, session, replayed: true }))
    }

    /// Saves the session and, for a write with an `Idempotency-Key`, records the key.
    async fn finish_write(
        &self,
        tx: &mut Tx,
        locked: &mut LockedSession,
        idempotency: Option<Idempotency<'_>>,
        event: &EventRecord,
    ) -> anyhow::Result<()> {
        locked.save(tx).await?;
        if let Some(idempotency) = idempotency {
            sqlx::query(
                "INSERT INTO idempotency_keys (session_id, key, request_sha256, event_sequence, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&locked.session.id)
            .bind(idempotency.key)
            .bind(idempotency.request_sha256)
            .bind(event.sequence_number)
            .bind(locked.now)
            .execute(&mut **tx)
            .await
            .context("record the Idempotency-Key")?;
        }
        Ok(())
    }

    /// What the ledger says of one tool call: the message that requested it, and the event
    /// that answered it.
    async fn tool_call_history(
        &self,
        tx: &mut Tx,
        session_id: &str,
        tool_call_id: &str,
    ) -> anyhow::Result<ToolCallHistory> {
        let rows = sqlx::query("SELECT sequence_number, message_id, type FROM events WHERE session_id = $1 AND tool_call_id = $2 ORDER BY sequence_number")
            .bind(session_id)
            .bind(tool_call_id)
            .fetch_all(&mut **tx)
            .await
            .context("read the tool call's events")?;
        let mut history = ToolCallHistory { requested_for: None, answered_by: None };
        for row in rows {
            let kind: String = row.try_get("type")?;
            match kind.as_str() {
                event_type::TOOL_CALL_REQUESTED => history.requested_for = row.try_get("message_id")?,
                event_type::TOOL_RESULT_SUBMITTED | event_type::TOOL_CALL_COMPLETED | event_type::TOOL_CALL_FAILED => {
                    history.answered_by.get_or_insert(event_id(session_id, row.try_get("sequence_number")?));
                }
                _ => {}
            }
        }
        Ok(history)
    }

    /// How many tool calls of a message were requested and not yet answered.
    pub(super) async fn open_tool_calls(&self, tx: &mut Tx, message: &MessageRecord) -> anyhow::Result<i64> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) FROM events requested WHERE requested.session_id = $1 AND requested.message_id = $2 AND requested.type = $3
             AND NOT EXISTS (SELECT 1 FROM events answer WHERE answer.session_id = $1 AND answer.tool_call_id = requested.tool_call_id
                             AND answer.type IN {TOOL_CALL_ANSWERS})"
        ))
        .bind(&message.session_id)
        .bind(&message.id)
        .bind(event_type::TOOL_CALL_REQUESTED)
        .fetch_one(&mut **tx)
        .await
        .context("count open tool calls")?;
        Ok(row.try_get(0)?)
    }
}

struct ToolCallHistory {
    requested_for: Option<String>,
    answered_by: Option<String>,
}

pub(super) fn message_from_row(row: &AnyRow) -> anyhow::Result<MessageRecord> {
    let parts: String = row.try_get("parts")?;
    let metadata: String = row.try_get("metadata")?;
    let output: String = row.try_get("output")?;
    Ok(MessageRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        session_id: row.try_get("session_id")?,
        sequence_number: row.try_get("sequence_number")?,
        parts: serde_json::from_str(&parts).context("decode message parts")?,
        metadata: serde_json::from_str(&metadata).context("decode message metadata")?,
        status: MessageStatus::parse(&row.try_get::<String, _>("status")?)?,
        attempt: row.try_get("attempt")?,
        output: serde_json::from_str(&output).context("decode message output")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}
