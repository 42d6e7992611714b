//! Uploaded files' metadata; the bytes live in the blob store. Content blocks of messages name
//! files by id, and a message may only name its own organization's files.

use anyhow::Context;

use super::{Store, now_millis};

/// A file to record.
#[derive(Debug)]
pub struct NewFile<'a> {
    pub id: &'a str,
    pub org_id: &'a str,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub size_bytes: i64,
    pub sha256: &'a str,
}

impl Store {
    /// Records an uploaded file's metadata.
    pub async fn record_file(&self, file: &NewFile<'_>) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO files (id, org_id, filename, content_type, size_bytes, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(file.id)
        .bind(file.org_id)
        .bind(file.filename)
        .bind(file.content_type)
        .bind(file.size_bytes)
        .bind(file.sha256)
        .bind(now_millis())
        .execute(self.writer())
        .await
        .with_context(|| format!("record file {}", file.id))?;
        Ok(())
    }

    /// The ids among `file_ids` that name no file of the organization.
    pub async fn missing_files(&self, org_id: &str, file_ids: &[&str]) -> anyhow::Result<Vec<String>> {
        let mut missing = Vec::new();
        for file_id in file_ids {
            let found = sqlx::query("SELECT 1 FROM files WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(*file_id)
                .fetch_optional(self.reader())
                .await
                .context("look up file")?;
            if found.is_none() && !missing.iter().any(|id| id == file_id) {
                missing.push((*file_id).to_owned());
            }
        }
        Ok(missing)
    }
}
