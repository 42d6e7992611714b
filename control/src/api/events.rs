//! Ledger events: what happened in a session, in order.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::messages::{ContentBlock, Message};
use super::sessions::Session;

/// The body of `POST /v1/sessions/{session_id}/events`. Which fields apply depends on `type`:
/// `user.message` takes `content` and `metadata`; `tool.result_submitted` takes `message_id`,
/// `tool_call_id`, `result` and `is_error`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendEvent {
    /// `user.message` or `tool.result_submitted`.
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<ContentBlock>>,
    /// Attached to the message: a JSON object of at most 16 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The tool's result, any JSON (`null` included); required unless `is_error` is true.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

/// A field that is present, even as `null`, is `Some`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// One ledger event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    /// `{session_id}:evt_{sequence_number}`
    pub id: String,
    pub session_id: String,
    /// 1, 2, 3, … within the session, without gaps.
    pub sequence_number: i64,
    pub message_id: Option<String>,
    /// `user.message`, `message.status_changed`, `session.status_changed`,
    /// `tool.call_requested`, `tool.result_submitted`, …
    #[serde(rename = "type")]
    pub event_type: String,
    /// `user`, `agent` or `system`.
    pub source: String,
    /// `{"type", "id"}`: who wrote the event.
    #[schema(value_type = Object)]
    pub actor: Value,
    /// The type's payload (docs/sessions.md).
    #[schema(value_type = Object)]
    pub data: Value,
    pub created_at: String,
}

/// A page of a session's events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<Event>,
    /// True when more events follow already.
    pub has_more: bool,
    /// Where to continue: the id of this page's last event (or the `after` given, when the page
    /// is empty; `null` when the session has no event yet). Pass it as `after`.
    pub next_cursor: Option<String>,
}

/// The answer to a write to the ledger: the recorded event, the message it concerns, and the
/// session after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventAccepted {
    pub event: Event,
    pub message: Message,
    pub session: Session,
}
