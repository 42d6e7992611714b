//! The URL clients reach this server at, for URLs the API hands out (upload URLs, agent URLs):
//! the configured public URL, else the scheme and `Host` of the request.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::http::AppState;
use crate::http::error::ApiError;

#[derive(Clone, Debug)]
pub struct BaseUrl(pub String);

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<BaseUrl, ApiError> {
        if let Some(url) = &state.settings.public_url {
            return Ok(BaseUrl(url.clone()));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .filter(|host| {
                !host.is_empty() && host.bytes().all(|byte| byte.is_ascii_graphic() && !b"/\\@?#".contains(&byte))
            })
            .ok_or_else(|| ApiError::BadRequest("a Host header is required (or configure --public-url)".to_owned()))?;
        let scheme = if state.settings.tls { "https" } else { "http" };
        Ok(BaseUrl(format!("{scheme}://{host}")))
    }
}
