//! Source snapshots: an archive reserved, uploaded, then finalized (checked and its manifest
//! validated) before a version may be published from it. The bytes live in the blob store under
//! [`snapshot_blob_key`].

use anyhow::Context;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_millis};
use crate::ids::{new_id, prefix};

/// Where a snapshot's archive lives in the blob store.
pub fn snapshot_blob_key(snapshot_id: &str) -> String {
    format!("snapshots/{snapshot_id}.tar.gz")
}

/// A snapshot's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// Reserved; waiting for its archive.
    Reserved,
    /// The archive arrived; not yet checked.
    Uploaded,
    /// Checked and valid: versions may be published from it.
    Ready,
    /// Checked and refused; `failure_reason` says why.
    Failed,
}

impl SnapshotStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotStatus::Reserved => "reserved",
            SnapshotStatus::Uploaded => "uploaded",
            SnapshotStatus::Ready => "ready",
            SnapshotStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> anyhow::Result<SnapshotStatus> {
        Ok(match text {
            "reserved" => SnapshotStatus::Reserved,
            "uploaded" => SnapshotStatus::Uploaded,
            "ready" => SnapshotStatus::Ready,
            "failed" => SnapshotStatus::Failed,
            other => anyhow::bail!("unknown snapshot status {other:?} in the database"),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub id: String,
    pub org_id: String,
    pub format: String,
    pub sha256: String,
    pub size_bytes: i64,
    /// JSON object.
    pub metadata: String,
    pub status: SnapshotStatus,
    pub failure_reason: Option<String>,
    pub upload_token_hash: String,
    pub upload_expires_at: i64,
    /// The validated manifest (JSON), once ready.
    pub manifest: Option<String>,
    /// The bundle's files (JSON array), once ready.
    pub files: Option<String>,
    /// The validation's diagnostics (JSON array), once finalized.
    pub diagnostics: Option<String>,
    pub created_at: i64,
    pub finalized_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

/// What a client declares when it reserves a snapshot.
#[derive(Debug)]
pub struct NewSnapshot<'a> {
    pub org_id: &'a str,
    pub format: &'a str,
    pub sha256: &'a str,
    pub size_bytes: i64,
    pub metadata: &'a str,
    pub upload_token_hash: &'a str,
    pub upload_expires_at: i64,
}

/// The outcome of checking an uploaded archive.
#[derive(Debug)]
pub enum SnapshotCheck {
    Ready { manifest: String, files: String, diagnostics: String },
    Failed { reason: String, diagnostics: String },
}

const COLUMNS: &str = "id, org_id, format, sha256, size_bytes, metadata, status, failure_reason, upload_token_hash, \
                       upload_expires_at, manifest, files, diagnostics, created_at, finalized_at, deleted_at";

impl Store {
    pub async fn reserve_snapshot(&self, new: &NewSnapshot<'_>) -> anyhow::Result<SnapshotRecord> {
        let id = new_id(prefix::SOURCE_SNAPSHOT);
        sqlx::query(
            "INSERT INTO source_snapshots (id, org_id, format, sha256, size_bytes, metadata, status, upload_token_hash, upload_expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(new.org_id)
        .bind(new.format)
        .bind(new.sha256)
        .bind(new.size_bytes)
        .bind(new.metadata)
        .bind(SnapshotStatus::Reserved.as_str())
        .bind(new.upload_token_hash)
        .bind(new.upload_expires_at)
        .bind(now_millis())
        .execute(self.writer())
        .await
        .context("reserve source snapshot")?;
        self.snapshot_by_id(&id).await?.context("read the reserved snapshot")
    }

    /// A snapshot of the organization (deleted ones included; callers decide).
    pub async fn snapshot(&self, org_id: &str, snapshot_id: &str) -> anyhow::Result<Option<SnapshotRecord>> {
        Ok(self.snapshot_by_id(snapshot_id).await?.filter(|snapshot| snapshot.org_id == org_id))
    }

    /// A snapshot by id alone, for the upload URL, which carries its own token instead of an API
    /// key.
    pub async fn snapshot_by_id(&self, snapshot_id: &str) -> anyhow::Result<Option<SnapshotRecord>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM source_snapshots WHERE id = $1"))
            .bind(snapshot_id)
            .fetch_optional(self.reader())
            .await
            .context("read source snapshot")?
            .map(|row| snapshot_from_row(&row))
            .transpose()
    }

    /// Records that the archive arrived (a reserved or uploaded snapshot only: a finalized one is
    /// immutable). Returns false when the snapshot was not in a state to take it.
    pub async fn mark_snapshot_uploaded(&self, snapshot_id: &str) -> anyhow::Result<bool> {
        let result = sqlx::query(
            "UPDATE source_snapshots SET status = $1 WHERE id = $2 AND status IN ('reserved', 'uploaded') AND deleted_at IS NULL",
        )
        .bind(SnapshotStatus::Uploaded.as_str())
        .bind(snapshot_id)
        .execute(self.writer())
        .await
        .context("mark source snapshot uploaded")?;
        Ok(result.rows_affected() == 1)
    }

    /// Records the outcome of checking an uploaded snapshot.
    pub async fn finalize_snapshot(&self, snapshot_id: &str, check: &SnapshotCheck) -> anyhow::Result<()> {
        let (status, reason, manifest, files, diagnostics) = match check {
            SnapshotCheck::Ready { manifest, files, diagnostics } => {
                (SnapshotStatus::Ready, None, Some(manifest), Some(files), diagnostics)
            }
            SnapshotCheck::Failed { reason, diagnostics } => {
                (SnapshotStatus::Failed, Some(reason), None, None, diagnostics)
            }
        };
        sqlx::query(
            "UPDATE source_snapshots SET status = $1, failure_reason = $2, manifest = $3, files = $4, diagnostics = $5, finalized_at = $6
             WHERE id = $7",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(manifest)
        .bind(files)
        .bind(diagnostics)
        .bind(now_millis())
        .bind(snapshot_id)
        .execute(self.writer())
        .await
        .context("finalize source snapshot")?;
        Ok(())
    }

    /// Marks a snapshot deleted. Returns false when a version was published from it (its archive
    /// is the version's bundle) or it does not exist.
    pub async fn delete_snapshot(&self, org_id: &str, snapshot_id: &str) -> anyhow::Result<bool> {
        let result = sqlx::query(
            "UPDATE source_snapshots SET deleted_at = $1 WHERE org_id = $2 AND id = $3 AND deleted_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM agent_versions WHERE source_snapshot_id = $3)",
        )
        .bind(now_millis())
        .bind(org_id)
        .bind(snapshot_id)
        .execute(self.writer())
        .await
        .context("delete source snapshot")?;
        Ok(result.rows_affected() == 1)
    }
}

fn snapshot_from_row(row: &AnyRow) -> anyhow::Result<SnapshotRecord> {
    Ok(SnapshotRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        format: row.try_get("format")?,
        sha256: row.try_get("sha256")?,
        size_bytes: row.try_get("size_bytes")?,
        metadata: row.try_get("metadata")?,
        status: SnapshotStatus::parse(&row.try_get::<String, _>("status")?)?,
        failure_reason: row.try_get("failure_reason")?,
        upload_token_hash: row.try_get("upload_token_hash")?,
        upload_expires_at: row.try_get("upload_expires_at")?,
        manifest: row.try_get("manifest")?,
        files: row.try_get("files")?,
        diagnostics: row.try_get("diagnostics")?,
        created_at: row.try_get("created_at")?,
        finalized_at: row.try_get("finalized_at")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}
