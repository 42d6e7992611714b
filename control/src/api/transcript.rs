//! A session's transcript: the ledger shaped for a chat view.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::agents::Agent;
use super::sessions::Session;

#[derive(Debug, Serialize, ToSchema)]
pub struct Transcript {
    pub agent: Agent,
    pub session: Session,
    pub timeline: Timeline,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Timeline {
    pub items: Vec<TimelineItem>,
}

/// One entry of the timeline. `id` is the id of the ledger event the entry comes from (for an
/// assistant message: the event that set its current status).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimelineItem {
    UserMessage {
        id: String,
        message_id: String,
        created_at: String,
        content: Value,
    },
    AssistantMessage {
        id: String,
        message_id: String,
        created_at: String,
        /// `queued`, `running`, `waiting_for_tool`, `completed` or `failed`.
        status: String,
        /// Empty until the assistant's message completes.
        content: Vec<Value>,
        error_message: Option<String>,
    },
    ToolCall {
        id: String,
        message_id: String,
        created_at: String,
        tool_call_id: String,
        tool_name: String,
        arguments: Value,
        /// `requested`, `running`, `completed` or `failed`.
        status: String,
        result: Option<Value>,
        is_error: Option<bool>,
        completed_at: Option<String>,
    },
}
