//! The work queue: messages waiting for a worker, claimed with a lease, and the outcome of each
//! turn committed in one transaction with its events.
//!
//! A message is claimable when it is `queued`, or `running` under a lease that expired (its worker
//! died), and no earlier message of its session is still pending: a session's messages run one
//! at a time, in order. A claim locks the session's row, sets the lease and moves a `queued`
//! message to `running`; the worker renews the lease while it works. Every write of the turn's
//! outcome checks that the lease is still this worker's, so a worker that lost its lease (paused
//! past it, then woke up) records nothing.

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::Row;

use super::ledger::{Actor, LedgerError, NewEvent, event_type};
use super::messages::{MESSAGE_COLUMNS, MessageRecord, message_from_row};
use super::{MessageStatus, SessionRecord, SessionStatus, Store, Tx, now_millis};

/// A message a worker holds, with its session as the claim saw it.
#[derive(Clone, Debug)]
pub struct ClaimedMessage {
    pub message: MessageRecord,
    pub session: SessionRecord,
    /// The custom runtime's state before this turn.
    pub runtime_state: Option<Value>,
    /// True when the message was `running` under another worker's expired lease.
    pub taken_over: bool,
}

/// What a custom runtime's answer does to the session's state.
#[derive(Clone, Debug, PartialEq)]
pub enum StateChange {
    /// The answer had no `state`: the previous one stays.
    Keep,
    /// `"state": null`.
    Clear,
    Set(Value),
}

/// A turn's successful outcome.
#[derive(Clone, Debug)]
pub struct TurnOutcome {
    /// The assistant's text; `None` completes the turn without text.
    pub text: Option<String>,
    pub state: StateChange,
    /// Events the runtime reported: `(type, data)`, the type already namespaced (`runtime.*`).
    pub events: Vec<(String, Value)>,
    /// The agent ended the session after this turn.
    pub complete_session: bool,
    /// The tokens the turn used (`output.usage`), when the harness counts them.
    pub usage: Option<Value>,
}

/// Why a turn failed: `output.error` of the message.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnError {
    /// Stable, machine-readable: `runtime_http_error`, `runtime_timeout`, ….
    pub kind: String,
    pub message: String,
    pub details: Value,
}

impl TurnError {
    pub fn new(kind: &str, message: impl Into<String>, details: Value) -> TurnError {
        TurnError { kind: kind.to_owned(), message: message.into(), details }
    }

    pub fn to_json(&self) -> Value {
        json!({"type": self.kind, "message": self.message, "details": self.details})
    }
}

/// A committed turn: the message and session after it.
#[derive(Debug)]
pub struct CommittedTurn {
    pub message: MessageRecord,
    pub session: SessionRecord,
}

