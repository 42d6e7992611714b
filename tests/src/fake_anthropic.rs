//! A fake of Anthropic's Messages API, as Claude Code calls it with `ANTHROPIC_BASE_URL` set: a
//! small axum server on `127.0.0.1:0` that answers each `POST /v1/messages` with the next
//! scripted text and records every request it gets (method, path with query, headers, body).
//!
//! ```ignore
//! let fake = FakeAnthropic::start().await;
//! fake.reply("I will remember abc123.");
//! // ... run something with ANTHROPIC_BASE_URL = fake.url ...
//! let requests = fake.message_requests();
//! assert_eq!(requests[0].header("x-api-key"), Some("sk-test-…"));
//! ```
//!
//! What Claude Code (2.1) asks of it, with `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`: a
//! `HEAD /` before each run (a reachability check), then `POST /v1/messages?beta=true` with
//! `stream: true`, answered with the real event sequence (`message_start`, `ping`,
//! `content_block_start`, `content_block_delta` of a `text_delta`, `content_block_stop`,
//! `message_delta` with the stop reason and usage, `message_stop`). Without `stream` the answer is
//! one JSON message. `POST /v1/messages/count_tokens` and `GET /v1/models` get minimal answers;
//! anything else a 404 in the API's error shape, recorded like the rest so a test can see it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The text of an answer when no reply is scripted: visible in a failing test's output.
pub const UNSCRIPTED_REPLY: &str = "(the fake Anthropic API has no scripted reply left)";

/// A running fake; it stops when dropped.
pub struct FakeAnthropic {
    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub url: String,
    state: Arc<FakeState>,
    stop: CancellationToken,
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The path with its query, e.g. `/v1/messages?beta=true`.
    pub uri: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The JSON body; `Value::Null` when empty or not JSON.
    pub body: Value,
}

#[derive(Debug, Default)]
struct FakeState {
    replies: Mutex<VecDeque<String>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

impl FakeAnthropic {
    pub async fn start() -> FakeAnthropic {
        let state = Arc::new(FakeState::default());
        let router = Router::new()
            .route("/", get(root))
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/v1/models", get(models))
            .fallback(not_found)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Anthropic API");
        let url = format!("http://{}", listener.local_addr().expect("a local address"));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).with_graceful_shutdown(stopped.cancelled_owned()).await;
        });
        FakeAnthropic { url, state, stop }
    }

    /// Queues the text of the next answer to `POST /v1/messages`.
    pub fn reply(&self, text: &str) {
        lock(&self.state.replies).push_back(text.to_owned());
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// The `POST /v1/messages` requests so far (the model calls), in order.
    pub fn message_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|request| request.method == "POST" && request.path() == "/v1/messages")
            .collect()
    }
}

impl RecordedRequest {
    /// The path without its query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The texts of the request's messages, as `(role, text)`, every text block of each.
    pub fn message_texts(&self) -> Vec<(String, String)> {
        let mut texts = Vec::new();
        for message in self.body["messages"].as_array().into_iter().flatten() {
            let role = message["role"].as_str().unwrap_or_default().to_owned();
            match &message["content"] {
                Value::String(text) => texts.push((role, text.clone())),
                Value::Array(blocks) => texts.extend(
                    blocks
                        .iter()
                        .filter_map(|block| block["text"].as_str())
                        .map(|text| (role.clone(), text.to_owned())),
                ),
                _ => {}
            }
        }
        texts
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn messages(State(state): State<Arc<FakeState>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request = record(&state, &Method::POST, &uri, &headers, &body);
    let text = lock(&state.replies).pop_front().unwrap_or_else(|| UNSCRIPTED_REPLY.to_owned());
    let model = request.body["model"].as_str().unwrap_or("claude-fake").to_owned();
    let id = format!("msg_fake_{}", lock(&state.requests).len());
    let input_tokens = request.body.to_string().len() / 4;
    let output_tokens = text.split_whitespace().count().max(1);
    if request.body["stream"] != Value::Bool(true) {
        let message = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": usage(input_tokens, output_tokens),
        });
        return axum::Json(message).into_response();
    }
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": usage(input_tokens, 1),
            }}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"output_tokens": output_tokens}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let stream: String = events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect();
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], stream).into_response()
}

/// `HEAD /` (and `GET /`): Claude Code checks that the endpoint answers before a run.
async fn root(State(state): State<Arc<FakeState>>, method: Method, uri: Uri, headers: HeaderMap) -> StatusCode {
    record(&state, &method, &uri, &headers, &Bytes::new());
    StatusCode::OK
}

async fn count_tokens(State(state): State<Arc<FakeState>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request = record(&state, &Method::POST, &uri, &headers, &body);
    axum::Json(json!({"input_tokens": request.body.to_string().len() / 4})).into_response()
}

async fn models(State(state): State<Arc<FakeState>>, uri: Uri, headers: HeaderMap) -> Response {
    record(&state, &Method::GET, &uri, &headers, &Bytes::new());
    axum::Json(json!({"data": [], "has_more": false, "first_id": null, "last_id": null})).into_response()
}

async fn not_found(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, &method, &uri, &headers, &body);
    let error = json!({"type": "error", "error": {"type": "not_found_error", "message": format!("{method} {} is not faked", uri)}});
    (StatusCode::NOT_FOUND, axum::Json(error)).into_response()
}

fn record(state: &FakeState, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> RecordedRequest {
    let request = RecordedRequest {
        method: method.to_string(),
        uri: uri.to_string(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    };
    lock(&state.requests).push(request.clone());
    request
}

fn usage(input_tokens: usize, output_tokens: usize) -> Value {
    json!({"input_tokens": input_tokens, "output_tokens": output_tokens,
           "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
