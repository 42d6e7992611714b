//! Messages: one user turn each, with the assistant's turn in `output`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::sessions::CreateSession;

/// A block of a user message's content.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContentBlock {
    Text {
        text: String,
    },
    /// A file uploaded with `POST /v1/files`, by id.
    File {
        file_id: String,
    },
    /// An image uploaded with `POST /v1/files`, by id.
    Image {
        file_id: String,
    },
}

/// The body of `POST /v1/agents/{agent_id}/messages`: a new session and its first message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendAgentMessage {
    /// `user.message`
    #[serde(rename = "type")]
    pub event_type: String,
    pub content: Vec<ContentBlock>,
    /// Attached to the message: a JSON object of at most 16 KiB.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// The session to create; every field optional.
    #[serde(default)]
    pub session: Option<CreateSession>,
}

/// A message: the user's turn (`parts`) and the assistant's (`output`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    /// `msg_…`
    pub id: String,
    pub session_id: String,
    /// 1, 2, 3, … within the session.
    pub sequence_number: i64,
    /// The user's content blocks.
    pub parts: Vec<Value>,
    pub metadata: Value,
    /// `queued`, `running`, `waiting_for_tool`, `completed` or `failed`.
    pub status: String,
    /// The attempt the message is on, from 1.
    pub attempt: i64,
    pub output: MessageOutput,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
}

/// The assistant's turn: text, tool calls and tool results in order, and the error of a failed
/// message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageOutput {
    pub parts: Vec<Value>,
    pub error: Option<MessageError>,
    /// The tokens the turn's model calls used (`input_tokens`, `output_tokens`,
    /// `cache_read_tokens`, `cache_write_tokens`, `total_tokens`, and `cost_usd` where the
    /// provider reports a cost). Absent for harnesses that do not count them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub usage: Option<Value>,
}

/// Why a message failed: the real reason, from the runtime, the sandbox or the model provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageError {
    /// Stable and machine-readable: `runtime_http_error`, `runtime_timeout`, `runtime_crashed`,
    /// `runtime_unhealthy`, `runtime_bad_response`, `sandbox_lost`, `sandbox_setup_failed`, ….
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    /// What the cause left behind: an HTTP status and body excerpt, the runtime's recent log
    /// lines, an exit code.
    pub details: Value,
}

/// A page of a session's messages, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<Message>,
    /// True when more messages follow: ask again with `after=next_cursor`.
    pub has_more: bool,
    /// The id of the last message of this page, when more follow.
    pub next_cursor: Option<String>,
}
