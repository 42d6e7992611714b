//! Sandboxes: the machines sessions run in, each with its link token (stored hashed) and its
//! provider's handle. A session has at most one live sandbox (`provisioning` or `ready`), which
//! the database enforces; an ended sandbox keeps its row, `terminated`, with the reason, and its
//! token no longer opens a link.
//!
//! A sandbox's provisioning and end are also ledger events (`sandbox.status_changed`), so that a
//! client following a session sees a cold start and its cause.

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::ledger::{Actor, NewEvent};
use super::{Store, now_millis};

/// The ledger event of a sandbox's status change (our addition to Dari's event types).
pub const SANDBOX_STATUS_CHANGED: &str = "sandbox.status_changed";
/// The kernel killed a process of the sandbox for reaching `sandbox.resources.memory_mb`.
pub const SANDBOX_OUT_OF_MEMORY: &str = "sandbox.out_of_memory";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxStatus {
    Provisioning,
    Ready,
    Terminated,
}

impl SandboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxStatus::Provisioning => "provisioning",
            SandboxStatus::Ready => "ready",
            SandboxStatus::Terminated => "terminated",
        }
    }

    fn parse(text: &str) -> anyhow::Result<SandboxStatus> {
        Ok(match text {
            "provisioning" => SandboxStatus::Provisioning,
            "ready" => SandboxStatus::Ready,
            "terminated" => SandboxStatus::Terminated,
            other => anyhow::bail!("unknown sandbox status {other:?} in the database"),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SandboxRecord {
    pub id: String,
    pub org_id: String,
    pub session_id: String,
    pub provider: String,
    pub status: SandboxStatus,
    pub control_url: String,
    pub handle: Value,
    pub created_at: i64,
    pub ready_at: Option<i64>,
    pub last_used_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

#[derive(Debug)]
pub struct NewSandbox<'a> {
    pub id: &'a str,
    pub org_id: &'a str,
    pub session_id: &'a str,
    pub provider: &'a str,
    pub token_hash: &'a str,
    pub control_url: &'a str,
}

const SANDBOX_COLUMNS: &str = "id, org_id, session_id, provider, status, control_url, handle, created_at, ready_at, \
                               last_used_at, ended_at, end_reason";
const LIVE: &str = "('provisioning', 'ready')";

impl Store {
    /// Records a sandbox about to be provisioned. `None` when the session already has a live one
    /// (another worker is provisioning it).
    pub async fn insert_sandbox(&self, new: &NewSandbox<'_>) -> anyhow::Result<Option<SandboxRecord>> {
        let now = now_millis();
        let inserted = sqlx::query(&format!(
            "INSERT INTO sandboxes (id, org_id, session_id, provider, status, token_hash, control_url, handle, created_at, last_used_at)
             VALUES ($1, $2, $3, $4, 'provisioning', $5, $6, 'null', $7, $7)
             ON CONFLICT DO NOTHING RETURNING {SANDBOX_COLUMNS}"
        ))
        .bind(new.id)
        .bind(new.org_id)
        .bind(new.session_id)
        .bind(new.provider)
        .bind(new.token_hash)
        .bind(new.control_url)
        .bind(now)
        .fetch_optional(self.writer())
        .await
        .context("record the sandbox")?;
        inserted.map(|row| sandbox_from_row(&row)).transpose()
    }

    /// Stores the provider's handle once it has started the sandbox.
    pub async fn set_sandbox_handle(&self, sandbox_id: &str, handle: &Value) -> anyhow::Result<()> {
        sqlx::query("UPDATE sandboxes SET handle = $1 WHERE id = $2")
            .bind(handle.to_string())
            .bind(sandbox_id)
            .execute(self.writer())
            .await
            .context("store the sandbox's handle")?;
        Ok(())
    }

    /// Marks a sandbox `ready` (its daemon said hello), with its ledger event; the session's last
    /// sequence number after it.
    pub async fn sandbox_ready(&self, sandbox: &SandboxRecord, detail: Value) -> anyhow::Result<Option<i64>> {
        self.change_sandbox_status(sandbox, SandboxStatus::Ready, None, detail).await
    }

    /// Ends a sandbox: `terminated` with `reason`; its token opens no link from now on. `None`
    /// when it had already ended.
    pub async fn end_sandbox(&self, sandbox: &SandboxRecord, reason: &str) -> anyhow::Result<Option<i64>> {
        self.change_sandbox_status(sandbox, SandboxStatus::Terminated, Some(reason), Value::Null).await
    }

    /// Records that the kernel killed a process of the sandbox for its memory limit; the session's
    /// last sequence number after it, `None` when the session is gone.
    pub async fn sandbox_out_of_memory(&self, sandbox: &SandboxRecord, data: Value) -> anyhow::Result<Option<i64>> {
        let mut tx = self.begin().await?;
        let Some(mut locked) = self.lock_session(&mut tx, &sandbox.org_id, &sandbox.session_id).await? else {
            return Ok(None);
        };
        let actor = Actor::system();
        let event =
            NewEvent { message_id: None, event_type: SANDBOX_OUT_OF_MEMORY, actor: &actor, data, tool_call_id: None };
        locked.append(&mut tx, event).await?;
        locked.save(&mut tx).await?;
        tx.commit().await.context("commit the out-of-memory event")?;
        Ok(Some(locked.session.last_event_sequence))
    }

    async fn change_sandbox_status(
        &self,
        sandbox: &SandboxRecord,
        status: SandboxStatus,
        reason: Option<&str>,
        detail: Value,
    ) -> anyhow::Result<Option<i64>> {
        let mut tx = self.begin().await?;
        let Some(mut locked) = self.lock_session(&mut tx, &sandbox.org_id, &sandbox.session_id).await? else {
            anyhow::bail!("session {} of sandbox {} is gone", sandbox.session_id, sandbox.id);
        };
        let now = locked.now;
        let (ready_at, ended_at) = match status {
            SandboxStatus::Ready => (Some(now), None),
            SandboxStatus::Terminated => (None, Some(now)),
            SandboxStatus::Provisioning => (None, None),
        };
        let previous: Option<String> = sqlx::query(&format!(
            "UPDATE sandboxes SET status = $1, ready_at = COALESCE($2, ready_at), ended_at = $3, end_reason = $4,
                                  last_used_at = $5
             WHERE id = $6 AND status IN {LIVE} RETURNING status"
        ))
        .bind(status.as_str())
        .bind(ready_at)
        .bind(ended_at)
        .bind(reason)
        .bind(now)
        .bind(&sandbox.id)
        .fetch_optional(&mut *tx)
        .await
        .context("update the sandbox's status")?
        .map(|row| row.try_get("status"))
        .transpose()?;
        if previous.is_none() {
            // Already ended: nothing to record.
            return Ok(None);
        }
        let mut data = json!({"sandbox_id": sandbox.id, "status": status.as_str(), "provider": sandbox.provider});
        if let Some(reason) = reason {
            data["reason"] = json!(reason);
        }
        if !detail.is_null() {
            data["detail"] = detail;
        }
        let actor = Actor::system();
        locked
            .append(
                &mut tx,
                NewEvent {
                    message_id: None,
                    event_type: SANDBOX_STATUS_CHANGED,
                    actor: &actor,
                    data,
                    tool_call_id: None,
                },
            )
            .await?;
        locked.save(&mut tx).await?;
        tx.commit().await.context("commit the sandbox's status")?;
        Ok(Some(locked.session.last_event_sequence))
    }

    /// The session's live sandbox, if it has one.
    pub async fn live_sandbox(&self, session_id: &str) -> anyhow::Result<Option<SandboxRecord>> {
        sqlx::query(&format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE session_id = $1 AND status IN {LIVE}"))
            .bind(session_id)
            .fetch_optional(self.reader())
            .await
            .context("read the session's sandbox")?
            .map(|row| sandbox_from_row(&row))
            .transpose()
    }

    /// The live sandbox whose link token hashes to `token_hash`, if it is `sandbox_id`.
    pub async fn sandbox_by_token(&self, sandbox_id: &str, token_hash: &str) -> anyhow::Result<Option<SandboxRecord>> {
        sqlx::query(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = $1 AND token_hash = $2 AND status IN {LIVE}"
        ))
        .bind(sandbox_id)
        .bind(token_hash)
        .fetch_optional(self.reader())
        .await
        .context("authenticate the sandbox")?
        .map(|row| sandbox_from_row(&row))
        .transpose()
    }

    /// Live sandboxes given `control_url`: the ones this replica provisioned, to adopt after a
    /// restart.
    pub async fn live_sandboxes(&self, control_url: &str) -> anyhow::Result<Vec<SandboxRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE control_url = $1 AND status IN {LIVE} ORDER BY created_at"
        ))
        .bind(control_url)
        .fetch_all(self.reader())
        .await
        .context("list live sandboxes")?;
        rows.iter().map(sandbox_from_row).collect()
    }

    /// Ready sandboxes of `control_url` unused since `before` whose session has no message queued
    /// or running: the idle ones.
    pub async fn idle_sandboxes(&self, control_url: &str, before: i64) -> anyhow::Result<Vec<SandboxRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes s WHERE s.control_url = $1 AND s.status = 'ready' AND s.last_used_at < $2
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.session_id AND m.status IN ('queued', 'running'))"
        ))
        .bind(control_url)
        .bind(before)
        .fetch_all(self.reader())
        .await
        .context("list idle sandboxes")?;
        rows.iter().map(sandbox_from_row).collect()
    }

    /// Every sandbox a session has had, oldest first.
    pub async fn session_sandboxes(&self, session_id: &str) -> anyhow::Result<Vec<SandboxRecord>> {
        let rows =
            sqlx::query(&format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE session_id = $1 ORDER BY created_at"))
                .bind(session_id)
                .fetch_all(self.reader())
                .await
                .context("list the session's sandboxes")?;
        rows.iter().map(sandbox_from_row).collect()
    }
}

fn sandbox_from_row(row: &AnyRow) -> anyhow::Result<SandboxRecord> {
    let handle: String = row.try_get("handle")?;
    Ok(SandboxRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        session_id: row.try_get("session_id")?,
        provider: row.try_get("provider")?,
        status: SandboxStatus::parse(&row.try_get::<String, _>("status")?)?,
        control_url: row.try_get("control_url")?,
        handle: serde_json::from_str(&handle).context("decode the sandbox's handle")?,
        created_at: row.try_get("created_at")?,
        ready_at: row.try_get("ready_at")?,
        last_used_at: row.try_get("last_used_at")?,
        ended_at: row.try_get("ended_at")?,
        end_reason: row.try_get("end_reason")?,
    })
}
