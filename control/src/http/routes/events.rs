//! A session's ledger: `POST /v1/sessions/{session_id}/events` (a user message, or a tool's
//! result) and `GET /v1/sessions/{session_id}/events` (pages of events, oldest first).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dari_protocol::manifest::Manifest;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::events::{Event, EventAccepted, EventList, SendEvent};
use crate::api::messages::ContentBlock;
use crate::api::{ErrorBody, timestamp};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery, Caller};
use crate::ids::{looks_like, prefix};
use crate::persistence::{
    Actor, Appended, EventRecord, FileBlock, FileReferenceError, Idempotency, LedgerError, NewToolResult,
    NewUserMessage, event_id, event_type,
};

use super::messages::message;
use super::pages::{self, PageQuery};
use super::sessions::{find, session};

/// The event types a client may send.
const ACCEPTED_TYPES: &str = "user.message, tool.result_submitted";
pub(super) const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const MAX_CONTENT_BLOCKS: usize = 256;
const MAX_MESSAGE_METADATA_BYTES: usize = 16 * 1024;
const MAX_TOOL_CALL_ID_LEN: usize = 256;

#[utoipa::path(post, path = "/v1/sessions/{session_id}/events", operation_id = "send_session_event", tag = "sessions",
    params(("session_id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "the same key and body return the first write's event instead of writing again")),
    request_body = SendEvent,
    responses((status = 202, body = EventAccepted), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the Idempotency-Key was used with another body, or the tool call is not waiting for a result"),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn send(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SendEvent>,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let request_sha256 = hex::encode(Sha256::digest(serde_json::to_vec(&request).map_err(anyhow::Error::from)?));
    let idempotency = key.as_deref().map(|key| Idempotency { key, request_sha256: &request_sha256 });
    let actor = Actor::user(&caller.org_id);
    let appended = match request.event_type.as_str() {
        event_type::USER_MESSAGE => {
            refuse_fields(&request, &[("message_id", request.message_id.is_some()), ("tool_call_id", request.tool_call_id.is_some()), ("result", request.result.is_some()), ("is_error", request.is_error.is_some())])?;
            let content = request.content.as_deref().ok_or_else(|| {
                ApiError::unprocessable("content: a user.message needs content, e.g. [{\"type\": \"text\", \"text\": \"hello\"}]")
            })?;
            let (content, metadata) = user_message(&state, &caller, content, request.metadata.as_ref()).await?;
            let new = NewUserMessage { content: &content, metadata: &metadata, actor: &actor, idempotency };
            state.store.send_user_message(&caller.org_id, &session_id, &new).await
        }
        event_type::TOOL_RESULT_SUBMITTED => {
            refuse_fields(&request, &[("content", request.content.is_some()), ("metadata", request.metadata.is_some())])?;
            let message_id = required(request.message_id.as_deref(), "message_id")?;
            let tool_call_id = required(request.tool_call_id.as_deref(), "tool_call_id")?;
            if tool_call_id.len() > MAX_TOOL_CALL_ID_LEN {
                return Err(ApiError::unprocessable(format!("tool_call_id: at most {MAX_TOOL_CALL_ID_LEN} bytes")));
            }
            let is_error = request.is_error.unwrap_or(false);
            let result = match (&request.result, is_error) {
                (Some(result), _) => result,
                (None, true) => &Value::Null,
                (None, false) => {
                    return Err(ApiError::unprocessable(
                        "result: a successful tool.result_submitted needs the tool's result (any JSON); send is_error: true for a failure",
                    ));
                }
            };
            if !is_error {
                check_output_schema(&state, &caller, &session_id, tool_call_id, result).await?;
            }
            let new = NewToolResult { message_id, tool_call_id, result, is_error, actor: &actor, idempotency };
            state.store.submit_tool_result(&caller.org_id, &session_id, &new).await
        }
        other => {
            return Err(ApiError::unprocessable(format!(
                "type: {other:?} is not an event type clients may send; send one of: {ACCEPTED_TYPES}"
            )));
        }
    }
    .map_err(ledger_error)?;
    Ok(accepted(&state, appended))
}

#[utoipa::path(get, path = "/v1/sessions/{session_id}/events", operation_id = "list_session_events", tag = "sessions",
    params(("session_id" = String, Path), PageQuery),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<EventList>> {
    find(&state, &caller, &session_id).await?;
    let after = match &page.after {
        Some(cursor) => event_cursor(&session_id, cursor, "after")?,
        None => 0,
    };
    let limit = pages::limit(page.limit)?;
    let page = state.store.list_events(&caller.org_id, &session_id, after, limit).await?;
    let next_cursor = match page.items.last() {
        Some(last) => Some(last.public_id()),
        None if after > 0 => Some(event_id(&session_id, after)),
        None => None,
    };
    Ok(Json(EventList { events: page.items.into_iter().map(event).collect(), has_more: page.has_more, next_cursor }))
}

/// A position in a session's ledger: an event id (`{session_id}:evt_N`) or a sequence number.
pub(super) fn event_cursor(session_id: &str, cursor: &str, field: &str) -> ApiResult<i64> {
    let number = match cursor.rsplit_once(":evt_") {
        Some((cursor_session, number)) if cursor_session == session_id => number,
        Some((cursor_session, _)) => {
            return Err(ApiError::BadRequest(format!(
                "{field}: event {cursor:?} is of session {cursor_session}, not {session_id}"
            )));
        }
        None => cursor,
    };
    number.parse::<i64>().ok().filter(|number| *number >= 0).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{field}: {cursor:?} is neither an event id ({session_id}:evt_N) nor a sequence number"
        ))
    })
}

