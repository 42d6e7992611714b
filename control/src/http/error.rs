//! The HTTP edge's one error type, mapped to a status and an [`ErrorBody`] in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::ErrorBody;

/// What a handler fails with. Each variant's text is the `detail` the client reads, so it names
/// the field, path or resource at fault and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but invalid: wrong types, unknown fields, a manifest with errors.
    #[error("{detail}")]
    Unprocessable { detail: String, errors: Option<Vec<serde_json::Value>> },
    #[error("{0}")]
    TooManyRequests(String),
    /// The server cannot take this request now (a limit of the whole server); retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error("the server is shutting down; retry on another replica or in a moment")]
    ShuttingDown,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn unprocessable(detail: impl Into<String>) -> ApiError {
        ApiError::Unprocessable { detail: detail.into(), errors: None }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match self {
            ApiError::Internal(error) => {
                // The cause goes to the log, where an operator can act on it; the client gets no
                // internals.
                tracing::error!("failed to handle a request: {error:#}");
                ErrorBody { detail: "internal error; the server log has the cause".to_owned(), errors: None }
            }
            ApiError::Unprocessable { detail, errors } => ErrorBody { detail, errors },
            other => ErrorBody { detail: other.to_string(), errors: None },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
