//! API keys: `GET|POST /v1/organizations/{org_id}/api-keys`,
//! `DELETE /v1/organizations/{org_id}/api-keys/{key_id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::api::api_keys::{ApiKey, ApiKeyList, CreateApiKey, CreatedApiKey};
use crate::api::{ErrorBody, optional_timestamp, timestamp};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, Caller};
use crate::persistence::ApiKeyRecord;
use crate::secrets::{API_KEY_PREFIX, new_token};

const MAX_LABEL_LEN: usize = 200;

#[utoipa::path(get, path = "/v1/organizations/{org_id}/api-keys", operation_id = "list_api_keys", params(("org_id" = String, Path)), tag = "api-keys",
    responses((status = 200, body = ApiKeyList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Json<ApiKeyList>> {
    caller.check_org(&org_id)?;
    let keys = state.store.list_api_keys(&caller.org_id).await?;
    Ok(Json(ApiKeyList { api_keys: keys.into_iter().map(api_key).collect() }))
}

#[utoipa::path(post, path = "/v1/organizations/{org_id}/api-keys", operation_id = "create_api_key", params(("org_id" = String, Path)), tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    ApiJson(request): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    caller.check_org(&org_id)?;
    let label = request.label.trim();
    if label.is_empty() || label.len() > MAX_LABEL_LEN {
        return Err(ApiError::unprocessable(format!("label: give the key a name of 1 to {MAX_LABEL_LEN} characters")));
    }
    if let Some(scope) = request.scopes.iter().flatten().find(|scope| scope.as_str() != "platform") {
        return Err(ApiError::unprocessable(format!(
            "scopes: {scope:?} is not available on a self-hosted server; the only scope is \"platform\""
        )));
    }
    let plaintext = new_token(API_KEY_PREFIX);
    let mut tx = state.store.begin().await?;
    let record = state.store.create_api_key(&mut tx, &caller.org_id, label, &plaintext).await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    tracing::info!(org.id = %caller.org_id, key.id = %record.id, by = %caller.key_id, "created API key");
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key: api_key(record), api_key: plaintext })))
}

#[utoipa::path(delete, path = "/v1/organizations/{org_id}/api-keys/{key_id}", operation_id = "revoke_api_key", params(("org_id" = String, Path), ("key_id" = String, Path)), tag = "api-keys",
    responses((status = 200, body = ApiKey), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((org_id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<ApiKey>> {
    caller.check_org(&org_id)?;
    let record = state
        .store
        .revoke_api_key(&caller.org_id, &key_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("API key {key_id} not found")))?;
    tracing::info!(org.id = %caller.org_id, key.id = %key_id, by = %caller.key_id, "revoked API key");
    Ok(Json(api_key(record)))
}

fn api_key(record: ApiKeyRecord) -> ApiKey {
    ApiKey {
        id: record.id,
        label: record.label,
        prefix: record.prefix,
        scopes: vec!["platform".to_owned()],
        created_at: timestamp(record.created_at),
        last_used_at: optional_timestamp(record.last_used_at),
        revoked_at: optional_timestamp(record.revoked_at),
    }
}