pub(super) fn event(record: EventRecord) -> Event {
    Event {
        id: record.public_id(),
        session_id: record.session_id,
        sequence_number: record.sequence_number,
        message_id: record.message_id,
        event_type: record.event_type,
        source: record.source,
        actor: record.actor,
        data: record.data,
        created_at: timestamp(record.created_at),
    }
}

/// Checks a user message's content and metadata: blocks well-formed, files the caller's own.
pub(super) async fn user_message(
    state: &AppState,
    caller: &Caller,
    content: &[ContentBlock],
    metadata: Option<&serde_json::Map<String, Value>>,
) -> ApiResult<(Value, Value)> {
    if content.is_empty() {
        return Err(ApiError::unprocessable(
            "content: send at least one block, e.g. {\"type\": \"text\", \"text\": \"hello\"}",
        ));
    }
    if content.len() > MAX_CONTENT_BLOCKS {
        return Err(ApiError::unprocessable(format!("content: at most {MAX_CONTENT_BLOCKS} blocks")));
    }
    for (index, block) in content.iter().enumerate() {
        let (file_id, kind) = match block {
            ContentBlock::Text { text } if text.is_empty() => {
                return Err(ApiError::unprocessable(format!("content[{index}].text: may not be empty")));
            }
            ContentBlock::Text { .. } => continue,
            ContentBlock::File { file_id } => (file_id, FileBlock::File),
            ContentBlock::Image { file_id } => (file_id, FileBlock::Image),
        };
        if !looks_like(file_id, prefix::FILE) {
            return Err(ApiError::unprocessable(format!(
                "content[{index}].file_id: {file_id:?} is not a file id; upload the file with POST /v1/files and send its id"
            )));
        }
        state.store.check_file_reference(&caller.org_id, file_id, kind).await.map_err(|error| match error {
            FileReferenceError::Database(error) => ApiError::Internal(error),
            refused => ApiError::unprocessable(format!("content[{index}].file_id: {refused}")),
        })?;
    }
    let metadata = Value::Object(metadata.cloned().unwrap_or_default());
    if metadata.to_string().len() > MAX_MESSAGE_METADATA_BYTES {
        return Err(ApiError::unprocessable(format!("metadata: over {MAX_MESSAGE_METADATA_BYTES} bytes as JSON")));
    }
    let content = serde_json::to_value(content).map_err(anyhow::Error::from)?;
    Ok((content, metadata))
}