impl Store {
    /// Claims up to `limit` claimable messages for `owner`, oldest first, each under a lease that
    /// lasts `lease_millis`.
    pub async fn claim_messages(
        &self,
        owner: &str,
        lease_millis: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<ClaimedMessage>> {
        let now = now_millis();
        let candidates: Vec<(String, String)> = sqlx::query(
            "SELECT m.id, m.org_id FROM messages m
             WHERE (m.status = 'queued' OR (m.status = 'running' AND m.lease_expires_at < $1)
                    OR (m.status = 'waiting_for_tool' AND m.wait_until < $1))
               AND (m.lease_expires_at IS NULL OR m.lease_expires_at < $1)
               AND NOT EXISTS (SELECT 1 FROM messages earlier WHERE earlier.session_id = m.session_id
                               AND earlier.sequence_number < m.sequence_number
                               AND earlier.status IN ('queued', 'running', 'waiting_for_tool'))
             ORDER BY m.created_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.reader())
        .await
        .context("find claimable messages")?
        .iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("org_id")?)))
        .collect::<anyhow::Result<_>>()?;
        let mut claimed = Vec::with_capacity(candidates.len());
        for (message_id, org_id) in candidates {
            if let Some(message) = self.claim_message(owner, &org_id, &message_id, lease_millis).await? {
                claimed.push(message);
            }
        }
        Ok(claimed)
    }

    /// Claims one message if it is still claimable (another worker may have been faster).
    async fn claim_message(
        &self,
        owner: &str,
        org_id: &str,
        message_id: &str,
        lease_millis: i64,
    ) -> anyhow::Result<Option<ClaimedMessage>> {
        let (mut tx, mut locked, mut message) = match self.lock_message(org_id, message_id).await {
            Ok(locked) => locked,
            Err(LedgerError::Database(error)) => return Err(error),
            Err(_) => return Ok(None),
        };
        let now = locked.now;
        let row = sqlx::query(
            "SELECT lease_expires_at, wait_until, (SELECT COUNT(*) FROM messages earlier WHERE earlier.session_id = $1
                     AND earlier.sequence_number < $2 AND earlier.status IN ('queued', 'running', 'waiting_for_tool')) AS earlier
             FROM messages WHERE id = $3",
        )
        .bind(&message.session_id)
        .bind(message.sequence_number)
        .bind(message_id)
        .fetch_one(&mut *tx)
        .await
        .context("check the message's lease")?;
        let lease_expires_at: Option<i64> = row.try_get("lease_expires_at")?;
        let earlier: i64 = row.try_get("earlier")?;
        let wait_until: Option<i64> = row.try_get("wait_until")?;
        let lease_free = lease_expires_at.is_none_or(|expires| expires < now);
        let wait_over = wait_until.is_some_and(|until| until < now);
        let claimable = match message.status {
            MessageStatus::Queued | MessageStatus::Running => true,
            MessageStatus::WaitingForTool => wait_over,
            _ => false,
        };
        if !lease_free || !claimable || earlier > 0 {
            return Ok(None);
        }
        sqlx::query("UPDATE messages SET lease_owner = $1, lease_expires_at = $2 WHERE id = $3")
            .bind(owner)
            .bind(now + lease_millis)
            .bind(message_id)
            .execute(&mut *tx)
            .await
            .context("lease the message")?;
        let taken_over = message.status == MessageStatus::Running;
        if message.status != MessageStatus::Running {
            locked
                .set_message_status(&mut tx, &mut message, MessageStatus::Running, None)
                .await
                .map_err(anyhow::Error::from)?;
        }
        locked.save(&mut tx).await?;
        let runtime_state = runtime_state_in(&mut tx, &message.session_id).await?;
        tx.commit().await.context("commit the claim")?;
        Ok(Some(ClaimedMessage { message, session: locked.session, runtime_state, taken_over }))
    }

    /// Extends `owner`'s lease on a message. False when the lease is no longer `owner`'s.
    pub async fn renew_lease(&self, owner: &str, message_id: &str, lease_millis: i64) -> anyhow::Result<bool> {
        let result = sqlx::query(
            "UPDATE messages SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'running'",
        )
        .bind(now_millis() + lease_millis)
        .bind(message_id)
        .bind(owner)
        .execute(self.writer())
        .await
        .context("renew the lease")?;
        Ok(result.rows_affected() == 1)
    }

    /// Lets go of a message without an outcome (this worker is shutting down): another worker may
    /// claim it at once.
    pub async fn release_lease(&self, owner: &str, message_id: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE messages SET lease_expires_at = 0 WHERE id = $1 AND lease_owner = $2")
            .bind(message_id)
            .bind(owner)
            .execute(self.writer())
            .await
            .context("release the lease")?;
        Ok(())
    }

    /// Records a successful turn: the runtime's events, `assistant.message_completed`, the
    /// message `completed` with its output, the new runtime state, and (when asked) the session
    /// `completed`, in one transaction.
    pub async fn complete_turn(
        &self,
        owner: &str,
        org_id: &str,
        message_id: &str,
        outcome: &TurnOutcome,
    ) -> Result<CommittedTurn, LedgerError> {
        let (mut tx, mut locked, mut message) = self.lock_message(org_id, message_id).await?;
        check_lease(&mut tx, owner, &message).await?;
        let agent = Actor::agent(&locked.session.agent_id);
        for (kind, data) in &outcome.events {
            locked
                .append(
                    &mut tx,
                    NewEvent {
                        message_id: Some(message_id),
                        event_type: kind,
                        actor: &agent,
                        data: data.clone(),
                        tool_call_id: None,
                    },
                )
                .await?;
        }
        let content: Vec<Value> =
            outcome.text.iter().map(|text| json!({"type": "text", "text": text})).collect::<Vec<_>>();
        let mut data = json!({"message_id": message_id, "content": content.clone()});
        if let Some(usage) = &outcome.usage {
            data["usage"] = usage.clone();
        }
        locked
            .append(
                &mut tx,
                NewEvent {
                    message_id: Some(message_id),
                    event_type: event_type::ASSISTANT_MESSAGE_COMPLETED,
                    actor: &agent,
                    data,
                    tool_call_id: None,
                },
            )
            .await?;
        // A harness that records its steps (pi) has written the parts already.
        let recorded = message.output.get("parts").and_then(Value::as_array).is_some_and(|parts| !parts.is_empty());
        if !recorded {
            message.output["parts"] = Value::Array(content);
        }
        message.output["error"] = Value::Null;
        write_output(&mut tx, &message).await?;
        match &outcome.state {
            StateChange::Keep => {}
            StateChange::Clear => write_runtime_state(&mut tx, &message.session_id, None).await?,
            StateChange::Set(state) => write_runtime_state(&mut tx, &message.session_id, Some(state)).await?,
        }
        if outcome.complete_session {
            let previous = locked.session.status;
            locked.session.status = SessionStatus::Completed;
            let data = json!({"status": "completed", "previous_status": previous.as_str()});
            locked
                .append(
                    &mut tx,
                    NewEvent {
                        message_id: Some(message_id),
                        event_type: event_type::SESSION_STATUS_CHANGED,
                        actor: &agent,
                        data,
                        tool_call_id: None,
                    },
                )
                .await?;
        }
        locked.set_message_status(&mut tx, &mut message, MessageStatus::Completed, None).await?;
        locked.save(&mut tx).await?;
        tx.commit().await.context("commit the turn")?;
        Ok(CommittedTurn { message, session: locked.session })
    }

    /// Records a failed turn: `output.error`, and the message `failed`.
    pub async fn fail_turn(
        &self,
        owner: &str,
        org_id: &str,
        message_id: &str,
        error: &TurnError,
    ) -> Result<CommittedTurn, LedgerError> {
        let (mut tx, mut locked, mut message) = self.lock_message(org_id, message_id).await?;
        check_lease(&mut tx, owner, &message).await?;
        message.output["error"] = error.to_json();
        write_output(&mut tx, &message).await?;
        locked.set_message_status(&mut tx, &mut message, MessageStatus::Failed, Some(&error.message)).await?;
        locked.save(&mut tx).await?;
        tx.commit().await.context("commit the failed turn")?;
        Ok(CommittedTurn { message, session: locked.session })
    }

    /// Starts the message's next attempt after a retryable failure (its sandbox was lost).
    pub async fn next_attempt(&self, owner: &str, org_id: &str, message_id: &str) -> Result<i64, LedgerError> {
        let (mut tx, _locked, message) = self.lock_message(org_id, message_id).await?;
        check_lease(&mut tx, owner, &message).await?;
        let attempt = message.attempt + 1;
        sqlx::query("UPDATE messages SET attempt = $1 WHERE id = $2")
            .bind(attempt)
            .bind(message_id)
            .execute(&mut *tx)
            .await
            .context("count the attempt")?;
        tx.commit().await.context("commit the attempt")?;
        Ok(attempt)
    }

    /// The custom runtime's state of a session.
    pub async fn runtime_state(&self, session_id: &str) -> anyhow::Result<Option<Value>> {
        let row = sqlx::query("SELECT runtime_state FROM sessions WHERE id = $1")
            .bind(session_id)
            .fetch_one(self.reader())
            .await
            .context("read the runtime state")?;
        decode_state(row.try_get("runtime_state")?)
    }

    /// The ids of messages that are pending in a session (for tests and the idle check).
    pub async fn pending_messages(&self, session_id: &str) -> anyhow::Result<Vec<MessageRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 AND status IN ('queued', 'running', 'waiting_for_tool')
             ORDER BY sequence_number"
        ))
        .bind(session_id)
        .fetch_all(self.reader())
        .await
        .context("read pending messages")?;
        rows.iter().map(message_from_row).collect()
    }
}

