//! Messages: `POST /v1/agents/{agent_id}/messages` (a new session and its first message, in one
//! write), `GET /v1/sessions/{session_id}/messages` and `GET /v1/messages/{message_id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::Value;

use crate::api::events::EventAccepted;
use crate::api::messages::{Message, MessageError, MessageList, MessageOutput, SendAgentMessage};
use crate::api::{ErrorBody, optional_timestamp, timestamp};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery, Caller};
use crate::persistence::{Actor, MessageRecord, NewUserMessage, event_type};

use super::events::{accepted, ledger_error, user_message};
use super::pages::{self, PageQuery};
use super::sessions::{find, plan_session};

#[utoipa::path(post, path = "/v1/agents/{agent_id}/messages", operation_id = "send_agent_message", tag = "sessions",
    params(("agent_id" = String, Path)), request_body = SendAgentMessage,
    responses((status = 202, body = EventAccepted), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the agent has no version"), (status = 422, body = ErrorBody)))]
pub(crate) async fn send_to_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path(agent_id): Path<String>,
    ApiJson(request): ApiJson<SendAgentMessage>,
) -> ApiResult<Response> {
    if request.event_type != event_type::USER_MESSAGE {
        return Err(ApiError::unprocessable(format!(
            "type: {:?} cannot start a session; send \"user.message\"",
            request.event_type
        )));
    }
    let (content, metadata) = user_message(&state, &caller, &request.content, request.metadata.as_ref()).await?;
    let plan = plan_session(&state, &caller, &agent_id, request.session.unwrap_or_default()).await?;
    let actor = Actor::user(&caller.org_id);
    let new_message = NewUserMessage { content: &content, metadata: &metadata, actor: &actor, idempotency: None };
    let appended = state
        .store
        .create_session_with_message(&plan.new_session(&caller.org_id), &new_message)
        .await
        .map_err(ledger_error)?;
    tracing::info!(org.id = %caller.org_id, session.id = %appended.session.id, agent.id = %agent_id, "created session with its first message");
    Ok(accepted(&state, appended))
}

#[utoipa::path(get, path = "/v1/sessions/{session_id}/messages", operation_id = "list_messages", tag = "sessions",
    params(("session_id" = String, Path), PageQuery),
    responses((status = 200, body = MessageList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<MessageList>> {
    find(&state, &caller, &session_id).await?;
    let after = match &page.after {
        None => 0,
        Some(cursor) => match state.store.message(&caller.org_id, cursor).await? {
            Some(message) if message.session_id == session_id => message.sequence_number,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "after: {cursor:?} is not a message of session {session_id}; pass the next_cursor of the previous page"
                )));
            }
        },
    };
    let limit = pages::limit(page.limit)?;
    let page = state.store.list_messages(&caller.org_id, &session_id, after, limit).await?;
    let next_cursor = if page.has_more { page.items.last().map(|message| message.id.clone()) } else { None };
    Ok(Json(MessageList {
        messages: page.items.into_iter().map(message).collect(),
        has_more: page.has_more,
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/messages/{message_id}", operation_id = "get_message", tag = "sessions",
    params(("message_id" = String, Path)),
    responses((status = 200, body = Message), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(message_id): Path<String>,
) -> ApiResult<Json<Message>> {
    let record = state
        .store
        .message(&caller.org_id, &message_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("message {message_id} not found")))?;
    Ok(Json(message(record)))
}

pub(super) fn message(record: MessageRecord) -> Message {
    let output_parts = match record.output.get("parts") {
        Some(Value::Array(parts)) => parts.clone(),
        _ => Vec::new(),
    };
    let error = match record.output.get("error") {
        None | Some(Value::Null) => None,
        Some(Value::String(message)) => {
            Some(MessageError { kind: "error".to_owned(), message: message.clone(), details: Value::Null })
        }
        Some(error) => Some(MessageError {
            kind: error["type"].as_str().unwrap_or("error").to_owned(),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
            details: error.get("details").cloned().unwrap_or(Value::Null),
        }),
    };
    Message {
        id: record.id,
        session_id: record.session_id,
        sequence_number: record.sequence_number,
        parts: match record.parts {
            Value::Array(parts) => parts,
            other => vec![other],
        },
        metadata: record.metadata,
        status: record.status.as_str().to_owned(),
        attempt: record.attempt,
        output: MessageOutput { parts: output_parts, error, usage: record.output.get("usage").cloned() },
        created_at: timestamp(record.created_at),
        started_at: optional_timestamp(record.started_at),
        completed_at: optional_timestamp(record.completed_at),
    }
}
