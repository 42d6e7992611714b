//! Source snapshots: `POST /v1/source-snapshots` (reserve), `PUT …/{id}/upload` (the archive),
//! `POST …/{id}/finalize` (check it and validate dari.yml), `GET …/{id}/manifest`,
//! `GET|DELETE …/{id}`.
//!
//! The upload URL carries a token of its own (a short-lived, single-snapshot credential, as a
//! signed URL would), so that Dari's CLI, which `PUT`s to the URL with only `upload_headers`,
//! works unchanged. The server trusts nothing the client declared: the archive's size and digest
//! are checked on upload, its entries and dari.yml on finalize.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use dari_bundle::{BundleLimits, read_archive, sha256_hex};
use dari_protocol::manifest::{self, BundleFiles, MANIFEST_FILE, Severity};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::api::agents::BundleFile;
use crate::api::source_snapshots::{ReserveSnapshot, ReservedSnapshot, SnapshotManifest, SourceSnapshot};
use crate::api::{ErrorBody, optional_timestamp, timestamp};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, BaseUrl, Caller};
use crate::persistence::{NewSnapshot, SnapshotCheck, SnapshotRecord, SnapshotStatus, now_millis, snapshot_blob_key};
use crate::secrets::{new_token, token_hash};

/// How long an upload URL works.
const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(60 * 60);
const MAX_METADATA_BYTES: usize = 16 * 1024;
/// The largest dari.yml the server reads, as the CLI.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// Files of a snapshot kept in memory while validating: dari.yml and the files it names.
const MAX_VALIDATION_READ_BYTES: u64 = 1024 * 1024;