/// Fails unless `owner` holds the running message's lease.
pub(super) async fn check_lease(tx: &mut Tx, owner: &str, message: &MessageRecord) -> Result<(), LedgerError> {
    let row = sqlx::query("SELECT lease_owner FROM messages WHERE id = $1")
        .bind(&message.id)
        .fetch_one(&mut **tx)
        .await
        .context("read the lease")?;
    let lease_owner: Option<String> = row.try_get("lease_owner").context("read the lease")?;
    if message.status != MessageStatus::Running || lease_owner.as_deref() != Some(owner) {
        return Err(LedgerError::LeaseLost(message.id.clone()));
    }
    Ok(())
}

/// Records the turn's output and ends its lease; the session's sandbox was used until now, which
/// is where its idle timeout starts.
async fn write_output(tx: &mut Tx, message: &MessageRecord) -> anyhow::Result<()> {
    sqlx::query("UPDATE messages SET output = $1, lease_owner = NULL, lease_expires_at = NULL WHERE id = $2")
        .bind(message.output.to_string())
        .bind(&message.id)
        .execute(&mut **tx)
        .await
        .context("record the message's output")?;
    sqlx::query("UPDATE sandboxes SET last_used_at = $1 WHERE session_id = $2 AND status = 'ready'")
        .bind(now_millis())
        .bind(&message.session_id)
        .execute(&mut **tx)
        .await
        .context("note the sandbox's use")?;
    Ok(())
}

async fn write_runtime_state(tx: &mut Tx, session_id: &str, state: Option<&Value>) -> anyhow::Result<()> {
    sqlx::query("UPDATE sessions SET runtime_state = $1 WHERE id = $2")
        .bind(state.map(Value::to_string))
        .bind(session_id)
        .execute(&mut **tx)
        .await
        .context("store the runtime state")?;
    Ok(())
}

async fn runtime_state_in(tx: &mut Tx, session_id: &str) -> anyhow::Result<Option<Value>> {
    let row = sqlx::query("SELECT runtime_state FROM sessions WHERE id = $1")
        .bind(session_id)
        .fetch_one(&mut **tx)
        .await
        .context("read the runtime state")?;
    decode_state(row.try_get("runtime_state")?)
}

fn decode_state(text: Option<String>) -> anyhow::Result<Option<Value>> {
    text.map(|text| serde_json::from_str(&text).context("decode the runtime state")).transpose()
}
