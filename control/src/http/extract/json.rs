//! JSON request bodies, with rejections turned into clear `{"detail": …}` errors.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;

/// Like `axum::Json`, but a bad body answers 400 (not JSON), 413 (too large), 415 (no JSON
/// content type) or 422 (wrong fields or types), each naming what is wrong.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<ApiJson<T>, ApiError> {
        // A declared length over the limit is refused before a byte of the body is read.
        let declared_length = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared_length.is_some_and(|length| length > crate::http::JSON_BODY_LIMIT as u64) {
            return Err(too_large());
        }
        if !is_json(request.headers()) {
            return Err(json_error(JsonRejection::MissingJsonContentType(Default::default())));
        }
        let bytes = read_body(request, state).await?;
        // serde reads a struct from an array too (its fields by position): every body we take is
        // an object, so anything else is refused before it can pass for one.
        let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
        if first != Some(&b'{') && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() {
            return Err(ApiError::unprocessable("invalid request body: invalid type: send a JSON object ({…})"));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

/// `Option<ApiJson<T>>`: a request without a body (and without a `Content-Type`) is `None`; a
/// body must be JSON, as for [`ApiJson`].
impl<S, T> OptionalFromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<ApiJson<T>>, ApiError> {
        if request.headers().contains_key(axum::http::header::CONTENT_TYPE) {
            return <ApiJson<T> as FromRequest<S>>::from_request(request, state).await.map(Some);
        }
        let bytes = read_body(request, state).await?;
        if bytes.is_empty() {
            Ok(None)
        } else {
            Err(json_error(JsonRejection::MissingJsonContentType(Default::default())))
        }
    }
}

/// True for `Content-Type: application/json` and `application/…+json`, parameters allowed.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(content_type) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::BadRequest(format!("read request body: {}", rejection.body_text()))
        }
    })
}

fn json_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => {
            ApiError::unprocessable(format!("invalid request body: {}", source_text(&error)))
        }
        JsonRejection::JsonSyntaxError(error) => {
            ApiError::BadRequest(format!("request body is not valid JSON: {}", source_text(&error)))
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("send the body as JSON with `Content-Type: application/json`".to_owned())
        }
        JsonRejection::BytesRejection(error) if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            too_large()
        }
        other => ApiError::BadRequest(format!("read request body: {}", other.body_text())),
    }
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "request body is larger than the limit of {} bytes",
        crate::http::JSON_BODY_LIMIT
    ))
}

/// serde's message, which names the field and position ("unknown field `nmae`, expected `name`
/// at line 1 column 8"), without axum's generic preamble.
pub(super) fn source_text(error: &dyn std::error::Error) -> String {
    let mut innermost = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        innermost = cause.to_string();
        source = cause.source();
    }
    innermost
}
