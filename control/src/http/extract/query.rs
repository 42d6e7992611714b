//! Query strings, with rejections turned into clear `{"detail": …}` errors.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::json::source_text;
use crate::http::error::ApiError;

/// Like `axum::extract::Query`, but a bad query string answers 400 naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ApiQuery<T>, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(error)) => {
                Err(ApiError::BadRequest(format!("invalid query string: {}", source_text(&error))))
            }
            Err(other) => Err(ApiError::BadRequest(format!("invalid query string: {}", other.body_text()))),
        }
    }
}
