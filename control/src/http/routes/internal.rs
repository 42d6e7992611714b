//! `/internal/sandboxes/{sandbox_id}/…`: what a sandbox's daemon reaches, with its sandbox
//! token (not an API key): the link, the source bundle, and the workspace archive.
//!
//! A token opens only its own sandbox, and only while that sandbox is live: a torn-down sandbox's
//! token answers 401, on which the daemon exits. These routes are not part of the public API and
//! not in the OpenAPI document.

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::persistence::{SandboxRecord, snapshot_blob_key, workspace_blob_key};
use crate::sandboxes::MAX_WORKSPACE_ARCHIVE_BYTES;
use crate::secrets::token_hash;

/// The sandbox a request's token opens; the path's sandbox id must be the token's.
#[derive(Debug)]
pub(crate) struct SandboxCaller(SandboxRecord);

impl FromRequestParts<AppState> for SandboxCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<SandboxCaller, ApiError> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Unauthorized)?;
        let sandbox_id = params
            .into_iter()
            .find_map(|(name, value)| (name == "sandbox_id").then_some(value))
            .ok_or(ApiError::Unauthorized)?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty() && token.len() <= 256)
            .ok_or(ApiError::Unauthorized)?;
        let sandbox = state.store.sandbox_by_token(&sandbox_id, &token_hash(token)).await?;
        sandbox.map(SandboxCaller).ok_or(ApiError::Unauthorized)
    }
}

/// `GET /internal/sandboxes/{sandbox_id}/link`: the daemon's WebSocket.
pub(crate) async fn link(
    State(state): State<AppState>,
    SandboxCaller(sandbox): SandboxCaller,
    upgrade: WebSocketUpgrade,
) -> Response {
    let hub = state.execution.sandboxes.hub().clone();
    if !hub.is_registered(&sandbox.id) {
        return (StatusCode::NOT_FOUND, format!("sandbox {} is not served by this control plane", sandbox.id))
            .into_response();
    }
    crate::hub::configure(upgrade).on_upgrade(move |socket| async move { hub.serve_link(sandbox.id, socket).await })
}

/// `GET /internal/sandboxes/{sandbox_id}/bundle`: the session's source bundle (tar.gz).
pub(crate) async fn bundle(
    State(state): State<AppState>,
    SandboxCaller(sandbox): SandboxCaller,
) -> ApiResult<Response> {
    let session = state
        .store
        .session(&sandbox.org_id, &sandbox.session_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("session {} not found", sandbox.session_id)))?;
    let version = state
        .store
        .version(&sandbox.org_id, &session.version_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("version {} not found", session.version_id)))?;
    let bytes = state
        .blobs
        .get(&snapshot_blob_key(&version.source_snapshot_id))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the bundle of version {} is missing from the blob store", version.id))?;
    Ok(gzip(bytes))
}

/// `GET /internal/sandboxes/{sandbox_id}/workspace`: the session's last workspace archive.
pub(crate) async fn download_workspace(
    State(state): State<AppState>,
    SandboxCaller(sandbox): SandboxCaller,
) -> ApiResult<Response> {
    let bytes = state
        .blobs
        .get(&workspace_blob_key(&sandbox.session_id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("session {} has no workspace archive", sandbox.session_id)))?;
    Ok(gzip(bytes))
}

/// `PUT /internal/sandboxes/{sandbox_id}/workspace`: a new workspace archive, streamed to the
/// blob store and recorded with its size and sha256.
pub(crate) async fn upload_workspace(
    State(state): State<AppState>,
    SandboxCaller(sandbox): SandboxCaller,
    body: Body,
) -> ApiResult<StatusCode> {
    let mut size: u64 = 0;
    let mut digest = Sha256::new();
    let chunks = body
        .into_data_stream()
        .map(|chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            size += chunk.len() as u64;
            if size > MAX_WORKSPACE_ARCHIVE_BYTES {
                return Err(std::io::Error::other(format!(
                    "the workspace archive is over the limit of {MAX_WORKSPACE_ARCHIVE_BYTES} bytes"
                )));
            }
            digest.update(&chunk);
            Ok(chunk)
        })
        .boxed();
    let key = workspace_blob_key(&sandbox.session_id);
    let stored = state.blobs.put_stream(&key, chunks).await;
    let size = stored.map_err(|error| ApiError::PayloadTooLarge(format!("store the workspace archive: {error:#}")))?;
    let sha256 = hex::encode(digest.finalize());
    state
        .store
        .record_workspace_archive(
            &sandbox.org_id,
            &sandbox.session_id,
            i64::try_from(size).unwrap_or(i64::MAX),
            Some(&sha256),
        )
        .await?;
    tracing::info!(sandbox_id = %sandbox.id, session_id = %sandbox.session_id, size, "stored a workspace archive");
    Ok(StatusCode::NO_CONTENT)
}

fn gzip(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/gzip")], bytes).into_response()
}