#[utoipa::path(post, path = "/v1/source-snapshots", operation_id = "reserve_source_snapshot", tag = "source-snapshots",
    request_body = ReserveSnapshot,
    responses((status = 201, body = ReservedSnapshot), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn reserve(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base_url): BaseUrl,
    ApiJson(request): ApiJson<ReserveSnapshot>,
) -> ApiResult<(StatusCode, Json<ReservedSnapshot>)> {
    if request.format != "tar.gz" {
        return Err(ApiError::unprocessable(format!("format: {:?} is not supported; use \"tar.gz\"", request.format)));
    }
    if request.sha256.len() != 64 || !request.sha256.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ApiError::unprocessable("sha256: give the archive's SHA-256 as 64 lower-case hex digits"));
    }
    let max = state.settings.max_snapshot_bytes;
    if request.size_bytes == 0 {
        return Err(ApiError::unprocessable("size_bytes: an archive is at least 1 byte"));
    }
    if request.size_bytes > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "size_bytes: {} bytes is over the limit of {max} bytes for a source snapshot",
            request.size_bytes
        )));
    }
    let metadata = serde_json::Value::Object(request.metadata).to_string();
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(ApiError::unprocessable(format!("metadata: at most {MAX_METADATA_BYTES} bytes of JSON")));
    }
    let token = new_token("");
    let expires_at = now_millis() + i64::try_from(UPLOAD_URL_LIFETIME.as_millis()).expect("an hour fits in i64");
    let token_hash = token_hash(&token);
    let snapshot = state
        .store
        .reserve_snapshot(&NewSnapshot {
            org_id: &caller.org_id,
            format: &request.format,
            sha256: &request.sha256,
            size_bytes: i64::try_from(request.size_bytes).expect("bounded by the snapshot limit"),
            metadata: &metadata,
            upload_token_hash: &token_hash,
            upload_expires_at: expires_at,
        })
        .await?;
    tracing::info!(org.id = %caller.org_id, snapshot.id = %snapshot.id, size_bytes = request.size_bytes, "reserved source snapshot");
    Ok((
        StatusCode::CREATED,
        Json(ReservedSnapshot {
            upload_url: format!("{base_url}/v1/source-snapshots/{}/upload?token={token}", snapshot.id),
            upload_headers: BTreeMap::from([("Content-Type".to_owned(), "application/gzip".to_owned())]),
            upload_expires_at: timestamp(expires_at),
            status: snapshot.status.as_str().to_owned(),
            source_snapshot_id: snapshot.id,
        }),
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct UploadQuery {
    token: Option<String>,
}

#[utoipa::path(put, path = "/v1/source-snapshots/{snapshot_id}/upload", operation_id = "upload_source_snapshot",
    tag = "source-snapshots", params(("snapshot_id" = String, Path), ("token" = String, Query)),
    request_body(content = Vec<u8>, content_type = "application/gzip"),
    responses((status = 200, body = SourceSnapshot), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(()))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    Path(snapshot_id): Path<String>,
    Query(query): Query<UploadQuery>,
    body: Body,
) -> ApiResult<Json<SourceSnapshot>> {
    let denied =
        || ApiError::NotFound(format!("upload URL for source snapshot {snapshot_id} is invalid or has expired"));
    let token = query.token.ok_or_else(denied)?;
    let snapshot = state.store.snapshot_by_id(&snapshot_id).await?.ok_or_else(denied)?;
    if token_hash(&token) != snapshot.upload_token_hash
        || now_millis() > snapshot.upload_expires_at
        || snapshot.deleted_at.is_some()
    {
        return Err(denied());
    }
    if !matches!(snapshot.status, SnapshotStatus::Reserved | SnapshotStatus::Uploaded) {
        return Err(ApiError::Conflict(format!(
            "source snapshot {snapshot_id} is finalized; reserve a new one to upload again"
        )));
    }
    let declared = u64::try_from(snapshot.size_bytes).expect("sizes are stored non-negative");
    let bytes = read_body(body, declared).await?;
    let digest = sha256_hex(&bytes);
    if digest != snapshot.sha256 {
        return Err(ApiError::unprocessable(format!(
            "the archive's sha256 is {digest}, not the {} declared when the snapshot was reserved",
            snapshot.sha256
        )));
    }
    state.blobs.put(&snapshot_blob_key(&snapshot.id), bytes.into()).await?;
    if !state.store.mark_snapshot_uploaded(&snapshot.id).await? {
        return Err(ApiError::Conflict(format!("source snapshot {snapshot_id} was finalized during the upload")));
    }
    tracing::info!(org.id = %snapshot.org_id, snapshot.id = %snapshot.id, "uploaded source snapshot");
    let snapshot = state.store.snapshot_by_id(&snapshot.id).await?.ok_or_else(denied)?;
    Ok(Json(source_snapshot(snapshot)))
}

/// Reads exactly `declared` bytes, refusing more (413) or fewer (422).
async fn read_body(body: Body, declared: u64) -> ApiResult<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(declared.min(16 * 1024 * 1024)).unwrap_or(0));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| ApiError::BadRequest(format!("read the archive: {error}")))?;
        if bytes.len() as u64 + chunk.len() as u64 > declared {
            return Err(ApiError::PayloadTooLarge(format!(
                "the archive is larger than the {declared} bytes declared when the snapshot was reserved"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    if (bytes.len() as u64) < declared {
        return Err(ApiError::unprocessable(format!(
            "the archive is {} bytes, not the {declared} declared when the snapshot was reserved",
            bytes.len()
        )));
    }
    Ok(bytes)
}

#[utoipa::path(post, path = "/v1/source-snapshots/{snapshot_id}/finalize", operation_id = "finalize_source_snapshot",
    tag = "source-snapshots", params(("snapshot_id" = String, Path)),
    responses((status = 200, body = SourceSnapshot), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub(crate) async fn finalize(
    State(state): State<AppState>,
    caller: Caller,
    Path(snapshot_id): Path<String>,
) -> ApiResult<Json<SourceSnapshot>> {
    let snapshot = live_snapshot(&state, &caller, &snapshot_id).await?;
    match snapshot.status {
        SnapshotStatus::Reserved => {
            return Err(ApiError::Conflict(format!(
                "source snapshot {snapshot_id} has no archive yet; PUT it to the upload URL first"
            )));
        }
        // Finalizing twice answers the first outcome.
        SnapshotStatus::Ready | SnapshotStatus::Failed => return Ok(Json(source_snapshot(snapshot))),
        SnapshotStatus::Uploaded => {}
    }
    let archive = state.blobs.get(&snapshot_blob_key(&snapshot.id)).await?.ok_or_else(|| {
        anyhow::anyhow!("the archive of uploaded snapshot {snapshot_id} is missing from the blob store")
    })?;
    let check = tokio::task::spawn_blocking(move || check_archive(&archive))
        .await
        .map_err(|error| anyhow::anyhow!("check the archive: {error}"))?;
    state.store.finalize_snapshot(&snapshot.id, &check).await?;
    let outcome = match &check {
        SnapshotCheck::Ready { .. } => "ready".to_owned(),
        SnapshotCheck::Failed { reason, .. } => format!("failed: {reason}"),
    };
    tracing::info!(org.id = %caller.org_id, snapshot.id = %snapshot.id, outcome, "finalized source snapshot");
    let snapshot = live_snapshot(&state, &caller, &snapshot_id).await?;
    Ok(Json(source_snapshot(snapshot)))
}

/// Reads the archive with extraction's checks and validates its dari.yml against its files.
fn check_archive(archive: &[u8]) -> SnapshotCheck {
    let failed = |reason: String, diagnostics: serde_json::Value| SnapshotCheck::Failed {
        reason,
        diagnostics: diagnostics.to_string(),
    };
    let files = match read_archive(archive, &BundleLimits::DEFAULT, MAX_VALIDATION_READ_BYTES) {
        Ok(files) => files,
        Err(error) => {
            return failed(format!("the archive is not a valid source bundle: {error}"), serde_json::json!([]));
        }
    };
    let dari_yml = match files.read(MANIFEST_FILE, MAX_MANIFEST_BYTES) {
        Ok(bytes) => bytes,
        Err(error) => return failed(format!("read dari.yml from the archive: {error:?}"), serde_json::json!([])),
    };
    let validation = manifest::validate(&dari_yml, &files);
    let diagnostics = serde_json::to_value(&validation.diagnostics).unwrap_or_default();
    let errors: Vec<String> = validation
        .diagnostics
        .iter()
        .filter(|diagnostic| diagnostic.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    match validation.manifest {
        Some(manifest) if errors.is_empty() => {
            let listing: Vec<BundleFile> = files
                .files()
                .iter()
                .map(|file| BundleFile { path: file.path.clone(), size_bytes: file.size, executable: file.executable })
                .collect();
            SnapshotCheck::Ready {
                manifest: serde_json::to_string(&manifest).expect("a manifest serializes"),
                files: serde_json::to_string(&listing).expect("a file list serializes"),
                diagnostics: diagnostics.to_string(),
            }
        }
        _ => failed(
            format!(
                "dari.yml is invalid: {}",
                if errors.is_empty() { "no manifest".to_owned() } else { errors.join("; ") }
            ),
            diagnostics,
        ),
    }
}

#[utoipa::path(get, path = "/v1/source-snapshots/{snapshot_id}/manifest", operation_id = "get_source_snapshot_manifest",
    tag = "source-snapshots", params(("snapshot_id" = String, Path)),
    responses((status = 200, body = SnapshotManifest), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "dari.yml is invalid; `errors` lists the diagnostics")))]
pub(crate) async fn manifest(
    State(state): State<AppState>,
    caller: Caller,
    Path(snapshot_id): Path<String>,
) -> ApiResult<Json<SnapshotManifest>> {
    let snapshot = live_snapshot(&state, &caller, &snapshot_id).await?;
    let diagnostics: serde_json::Value =
        snapshot.diagnostics.as_deref().and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default();
    match snapshot.status {
        SnapshotStatus::Ready => {
            let manifest: serde_json::Value =
                serde_json::from_str(snapshot.manifest.as_deref().unwrap_or("null")).map_err(anyhow::Error::from)?;
            let name = manifest["name"].as_str().unwrap_or_default().to_owned();
            Ok(Json(SnapshotManifest { source_snapshot_id: snapshot.id, name, manifest, diagnostics }))
        }
        SnapshotStatus::Failed => Err(ApiError::Unprocessable {
            detail: snapshot.failure_reason.unwrap_or_else(|| "the snapshot failed its checks".to_owned()),
            errors: diagnostics.as_array().cloned(),
        }),
        SnapshotStatus::Reserved | SnapshotStatus::Uploaded => {
            Err(ApiError::Conflict(format!("source snapshot {snapshot_id} is not finalized; POST …/finalize first")))
        }
    }
}

#[utoipa::path(get, path = "/v1/source-snapshots/{snapshot_id}", operation_id = "get_source_snapshot", tag = "source-snapshots",
    params(("snapshot_id" = String, Path)), responses((status = 200, body = SourceSnapshot), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(snapshot_id): Path<String>,
) -> ApiResult<Json<SourceSnapshot>> {
    Ok(Json(source_snapshot(live_snapshot(&state, &caller, &snapshot_id).await?)))
}

#[utoipa::path(delete, path = "/v1/source-snapshots/{snapshot_id}", operation_id = "delete_source_snapshot", tag = "source-snapshots",
    params(("snapshot_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(snapshot_id): Path<String>,
) -> ApiResult<StatusCode> {
    let snapshot = live_snapshot(&state, &caller, &snapshot_id).await?;
    if !state.store.delete_snapshot(&caller.org_id, &snapshot.id).await? {
        return Err(ApiError::Conflict(format!(
            "source snapshot {snapshot_id} is the bundle of a published version and is kept"
        )));
    }
    state.blobs.delete(&snapshot_blob_key(&snapshot.id)).await?;
    tracing::info!(org.id = %caller.org_id, snapshot.id = %snapshot.id, "deleted source snapshot");
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's snapshot, not deleted, or 404.
pub(crate) async fn live_snapshot(state: &AppState, caller: &Caller, snapshot_id: &str) -> ApiResult<SnapshotRecord> {
    state
        .store
        .snapshot(&caller.org_id, snapshot_id)
        .await?
        .filter(|snapshot| snapshot.deleted_at.is_none())
        .ok_or_else(|| ApiError::NotFound(format!("source snapshot {snapshot_id} not found")))
}

fn source_snapshot(snapshot: SnapshotRecord) -> SourceSnapshot {
    SourceSnapshot {
        metadata: serde_json::from_str(&snapshot.metadata).unwrap_or_default(),
        id: snapshot.id,
        format: snapshot.format,
        sha256: snapshot.sha256,
        size_bytes: snapshot.size_bytes,
        status: snapshot.status.as_str().to_owned(),
        failure_reason: snapshot.failure_reason,
        created_at: timestamp(snapshot.created_at),
        finalized_at: optional_timestamp(snapshot.finalized_at),
    }
}
