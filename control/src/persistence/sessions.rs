//! Sessions: a conversation with one version of an agent. A session's row carries its derived
//! state (status, last message) and the counters of its ledger; its metadata is copied into
//! `session_metadata`, one row per entry, so that filters use an index.

use std::collections::BTreeMap;

use anyhow::Context;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, Tx, now_millis};

/// A session's status (see docs/sessions.md for the state machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    /// No message is pending: created, or every message reached `completed` or `failed`.
    Idle,
    /// A message is `queued`, `running` or `waiting_for_tool`.
    Running,
    /// The agent ended the session (a custom runtime's `complete_session` action): it takes no
    /// more messages.
    Completed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Idle => "idle",
            SessionStatus::Running => "running",
            SessionStatus::Completed => "completed",
        }
    }

    fn parse(text: &str) -> anyhow::Result<SessionStatus> {
        Ok(match text {
            "idle" => SessionStatus::Idle,
            "running" => SessionStatus::Running,
            "completed" => SessionStatus::Completed,
            other => anyhow::bail!("unknown session status {other:?} in the database"),
        })
    }
}

/// A message's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageStatus {
    Queued,
    Running,
    WaitingForTool,
    Completed,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Running => "running",
            MessageStatus::WaitingForTool => "waiting_for_tool",
            MessageStatus::Completed => "completed",
            MessageStatus::Failed => "failed",
        }
    }

    /// True while the message still needs work: it keeps its session `running`.
    pub fn is_pending(self) -> bool {
        matches!(self, MessageStatus::Queued | MessageStatus::Running | MessageStatus::WaitingForTool)
    }

    pub(super) fn parse(text: &str) -> anyhow::Result<MessageStatus> {
        Ok(match text {
            "queued" => MessageStatus::Queued,
            "running" => MessageStatus::Running,
            "waiting_for_tool" => MessageStatus::WaitingForTool,
            "completed" => MessageStatus::Completed,
            "failed" => MessageStatus::Failed,
            other => anyhow::bail!("unknown message status {other:?} in the database"),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub org_id: String,
    pub agent_id: String,
    pub version_id: String,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub llm_id: Option<String>,
    pub internet_access: bool,
    pub storage_binding_id: Option<String>,
    pub status: SessionStatus,
    pub last_message_id: Option<String>,
    pub last_message_status: Option<MessageStatus>,
    pub last_event_sequence: i64,
    pub last_message_sequence: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A session to create. The caller makes the id, because sealed secrets are bound to it.
#[derive(Debug)]
pub struct NewSession<'a> {
    pub id: &'a str,
    pub org_id: &'a str,
    pub agent_id: &'a str,
    pub version_id: &'a str,
    pub name: Option<&'a str>,
    pub metadata: &'a BTreeMap<String, String>,
    pub llm_id: Option<&'a str>,
    pub internet_access: bool,
    pub storage_binding_id: Option<&'a str>,
    pub sealed_secrets: Option<&'a str>,
    pub sealed_llm_api_key: Option<&'a str>,
}

/// Which sessions a list returns: all of the organization's, narrowed by agent and by metadata
/// entries (all must match).
#[derive(Debug, Default)]
pub struct SessionFilter<'a> {
    pub agent_id: Option<&'a str>,
    pub metadata: Vec<(&'a str, &'a str)>,
}

/// One page of a list, and whether more follow.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    /// Splits `limit + 1` fetched rows into a page of `limit` and whether there was more.
    pub(super) fn from_rows(mut items: Vec<T>, limit: i64) -> Page<T> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let has_more = items.len() > limit;
        items.truncate(limit);
        Page { items, has_more }
    }
}

/// A table whose rows are numbered within a session (`sequence_number`), for
/// [`Store::list_in_session`].
pub(super) struct SequencedQuery {
    pub columns: &'static str,
    pub table: &'static str,
    /// What the query does, for errors.
    pub what: &'static str,
}

pub(super) const SESSION_COLUMNS: &str = "id, org_id, agent_id, version_id, name, metadata, llm_id, internet_access, \
     storage_binding_id, status, last_message_id, last_message_status, last_event_sequence, last_message_sequence, \
     created_at, updated_at";

impl Store {
    /// Creates a session, `idle`, with no message.
    pub async fn create_session(&self, new: &NewSession<'_>) -> anyhow::Result<SessionRecord> {
        let mut tx = self.begin().await?;
        let session = self.insert_session(&mut tx, new).await?;
        tx.commit().await.context("commit the session")?;
        Ok(session)
    }

