//! The public API's wire types: what clients send and receive on `/v1`, one file per resource.
//!
//! These are the only types of the control plane that derive `Serialize` and `Deserialize` for
//! the public API, and they carry the OpenAPI schema (`ToSchema`) that `/v1/openapi.json` serves.
//! Request types deny unknown fields: on the public API a typo should be an error, not a silently
//! ignored option.

pub mod agents;
pub mod api_keys;
pub mod credentials;
pub mod events;
pub mod files;
pub mod messages;
pub mod organizations;
pub mod sessions;
pub mod source_snapshots;
pub mod transcript;

use serde::Serialize;
use utoipa::ToSchema;

/// Every error response: `{"detail": "…"}`, as Dari's API answers, with `errors` listing the
/// problems one by one when there are several (a manifest's diagnostics).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<serde_json::Value>>,
}

/// A time as the API shows it: RFC 3339 in UTC with milliseconds.
pub fn timestamp(millis: i64) -> String {
    let millis = u64::try_from(millis).unwrap_or(0);
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis)).to_string()
}

pub fn optional_timestamp(millis: Option<i64>) -> Option<String> {
    millis.map(timestamp)
}
