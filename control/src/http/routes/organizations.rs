//! Organizations: `GET /v1/organizations` (the caller's own; a key belongs to exactly one) and
//! `POST /v1/organizations` (operator keys only: a new tenant with its first admin key).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::api::organizations::{CreateOrganization, CreatedOrganization, Organization, OrganizationList};
use crate::api::{ErrorBody, timestamp};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, Caller};
use crate::persistence::{OrgRecord, is_unique_violation};
use crate::secrets::{API_KEY_PREFIX, new_token};

const MAX_NAME_LEN: usize = 100;

#[utoipa::path(get, path = "/v1/organizations", operation_id = "list_organizations", tag = "organizations",
    responses((status = 200, body = OrganizationList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<OrganizationList>> {
    let org = state.store.org(&caller.org_id).await?.ok_or(ApiError::Unauthorized)?;
    Ok(Json(OrganizationList { organizations: vec![organization(org)] }))
}

#[utoipa::path(post, path = "/v1/organizations", operation_id = "create_organization", tag = "organizations",
    request_body = CreateOrganization,
    responses((status = 201, body = CreatedOrganization), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateOrganization>,
) -> ApiResult<(StatusCode, Json<CreatedOrganization>)> {
    let caller_org = state.store.org(&caller.org_id).await?.ok_or(ApiError::Unauthorized)?;
    if !caller_org.operator {
        return Err(ApiError::Forbidden(
            "only keys of the operator organization (made when the server first started) may create organizations"
                .to_owned(),
        ));
    }
    let name = request.name.trim();
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
    if !valid {
        return Err(ApiError::unprocessable(format!("name: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'")));
    }
    let api_key = new_token(API_KEY_PREFIX);
    let mut tx = state.store.begin().await?;
    let org = match state.store.create_org(&mut tx, name, false).await {
        Ok(org) => org,
        Err(error) if error.downcast_ref::<sqlx::Error>().is_some_and(is_unique_violation) => {
            return Err(ApiError::Conflict(format!("an organization named {name:?} exists; choose another name")));
        }
        Err(error) => return Err(error.into()),
    };
    state.store.create_api_key(&mut tx, &org.id, "admin", &api_key).await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    tracing::info!(org.id = %org.id, by = %caller.key_id, "created organization");
    Ok((StatusCode::CREATED, Json(CreatedOrganization { organization: organization(org), api_key })))
}

fn organization(org: OrgRecord) -> Organization {
    Organization { id: org.id, name: org.name, operator: org.operator, created_at: timestamp(org.created_at) }
}
