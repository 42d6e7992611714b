//! Uploaded files: one row per file with its name, type, size and digest; the bytes live in the
//! blob store under [`file_blob_key`]. `file` and `image` content blocks of user messages name a
//! file by id, and [`Store::check_file_reference`] is how they are checked.

use anyhow::Context;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_millis};
use crate::files::is_image_content_type;

/// Where a file's bytes live in the blob store.
pub fn file_blob_key(file_id: &str) -> String {
    format!("files/{file_id}")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    pub id: String,
    pub org_id: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    pub created_at: i64,
}

impl FileRecord {
    /// True when an `image` content block may reference this file.
    pub fn is_image(&self) -> bool {
        is_image_content_type(&self.content_type)
    }
}

/// A file whose bytes are stored, to be recorded. The caller makes the id, since the blob is
/// written under it first.
#[derive(Debug)]
pub struct NewFile<'a> {
    pub id: &'a str,
    pub org_id: &'a str,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub size_bytes: i64,
    pub sha256: &'a str,
}

/// The kind of content block that references a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileBlock {
    /// `{"type": "file", "file_id"}`: any file.
    File,
    /// `{"type": "image", "file_id"}`: an image of a type the model takes.
    Image,
}

/// Why a content block may not reference a file. The messages are the `detail` a client reads.
#[derive(Debug, thiserror::Error)]
pub enum FileReferenceError {
    #[error("file {file_id} not found; upload it with POST /v1/files first")]
    NotFound { file_id: String },
    #[error(
        "file {file_id} is {content_type}, not an image: image blocks take PNG, JPEG, GIF or WebP files; send it in a file block instead"
    )]
    NotAnImage { file_id: String, content_type: String },
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

const COLUMNS: &str = "id, org_id, filename, content_type, size_bytes, sha256, created_at";

impl Store {
    pub async fn insert_file(&self, new: &NewFile<'_>) -> anyhow::Result<FileRecord> {
        let record = FileRecord {
            id: new.id.to_owned(),
            org_id: new.org_id.to_owned(),
            filename: new.filename.to_owned(),
            content_type: new.content_type.to_owned(),
            size_bytes: new.size_bytes,
            sha256: new.sha256.to_owned(),
            created_at: now_millis(),
        };
        sqlx::query(&format!("INSERT INTO files ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(&record.id)
            .bind(&record.org_id)
            .bind(&record.filename)
            .bind(&record.content_type)
            .bind(record.size_bytes)
            .bind(&record.sha256)
            .bind(record.created_at)
            .execute(self.writer())
            .await
            .with_context(|| format!("record file {}", record.id))?;
        Ok(record)
    }

    /// A file of the organization.
    pub async fn file(&self, org_id: &str, file_id: &str) -> anyhow::Result<Option<FileRecord>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM files WHERE org_id = $1 AND id = $2"))
            .bind(org_id)
            .bind(file_id)
            .fetch_optional(self.reader())
            .await
            .with_context(|| format!("read file {file_id}"))?
            .map(|row| file_from_row(&row))
            .transpose()
    }

    /// Removes a file's row and returns it, so the caller can remove its bytes; `None` when the
    /// organization has no such file.
    pub async fn delete_file(&self, org_id: &str, file_id: &str) -> anyhow::Result<Option<FileRecord>> {
        sqlx::query(&format!("DELETE FROM files WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"))
            .bind(org_id)
            .bind(file_id)
            .fetch_optional(self.writer())
            .await
            .with_context(|| format!("delete file {file_id}"))?
            .map(|row| file_from_row(&row))
            .transpose()
    }

    /// Checks that a content block of the organization may reference `file_id`: the file exists
    /// in the organization, and is an image when the block is an image block.
    pub async fn check_file_reference(
        &self,
        org_id: &str,
        file_id: &str,
        block: FileBlock,
    ) -> Result<FileRecord, FileReferenceError> {
        let file = self
            .file(org_id, file_id)
            .await?
            .ok_or_else(|| FileReferenceError::NotFound { file_id: file_id.to_owned() })?;
        if block == FileBlock::Image && !file.is_image() {
            return Err(FileReferenceError::NotAnImage { file_id: file.id, content_type: file.content_type });
        }
        Ok(file)
    }
}

fn file_from_row(row: &AnyRow) -> anyhow::Result<FileRecord> {
    Ok(FileRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        filename: row.try_get("filename")?,
        content_type: row.try_get("content_type")?,
        size_bytes: row.try_get("size_bytes")?,
        sha256: row.try_get("sha256")?,
        created_at: row.try_get("created_at")?,
    })
}