/// The answer to a write: 202 with the event, message and session; the bus told first.
pub(super) fn accepted(state: &AppState, appended: Appended) -> Response {
    // A worker may claim the message now (a repeated write changes nothing, and waking is cheap).
    state.execution.wake.notify_one();
    if !appended.replayed {
        state.bus.notify(&appended.session.id, appended.session.last_event_sequence);
    }
    let replayed = appended.replayed;
    let body = EventAccepted {
        event: event(appended.event),
        message: message(appended.message),
        session: session(appended.session),
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

pub(super) fn ledger_error(error: LedgerError) -> ApiError {
    match error {
        LedgerError::SessionNotFound(_) | LedgerError::MessageNotFound(_) => ApiError::NotFound(error.to_string()),
        LedgerError::IdempotencyConflict { .. }
        | LedgerError::ToolCall(_)
        | LedgerError::InvalidTransition { .. }
        | LedgerError::SessionCompleted(_)
        | LedgerError::LeaseLost(_) => ApiError::Conflict(error.to_string()),
        LedgerError::Database(error) => ApiError::Internal(error),
    }
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else { return Ok(None) };
    let key = value.to_str().ok().map(str::trim).filter(|key| {
        !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN && key.bytes().all(|byte| byte.is_ascii_graphic())
    });
    match key {
        Some(key) => Ok(Some(key.to_owned())),
        None => Err(ApiError::BadRequest(format!(
            "Idempotency-Key: use 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters, e.g. a UUID"
        ))),
    }
}

fn refuse_fields(request: &SendEvent, fields: &[(&str, bool)]) -> ApiResult<()> {
    match fields.iter().find(|(_, present)| *present) {
        Some((field, _)) => Err(ApiError::unprocessable(format!("{field}: not a field of {}", request.event_type))),
        None => Ok(()),
    }
}

fn required<'a>(value: Option<&'a str>, field: &str) -> ApiResult<&'a str> {
    value.filter(|value| !value.is_empty()).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "{field}: required for tool.result_submitted; copy it from the tool.call_requested event"
        ))
    })
}

/// A successful result must match the external tool's `output_schema`, when it has one.
async fn check_output_schema(
    state: &AppState,
    caller: &Caller,
    session_id: &str,
    tool_call_id: &str,
    result: &Value,
) -> ApiResult<()> {
    let Some(tool_name) = state.store.open_tool_call_name(&caller.org_id, session_id, tool_call_id).await? else {
        // The store explains a tool call it does not know, or that has its result.
        return Ok(());
    };
    let Some(session) = state.store.session(&caller.org_id, session_id).await? else { return Ok(()) };
    let Some(version) = state.store.version(&caller.org_id, &session.version_id).await? else { return Ok(()) };
    let manifest: Manifest = serde_json::from_str(&version.manifest).map_err(anyhow::Error::from)?;
    let Some(schema) =
        manifest.custom_tools.iter().find(|tool| tool.name == tool_name).and_then(|tool| tool.output_schema.as_ref())
    else {
        return Ok(());
    };
    let validator = jsonschema::validator_for(schema)
        .map_err(|error| anyhow::anyhow!("compile the output schema of tool {tool_name}: {error}"))?;
    let problems: Vec<String> = validator
        .iter_errors(result)
        .take(10)
        .map(|error| {
            let path = error.instance_path().to_string();
            format!("{}: {error}", if path.is_empty() { "result" } else { &path })
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(ApiError::unprocessable(format!(
        "result: does not match the output_schema of tool {tool_name}: {}; fix the result, or send is_error: true with a message",
        problems.join("; ")
    )))
}
