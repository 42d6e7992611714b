//! The route table: every path of the public API and the handler that serves it.

pub(super) mod api_keys;
pub(super) mod credentials;
pub(super) mod files;
mod health;
pub(super) mod organizations;
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
        .route("/v1/files", post(files::upload).layer(upload_limit))
        .route("/v1/files/{file_id}", get(files::get).delete(files::delete))
        .route("/v1/files/{file_id}/content", get(files::content))
        .route("/v1/sessions/{session_id}/workspace.zip", get(workspaces::download_zip))
}
