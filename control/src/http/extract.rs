//! Extractors that every route shares: the caller's organization, and JSON bodies and query
//! strings whose errors read as [`ApiError`]s.

mod auth;
mod json;
mod query;

pub use auth::Caller;
pub use json::ApiJson;
pub use query::ApiQuery;
