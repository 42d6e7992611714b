//! `GET /healthz`: the server is up and its database answers.

use axum::extract::State;
use axum::http::StatusCode;

use crate::http::AppState;
use crate::http::error::ApiResult;

pub(super) async fn healthz(State(state): State<AppState>) -> ApiResult<StatusCode> {
    state.store.ping().await?;
    Ok(StatusCode::NO_CONTENT)
}
