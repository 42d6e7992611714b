//! Uploaded files: what `POST /v1/files` takes and what the file routes answer.

use serde::Serialize;
use utoipa::ToSchema;

/// A stored file. `file` and `image` content blocks reference it by `id`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedFile {
    /// `file_…`
    pub id: String,
    /// The leaf of the name the client gave, without directories or control characters;
    /// `upload` when nothing was left.
    pub filename: String,
    pub size_bytes: i64,
    /// Read from the bytes for PNG, JPEG, GIF and WebP images; otherwise the part's declared type,
    /// or `application/octet-stream`.
    pub content_type: String,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    pub created_at: String,
}

/// The `multipart/form-data` body of `POST /v1/files`.
#[derive(Debug, ToSchema)]
pub struct UploadFileForm {
    /// The file's bytes, with its name in the part's `Content-Disposition` and its type in the
    /// part's `Content-Type`.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}
