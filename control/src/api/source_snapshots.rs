//! Source snapshots: the publish pipeline's input. Reserve, upload the archive to the returned
//! URL, finalize (the server checks the archive and validates dari.yml), then publish a version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveSnapshot {
    /// Only `tar.gz`.
    pub format: String,
    /// Lower-case hex SHA-256 of the archive.
    pub sha256: String,
    pub size_bytes: u64,
    /// Where the snapshot came from (`origin`, `git_commit_sha`, `git_ref`, `git_dirty`, …).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReservedSnapshot {
    pub source_snapshot_id: String,
    pub status: String,
    /// `PUT` the archive here, with `upload_headers`. The URL carries its own short-lived
    /// credential: no API key is needed.
    pub upload_url: String,
    pub upload_headers: BTreeMap<String, String>,
    pub upload_expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SourceSnapshot {
    pub id: String,
    pub format: String,
    pub sha256: String,
    pub size_bytes: i64,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// `reserved`, `uploaded`, `ready` or `failed`.
    pub status: String,
    pub failure_reason: Option<String>,
    pub created_at: String,
    pub finalized_at: Option<String>,
}

/// `GET /v1/source-snapshots/{id}/manifest` of a ready snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotManifest {
    pub source_snapshot_id: String,
    /// The agent's name from dari.yml.
    pub name: String,
    /// The validated manifest.
    #[schema(value_type = Object)]
    pub manifest: serde_json::Value,
    /// Warnings (a ready snapshot has no errors).
    #[schema(value_type = Vec<Object>)]
    pub diagnostics: serde_json::Value,
}
