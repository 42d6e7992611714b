//! `GET /v1/sessions/{session_id}/transcript`: the session's ledger shaped for a chat view.
//!
//! The timeline is built from the ledger alone. Per message, in the order the messages were
//! sent: the user's message, the tool calls the agent made (with their results), then the
//! assistant's message, whose status and id come from the message's latest status event.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use crate::api::transcript::{Timeline, TimelineItem, Transcript};
use crate::api::{ErrorBody, timestamp};
use crate::http::AppState;
use crate::http::error::ApiResult;
use crate::http::extract::{BaseUrl, Caller};
use crate::persistence::{EventRecord, event_type};

use super::agents::{self, any_agent};
use super::sessions::{find, session};

/// How many events the transcript reads at a time.
const READ_BATCH: i64 = 1000;

#[utoipa::path(get, path = "/v1/sessions/{session_id}/transcript", operation_id = "get_session_transcript", tag = "sessions",
    params(("session_id" = String, Path)),
    responses((status = 200, body = Transcript), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base_url): BaseUrl,
    Path(session_id): Path<String>,
) -> ApiResult<Json<Transcript>> {
    let record = find(&state, &caller, &session_id).await?;
    let agent = any_agent(&state, &caller, &record.agent_id).await?;
    let mut builder = TimelineBuilder::default();
    let mut after = 0;
    loop {
        let page = state.store.list_events(&caller.org_id, &session_id, after, READ_BATCH).await?;
        after = page.items.last().map_or(after, |event| event.sequence_number);
        page.items.into_iter().for_each(|event| builder.add(event));
        if !page.has_more {
            break;
        }
    }
    Ok(Json(Transcript {
        agent: agents::agent(&base_url, agent),
        session: session(record),
        timeline: Timeline { items: builder.finish() },
    }))
}

/// The timeline's entries, gathered per message.
#[derive(Default)]
struct TimelineBuilder {
    /// Message ids in the order of their `user.message`.
    order: Vec<String>,
    messages: HashMap<String, MessageEntries>,
}

#[derive(Default)]
struct MessageEntries {
    user: Option<TimelineItem>,
    tool_calls: Vec<TimelineItem>,
    /// The event that last set the assistant message's status, and what it said.
    assistant: Option<Assistant>,
}

#[derive(Default)]
struct Assistant {
    event_id: String,
    created_at: i64,
    status: String,
    content: Vec<Value>,
    error_message: Option<String>,
}

impl TimelineBuilder {
    fn add(&mut self, event: EventRecord) {
        let Some(message_id) = event.message_id.clone() else { return };
        if !self.messages.contains_key(&message_id) {
            self.order.push(message_id.clone());
        }
        let entries = self.messages.entry(message_id.clone()).or_default();
        let id = event.public_id();
        let created_at = timestamp(event.created_at);
        let data = event.data;
        let text = |field: &str| data.get(field).and_then(Value::as_str).map(str::to_owned);
        match event.event_type.as_str() {
            event_type::USER_MESSAGE => {
                let content = data.get("content").cloned().unwrap_or(Value::Array(Vec::new()));
                entries.user = Some(TimelineItem::UserMessage { id, message_id, created_at, content });
            }
            event_type::MESSAGE_STATUS_CHANGED => {
                let assistant = entries.assistant.get_or_insert_with(Assistant::default);
                assistant.event_id = id;
                assistant.created_at = event.created_at;
                assistant.status = text("status").unwrap_or_default();
                if let Some(error) = text("error") {
                    assistant.error_message = Some(error);
                }
            }
            event_type::ASSISTANT_MESSAGE_COMPLETED => {
                let content = match data.get("content") {
                    Some(Value::Array(blocks)) => blocks.clone(),
                    _ => text("text")
                        .map(|text| vec![serde_json::json!({"type": "text", "text": text})])
                        .unwrap_or_default(),
                };
                let assistant = entries.assistant.get_or_insert_with(Assistant::default);
                assistant.content = content;
                if assistant.event_id.is_empty() {
                    (assistant.event_id, assistant.created_at, assistant.status) =
                        (id, event.created_at, "completed".to_owned());
                }
            }
            event_type::TOOL_CALL_REQUESTED | event_type::TOOL_CALL_STARTED => {
                entries.tool_calls.push(TimelineItem::ToolCall {
                    id,
                    message_id,
                    created_at,
                    tool_call_id: text("tool_call_id").unwrap_or_default(),
                    tool_name: text("tool_name").unwrap_or_default(),
                    arguments: data.get("arguments").cloned().unwrap_or(Value::Null),
                    // The sandbox runs a started call at once; a requested one waits for the client.
                    status: if event.event_type == event_type::TOOL_CALL_STARTED { "running" } else { "requested" }
                        .to_owned(),
                    result: None,
                    is_error: None,
                    completed_at: None,
                })
            }
            event_type::TOOL_RESULT_SUBMITTED | event_type::TOOL_CALL_COMPLETED | event_type::TOOL_CALL_FAILED => {
                let answered = text("tool_call_id");
                let failed = event.event_type == event_type::TOOL_CALL_FAILED
                    || data.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                for item in &mut entries.tool_calls {
                    if let TimelineItem::ToolCall { tool_call_id, status, result, is_error, completed_at, .. } = item
                        && Some(&*tool_call_id) == answered.as_ref()
                    {
                        *status = if failed { "failed" } else { "completed" }.to_owned();
                        *result = data.get("result").cloned();
                        *is_error = Some(failed);
                        *completed_at = Some(created_at.clone());
                    }
                }
            }
            _ => {}
        }
    }

    fn finish(mut self) -> Vec<TimelineItem> {
        let mut items = Vec::new();
        for message_id in self.order {
            let Some(entries) = self.messages.remove(&message_id) else { continue };
            items.extend(entries.user);
            items.extend(entries.tool_calls);
            if let Some(assistant) = entries.assistant {
                items.push(TimelineItem::AssistantMessage {
                    id: assistant.event_id,
                    message_id,
                    created_at: timestamp(assistant.created_at),
                    status: assistant.status,
                    content: assistant.content,
                    error_message: assistant.error_message,
                });
            }
        }
        items
    }
}
