//! Credentials: `GET /v1/organizations/{org_id}/credentials`,
//! `PUT|DELETE /v1/organizations/{org_id}/credentials/{name}`. Values are sealed before they are
//! stored and no response carries one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dari_protocol::manifest::is_credential_name;

use crate::api::credentials::{Credential, CredentialList, PutCredential};
use crate::api::{ErrorBody, timestamp};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, Caller};
use crate::secrets::credential_seal_context;

const MAX_NAME_LEN: usize = 128;
/// The largest credential value: room for a service account key file, not for a database dump.
const MAX_VALUE_BYTES: usize = 64 * 1024;

#[utoipa::path(get, path = "/v1/organizations/{org_id}/credentials", operation_id = "list_credentials", params(("org_id" = String, Path)), tag = "credentials",
    responses((status = 200, body = CredentialList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Json<CredentialList>> {
    caller.check_org(&org_id)?;
    let records = state.store.list_credentials(&caller.org_id).await?;
    let credentials = records
        .into_iter()
        .map(|record| Credential {
            name: record.name,
            created_at: timestamp(record.created_at),
            updated_at: timestamp(record.updated_at),
        })
        .collect();
    Ok(Json(CredentialList { credentials }))
}

#[utoipa::path(put, path = "/v1/organizations/{org_id}/credentials/{name}", operation_id = "put_credential", params(("org_id" = String, Path), ("name" = String, Path)), tag = "credentials", request_body = PutCredential,
    responses((status = 201, body = Credential, description = "created"), (status = 200, body = Credential, description = "replaced"),
              (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path((org_id, name)): Path<(String, String)>,
    ApiJson(request): ApiJson<PutCredential>,
) -> ApiResult<(StatusCode, Json<Credential>)> {
    caller.check_org(&org_id)?;
    check_name(&name)?;
    if request.value.is_empty() {
        return Err(ApiError::unprocessable("value: a credential's value may not be empty"));
    }
    if request.value.len() > MAX_VALUE_BYTES {
        return Err(ApiError::unprocessable(format!(
            "value: {} bytes is over the limit of {MAX_VALUE_BYTES} bytes",
            request.value.len()
        )));
    }
    let sealed = state.master_key.seal(&credential_seal_context(&caller.org_id, &name), request.value.as_bytes());
    let created = state.store.put_credential(&caller.org_id, &name, &sealed).await?;
    tracing::info!(org.id = %caller.org_id, credential = %name, created, "stored credential");
    let record = state
        .store
        .list_credentials(&caller.org_id)
        .await?
        .into_iter()
        .find(|record| record.name == name)
        .ok_or_else(|| anyhow::anyhow!("credential {name} vanished after it was stored"))?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(Credential {
            name: record.name,
            created_at: timestamp(record.created_at),
            updated_at: timestamp(record.updated_at),
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/organizations/{org_id}/credentials/{name}", operation_id = "delete_credential", params(("org_id" = String, Path), ("name" = String, Path)), tag = "credentials",
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((org_id, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.check_org(&org_id)?;
    check_name(&name)?;
    if state.store.delete_credential(&caller.org_id, &name).await? {
        tracing::info!(org.id = %caller.org_id, credential = %name, "deleted credential");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("credential {name} not found")))
    }
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.len() <= MAX_NAME_LEN && is_credential_name(name) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "credential name {name:?} is invalid: use upper-case letters, digits and underscores, not starting with a digit (^[A-Z_][A-Z0-9_]*$), at most {MAX_NAME_LEN} characters"
        )))
    }
}
