//! `Authorization: Bearer dari_…`: the organization a request speaks for.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::http::AppState;
use crate::http::error::ApiError;

/// The authenticated caller. Handlers scope every query by `org_id`.
#[derive(Clone, Debug)]
pub struct Caller {
    pub org_id: String,
    pub key_id: String,
}

impl Caller {
    /// Refuses an organization in a path that is not the caller's. Another organization's
    /// resources answer 404, so that ids cannot be probed.
    pub fn check_org(&self, org_id: &str) -> Result<(), ApiError> {
        if org_id == self.org_id { Ok(()) } else { Err(ApiError::NotFound(format!("organization {org_id} not found"))) }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or(ApiError::Unauthorized)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|token| !token.is_empty() && token.len() <= 256)
            .ok_or(ApiError::Unauthorized)?;
        let key = state.store.authenticate(token).await?.ok_or(ApiError::Unauthorized)?;
        Ok(Caller { org_id: key.org_id, key_id: key.key_id })
    }
}
