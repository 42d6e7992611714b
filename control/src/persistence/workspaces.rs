//! Workspace archives: a session's `/workspace`, saved by its sandbox as a tar.gz in the blob store
//! under [`workspace_blob_key`]. Only the last archive of each session is kept; it is what
//! restores the workspace in a new sandbox and what `GET /v1/sessions/{id}/workspace.zip` serves.

use std::collections::BTreeMap;

use anyhow::Context;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{NewSession, NewSnapshot, PublishTarget, SnapshotCheck, Store, VersionSource, now_millis};
use crate::ids::{new_id, prefix};

/// Where a session's last workspace archive lives in the blob store.
pub fn workspace_blob_key(session_id: &str) -> String {
    format!("workspaces/{session_id}.tar.gz")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceArchiveRecord {
    pub session_id: String,
    pub org_id: String,
    pub blob_key: String,
    pub size_bytes: i64,
    /// SHA-256 of the archive, hex; `None` for archives recorded before it was kept.
    pub sha256: Option<String>,
    pub created_at: i64,
}

/// What a session has to download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionWorkspace {
    /// The organization has no such session.
    SessionNotFound,
    /// The session exists but its workspace was never archived.
    NotArchived,
    Archived(WorkspaceArchiveRecord),
}

impl Store {
    /// Records that the session's workspace archive was written to [`workspace_blob_key`],
    /// replacing the record of the one before. Fails when the organization has no such session.
    pub async fn record_workspace_archive(
        &self,
        org_id: &str,
        session_id: &str,
        size_bytes: i64,
        sha256: Option<&str>,
    ) -> anyhow::Result<WorkspaceArchiveRecord> {
        let record = WorkspaceArchiveRecord {
            session_id: session_id.to_owned(),
            org_id: org_id.to_owned(),
            blob_key: workspace_blob_key(session_id),
            size_bytes,
            sha256: sha256.map(str::to_owned),
            created_at: now_millis(),
        };
        let result = sqlx::query(
            "INSERT INTO session_workspaces (session_id, org_id, blob_key, size_bytes, sha256, created_at)
             SELECT id, org_id, $3, $4, $5, $6 FROM sessions WHERE id = $1 AND org_id = $2
             ON CONFLICT (session_id) DO UPDATE SET blob_key = excluded.blob_key, size_bytes = excluded.size_bytes,
                 sha256 = excluded.sha256, created_at = excluded.created_at",
        )
        .bind(session_id)
        .bind(org_id)
        .bind(&record.blob_key)
        .bind(record.size_bytes)
        .bind(&record.sha256)
        .bind(record.created_at)
        .execute(self.writer())
        .await
        .with_context(|| format!("record the workspace archive of session {session_id}"))?;
        anyhow::ensure!(result.rows_affected() == 1, "session {session_id} not found in organization {org_id}");
        Ok(record)
    }

    /// The session's last workspace archive, or why there is none.
    pub async fn session_workspace(&self, org_id: &str, session_id: &str) -> anyhow::Result<SessionWorkspace> {
        let row = sqlx::query(
            "SELECT s.id AS session_id, s.org_id AS org_id, w.blob_key AS blob_key, w.size_bytes AS size_bytes,
                    w.sha256 AS sha256, w.created_at AS created_at
             FROM sessions s LEFT JOIN session_workspaces w ON w.session_id = s.id
             WHERE s.id = $1 AND s.org_id = $2",
        )
        .bind(session_id)
        .bind(org_id)
        .fetch_optional(self.reader())
        .await
        .with_context(|| format!("read the workspace archive of session {session_id}"))?;
        match row {
            None => Ok(SessionWorkspace::SessionNotFound),
            Some(row) if row.try_get::<Option<String>, _>("blob_key")?.is_none() => Ok(SessionWorkspace::NotArchived),
            Some(row) => Ok(SessionWorkspace::Archived(archive_from_row(&row)?)),
        }
    }

    /// A session of a placeholder agent (whose manifest is `{}`), for tests that need a session
    /// without deploying a real agent.
    #[doc(hidden)]
    pub async fn create_test_session(&self, org_id: &str) -> anyhow::Result<String> {
        const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let snapshot = self
            .reserve_snapshot(&NewSnapshot {
                org_id,
                format: "tar.gz",
                sha256: EMPTY_SHA256,
                size_bytes: 0,
                metadata: "{}",
                upload_token_hash: EMPTY_SHA256,
                upload_expires_at: 0,
            })
            .await?;
        self.finalize_snapshot(
            &snapshot.id,
            &SnapshotCheck::Ready { manifest: "{}".into(), files: "[]".into(), diagnostics: "[]".into() },
        )
        .await?;
        let source = VersionSource {
            snapshot_id: &snapshot.id,
            archive_sha256: EMPTY_SHA256,
            size_bytes: 0,
            manifest: "{}",
            files: "[]",
        };
        let agent_name = new_id("test-agent");
        let published = self.publish_version(org_id, &agent_name, PublishTarget::ByName(&agent_name), &source).await?;
        let session_id = new_id(prefix::SESSION);
        self.create_session(&NewSession {
            id: &session_id,
            org_id,
            agent_id: &published.agent.id,
            version_id: &published.version.id,
            name: None,
            metadata: &BTreeMap::new(),
            llm_id: None,
            internet_access: false,
            storage_binding_id: None,
            sealed_secrets: None,
            sealed_llm_api_key: None,
        })
        .await
        .context("create a test session")?;
        Ok(session_id)
    }
}

fn archive_from_row(row: &AnyRow) -> anyhow::Result<WorkspaceArchiveRecord> {
    Ok(WorkspaceArchiveRecord {
        session_id: row.try_get("session_id")?,
        org_id: row.try_get("org_id")?,
        blob_key: row.try_get("blob_key")?,
        size_bytes: row.try_get("size_bytes")?,
        sha256: row.try_get("sha256")?,
        created_at: row.try_get("created_at")?,
    })
}
