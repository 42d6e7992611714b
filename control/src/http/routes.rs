//! The route table: every path of the public API and the handler that serves it.

pub(super) mod agents;
pub(super) mod api_keys;
pub(super) mod credentials;
pub(super) mod events;
pub(super) mod files;
mod health;
mod internal;
pub(super) mod messages;
pub(super) mod organizations;
mod pages;
pub(super) mod sessions;
pub(super) mod source_snapshots;
pub(super) mod stream;
pub(super) mod transcript;
pub(super) mod versions;
pub(super) mod workspaces;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};

use super::{ApiSettings, AppState};

pub(super) fn router(settings: &ApiSettings) -> Router<AppState> {
    let upload_limit = DefaultBodyLimit::max(files::upload_body_limit(settings.max_file_bytes));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/v1/openapi.json", get(super::openapi::serve))
        .route("/v1/organizations", get(organizations::list).post(organizations::create))
        .route("/v1/organizations/{org_id}/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/v1/organizations/{org_id}/api-keys/{key_id}", delete(api_keys::revoke))
        .route("/v1/organizations/{org_id}/credentials", get(credentials::list))
        .route("/v1/organizations/{org_id}/credentials/{name}", put(credentials::put).delete(credentials::delete))
        .route("/v1/source-snapshots", post(source_snapshots::reserve))
        .route("/v1/source-snapshots/{snapshot_id}", get(source_snapshots::get).delete(source_snapshots::delete))
        // The upload handler enforces the snapshot's own declared size instead of the JSON limit.
        .route(
            "/v1/source-snapshots/{snapshot_id}/upload",
            put(source_snapshots::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/source-snapshots/{snapshot_id}/finalize", post(source_snapshots::finalize))
        .route("/v1/source-snapshots/{snapshot_id}/manifest", get(source_snapshots::manifest))
        .route("/v1/agents", get(agents::list).post(agents::create))
        .route("/v1/agents/{agent_id}", get(agents::get).delete(agents::delete))
        .route("/v1/agents/{agent_id}/versions", get(versions::list).post(agents::publish_version))
        .route("/v1/agents/{agent_id}/versions/{version_id}", get(versions::get))
        .route("/v1/agents/{agent_id}/versions/{version_id}/bundle", get(versions::bundle))
        .route("/v1/agents/{agent_id}/versions/{version_id}/runtime", get(versions::runtime))
        .route("/v1/agents/{agent_id}/versions/{version_id}/bundle/file", get(versions::file))
        .route("/v1/agents/{agent_id}/sessions", get(sessions::list_for_agent).post(sessions::create))
        .route("/v1/agents/{agent_id}/messages", post(messages::send_to_agent))
        .route("/v1/sessions", get(sessions::list))
        .route("/v1/sessions/{session_id}", get(sessions::get))
        .route("/v1/sessions/{session_id}/events", get(events::list).post(events::send))
        .route("/v1/sessions/{session_id}/stream", get(stream::stream))
        .route("/v1/sessions/{session_id}/messages", get(messages::list))
        .route("/v1/sessions/{session_id}/transcript", get(transcript::get))
        .route("/v1/messages/{message_id}", get(messages::get))
        .route("/v1/files", post(files::upload).layer(upload_limit))
        .route("/v1/files/{file_id}", get(files::get).delete(files::delete))
        .route("/v1/files/{file_id}/content", get(files::content))
        .route("/v1/sessions/{session_id}/workspace.zip", get(workspaces::download_zip))
        .merge(internal_router())
}

/// What a sandbox's daemon reaches with its sandbox token: its link, its bundle, its workspace
/// archive. The only routes on the link's Unix socket, which jailed sandboxes reach.
pub(super) fn internal_router() -> Router<AppState> {
    Router::new()
        .route("/internal/sandboxes/{sandbox_id}/link", get(internal::link))
        .route("/internal/sandboxes/{sandbox_id}/bundle", get(internal::bundle))
        .route(
            "/internal/sandboxes/{sandbox_id}/workspace",
            get(internal::download_workspace).put(internal::upload_workspace).layer(DefaultBodyLimit::disable()),
        )
}
