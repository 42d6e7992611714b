//! The route table: every path of the public API and the handler that serves it.

pub(super) mod api_keys;
pub(super) mod credentials;
mod health;
pub(super) mod organizations;

use axum::Router;
use axum::routing::{delete, get, put};

use super::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/v1/openapi.json", get(super::openapi::serve))
        .route("/v1/organizations", get(organizations::list).post(organizations::create))
        .route("/v1/organizations/{org_id}/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/v1/organizations/{org_id}/api-keys/{key_id}", delete(api_keys::revoke))
        .route("/v1/organizations/{org_id}/credentials", get(credentials::list))
        .route("/v1/organizations/{org_id}/credentials/{name}", put(credentials::put).delete(credentials::delete))
}
