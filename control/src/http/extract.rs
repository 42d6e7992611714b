//! Extractors that every route shares: the caller's organization, and JSON bodies whose errors
//! read as [`ApiError`]s.

mod auth;
mod json;

pub use auth::Caller;
pub use json::ApiJson;
