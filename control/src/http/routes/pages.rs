//! Cursor pagination, shared by the lists: `limit` (default 100, at most 1000; 0 means the
//! default) and `after`, the `next_cursor` of the previous page.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::error::{ApiError, ApiResult};

pub(super) const DEFAULT_LIMIT: i64 = 100;
pub(super) const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// How many to return: 1 to 1000; default (or 0) 100.
    pub limit: Option<u32>,
    /// Continue after this cursor: the `next_cursor` of the previous page.
    pub after: Option<String>,
}

/// Where a stream starts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AfterQuery {
    /// Start after this event (an event id or a sequence number); `Last-Event-ID` wins when both
    /// are given. Default: the start of the ledger.
    pub after: Option<String>,
}

/// The page size a request asks for.
pub(super) fn limit(requested: Option<u32>) -> ApiResult<i64> {
    match requested.map(i64::from) {
        None | Some(0) => Ok(DEFAULT_LIMIT),
        Some(limit) if limit <= MAX_LIMIT => Ok(limit),
        Some(limit) => Err(ApiError::BadRequest(format!("limit: {limit} is over the maximum of {MAX_LIMIT}"))),
    }
}
