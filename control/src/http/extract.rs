//! Extractors that every route shares: the caller's organization, and JSON bodies and query
//! strings whose errors read as [`ApiError`]s.

mod auth;
mod base_url;
mod json;
mod query;

pub use auth::Caller;
pub use base_url::BaseUrl;
pub use json::ApiJson;
pub use query::ApiQuery;
