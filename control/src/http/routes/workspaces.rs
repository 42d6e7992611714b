//! Workspace downloads: `GET /v1/sessions/{session_id}/workspace.zip[?path=DIR&path=DIR]`, a zip
//! of the session's last workspace archive, or of some of its directories (see
//! [`crate::workspaces`]).
//!
//! Every error a client can act on is found before the response starts: the archive is read once
//! to plan the zip, then again to stream it, on blocking threads.

use std::io::{BufWriter, Write};

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::response::Response;
use tokio::sync::mpsc;

use super::files::download;
use crate::api::ErrorBody;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::Caller;
use crate::ids::{looks_like, prefix};
use crate::persistence::{SandboxStatus, SessionWorkspace};
use crate::workspaces::{ARCHIVE_LIMITS, MAX_FILTERS, WorkspaceZipError, parse_filter, plan, write_zip};

/// How much of the zip waits for a slow client: this many chunks of [`CHUNK_BYTES`].
const CHUNKS_IN_FLIGHT: usize = 4;
const CHUNK_BYTES: usize = 64 * 1024;

#[utoipa::path(get, path = "/v1/sessions/{session_id}/workspace.zip", operation_id = "download_session_workspace", tag = "sessions",
    params(("session_id" = String, Path),
           ("path" = Option<Vec<String>>, Query, description = "A directory relative to /workspace to include; repeat for several. Default: the whole workspace.")),
    responses((status = 200, description = "a zip of the workspace, as an attachment", content_type = "application/zip", body = Vec<u8>),
              (status = 400, body = ErrorBody, description = "a path that is absolute, climbs out with `..`, holds a NUL byte or is not a directory of the workspace"),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the session has no workspace archive yet"),
              (status = 422, body = ErrorBody, description = "the workspace is larger than the server serves as a zip")))]
pub(crate) async fn download_zip(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    let filters = filters(query)?;
    let session_not_found = || ApiError::NotFound(format!("session {session_id} not found"));
    if !looks_like(&session_id, prefix::SESSION) {
        return Err(session_not_found());
    }
    refresh_live_workspace(&state, &caller.org_id, &session_id).await;
    let record = match state.store.session_workspace(&caller.org_id, &session_id).await? {
        SessionWorkspace::SessionNotFound => return Err(session_not_found()),
        SessionWorkspace::NotArchived => {
            return Err(ApiError::Conflict(format!(
                "session {session_id} has no workspace yet: its sandbox saves one after it starts; try again once the session has run"
            )));
        }
        SessionWorkspace::Archived(record) => record,
    };
    let archive = state
        .blobs
        .get(&record.blob_key)
        .await?
        .with_context(|| format!("the workspace archive of session {session_id} is missing from the blob store"))?;
    let zip_plan = {
        let archive = archive.clone();
        tokio::task::spawn_blocking(move || plan(&archive, &filters, ARCHIVE_LIMITS))
            .await
            .context("plan the workspace zip")?
    };
    let zip_plan = zip_plan.map_err(|error| match error {
        WorkspaceZipError::NotADirectory { .. } => ApiError::BadRequest(error.to_string()),
        WorkspaceZipError::TooManyEntries { .. } | WorkspaceZipError::TooLarge { .. } => {
            ApiError::unprocessable(error.to_string())
        }
        WorkspaceZipError::Read(_) | WorkspaceZipError::Write(_) => {
            ApiError::Internal(anyhow::Error::new(error).context(format!("the workspace of session {session_id}")))
        }
    })?;
    tracing::info!(org.id = %caller.org_id, session.id = %session_id, entries = zip_plan.len(),
        skipped = zip_plan.skipped, "serving workspace zip");
    let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    // The writer ends when the zip is written or the client goes away (its channel closes).
    let session_for_log = session_id.clone();
    tokio::task::spawn_blocking(move || {
        let out = BufWriter::with_capacity(CHUNK_BYTES, BodyWriter { sender: sender.clone() });
        match write_zip(&archive, &zip_plan, out) {
            Ok(()) => {}
            Err(WorkspaceZipError::Write(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                tracing::debug!(session.id = %session_for_log, "the client stopped reading the workspace zip");
            }
            Err(error) => {
                tracing::warn!(session.id = %session_for_log, "failed to stream a workspace zip: {error:#}");
                let _ = sender.blocking_send(Err(std::io::Error::other(error.to_string())));
            }
        }
    });
    let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let zip_type = HeaderValue::from_static("application/zip");
    Ok(download(zip_type, &format!("workspace-{session_id}.zip"), Body::from_stream(chunks)))
}

/// The `path` parameters, validated and normalized; any other parameter is refused.
fn filters(query: Result<Query<Vec<(String, String)>>, QueryRejection>) -> ApiResult<Vec<String>> {
    let Query(pairs) =
        query.map_err(|rejection| ApiError::BadRequest(format!("read the query: {}", rejection.body_text())))?;
    let mut filters = Vec::new();
    for (key, value) in pairs {
        if key != "path" {
            return Err(ApiError::BadRequest(format!("unknown query parameter {key:?}: the only one is `path`")));
        }
        let filter = parse_filter(&value).map_err(ApiError::BadRequest)?;
        if !filters.contains(&filter) {
            filters.push(filter);
        }
    }
    if filters.len() > MAX_FILTERS {
        return Err(ApiError::BadRequest(format!("give at most {MAX_FILTERS} paths")));
    }
    Ok(filters)
}

/// The zip writer's output, handed to the response body chunk by chunk; a write blocks while the
/// client is slower than the writer, and fails with `BrokenPipe` once the client has gone.
struct BodyWriter {
    sender: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for BodyWriter {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        self.sender
            .blocking_send(Ok(Bytes::copy_from_slice(buffer)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client stopped reading"))?;
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A session whose sandbox is up on this server has its workspace archived first, so that the
/// zip shows the workspace as it is now, not as the last idle teardown left it. A failure leaves
/// the last archive to serve, and is logged.
async fn refresh_live_workspace(state: &AppState, org_id: &str, session_id: &str) {
    let Ok(Some(_)) = state.store.session(org_id, session_id).await else { return };
    let Ok(Some(sandbox)) = state.store.live_sandbox(session_id).await else { return };
    let sandboxes = &state.execution.sandboxes;
    if sandbox.status != SandboxStatus::Ready || !sandboxes.hub().is_registered(&sandbox.id) {
        return;
    }
    if let Err(error) = sandboxes.archive_workspace(&sandbox).await {
        tracing::warn!(session.id = %session_id, "could not archive the live workspace for a download: {error:#}");
    }
}