    pub(super) async fn insert_session(&self, tx: &mut Tx, new: &NewSession<'_>) -> anyhow::Result<SessionRecord> {
        let now = now_millis();
        let session = SessionRecord {
            id: new.id.to_owned(),
            org_id: new.org_id.to_owned(),
            agent_id: new.agent_id.to_owned(),
            version_id: new.version_id.to_owned(),
            name: new.name.map(str::to_owned),
            metadata: new.metadata.clone(),
            llm_id: new.llm_id.map(str::to_owned),
            internet_access: new.internet_access,
            storage_binding_id: new.storage_binding_id.map(str::to_owned),
            status: SessionStatus::Idle,
            last_message_id: None,
            last_message_status: None,
            last_event_sequence: 0,
            last_message_sequence: 0,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO sessions (id, org_id, agent_id, version_id, name, metadata, llm_id, internet_access, storage_binding_id,
                                   sealed_secrets, sealed_llm_api_key, status, last_event_sequence, last_message_sequence, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, 0, $13, $13)",
        )
        .bind(&session.id)
        .bind(&session.org_id)
        .bind(&session.agent_id)
        .bind(&session.version_id)
        .bind(&session.name)
        .bind(serde_json::to_string(&session.metadata).context("encode session metadata")?)
        .bind(&session.llm_id)
        .bind(i64::from(session.internet_access))
        .bind(&session.storage_binding_id)
        .bind(new.sealed_secrets)
        .bind(new.sealed_llm_api_key)
        .bind(session.status.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await
        .context("insert session")?;
        for (key, value) in &session.metadata {
            sqlx::query("INSERT INTO session_metadata (session_id, org_id, key, value) VALUES ($1, $2, $3, $4)")
                .bind(&session.id)
                .bind(&session.org_id)
                .bind(key)
                .bind(value)
                .execute(&mut **tx)
                .await
                .context("insert session metadata")?;
        }
        Ok(session)
    }

    /// A session of the organization.
    pub async fn session(&self, org_id: &str, session_id: &str) -> anyhow::Result<Option<SessionRecord>> {
        sqlx::query(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE org_id = $1 AND id = $2"))
            .bind(org_id)
            .bind(session_id)
            .fetch_optional(self.reader())
            .await
            .context("read session")?
            .map(|row| session_from_row(&row))
            .transpose()
    }

    /// The organization's sessions that pass `filter`, newest first, `limit` of them after the
    /// session `after` (an id from an earlier page).
    pub async fn list_sessions(
        &self,
        org_id: &str,
        filter: &SessionFilter<'_>,
        after: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Page<SessionRecord>> {
        // The query grows with the filter, but its text is the same on both engines.
        let mut conditions = vec!["org_id = $1".to_owned()];
        let mut parameters: Vec<&str> = vec![org_id];
        if let Some(agent_id) = filter.agent_id {
            parameters.push(agent_id);
            conditions.push(format!("agent_id = ${}", parameters.len()));
        }
        if let Some(after) = after {
            parameters.push(after);
            conditions.push(format!("id < ${}", parameters.len()));
        }
        for (key, value) in &filter.metadata {
            parameters.push(key);
            parameters.push(value);
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM session_metadata m WHERE m.session_id = sessions.id AND m.org_id = $1 AND m.key = ${} AND m.value = ${})",
                parameters.len() - 1,
                parameters.len()
            ));
        }
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE {} ORDER BY id DESC LIMIT {}",
            conditions.join(" AND "),
            limit + 1
        );
        let mut query = sqlx::query(&sql);
        for parameter in parameters {
            query = query.bind(parameter);
        }
        let rows = query.fetch_all(self.reader()).await.context("list sessions")?;
        let sessions = rows.iter().map(session_from_row).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Page::from_rows(sessions, limit))
    }

    /// Rows of a session's sequenced table after sequence number `after`, in order.
    pub(super) async fn list_in_session<T>(
        &self,
        query: &SequencedQuery,
        org_id: &str,
        session_id: &str,
        after: i64,
        limit: i64,
        from_row: fn(&AnyRow) -> anyhow::Result<T>,
    ) -> anyhow::Result<Page<T>> {
        let SequencedQuery { columns, table, what } = query;
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM {table} WHERE org_id = $1 AND session_id = $2 AND sequence_number > $3
             ORDER BY sequence_number LIMIT $4"
        ))
        .bind(org_id)
        .bind(session_id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(self.reader())
        .await
        .context(*what)?;
        let items = rows.iter().map(from_row).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit))
    }

    /// The sealed secrets and LLM key of a session, for the code that starts its sandbox and
    /// calls its model.
    pub async fn sealed_session_secrets(
        &self,
        org_id: &str,
        session_id: &str,
    ) -> anyhow::Result<Option<(Option<String>, Option<String>)>> {
        let row = sqlx::query("SELECT sealed_secrets, sealed_llm_api_key FROM sessions WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(session_id)
            .fetch_optional(self.reader())
            .await
            .context("read session secrets")?;
        row.map(|row| Ok((row.try_get("sealed_secrets")?, row.try_get("sealed_llm_api_key")?))).transpose()
    }
}

pub(super) fn session_from_row(row: &AnyRow) -> anyhow::Result<SessionRecord> {
    let metadata: String = row.try_get("metadata")?;
    let last_message_status: Option<String> = row.try_get("last_message_status")?;
    Ok(SessionRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        agent_id: row.try_get("agent_id")?,
        version_id: row.try_get("version_id")?,
        name: row.try_get("name")?,
        metadata: serde_json::from_str(&metadata).context("decode session metadata")?,
        llm_id: row.try_get("llm_id")?,
        internet_access: row.try_get::<i64, _>("internet_access")? != 0,
        storage_binding_id: row.try_get("storage_binding_id")?,
        status: SessionStatus::parse(&row.try_get::<String, _>("status")?)?,
        last_message_id: row.try_get("last_message_id")?,
        last_message_status: last_message_status.as_deref().map(MessageStatus::parse).transpose()?,
        last_event_sequence: row.try_get("last_event_sequence")?,
        last_message_sequence: row.try_get("last_message_sequence")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
