//! A scriptable fake of the model providers, for end-to-end tests and benchmarks: one small axum
//! server on `127.0.0.1:0` that speaks both real streaming wire formats, OpenAI's chat
//! completions (`POST …/chat/completions`, any prefix) and Anthropic's messages
//! (`POST /v1/messages`), answers each model request with the next scripted [`Reply`] in the
//! called format, and records every request it gets.
//!
//! ```ignore
//! let fake = FakeLlm::start().await;
//! fake.push(Reply::tool_calls([ScriptedToolCall::new("call_1", "bash", &json!({"command": "ls"}))]));
//! fake.push(Reply::text("Done."));
//! // ... run an agent with base URL fake.openai_base_url() (or fake.anthropic_base_url()) ...
//! let requests = fake.wait_for_requests(2).await;
//! assert_eq!(requests[1].tool_result_texts(), ["README.md\n"]);
//! ```
//!
//! Streams go out frame by frame, as a provider's do (`wire.rs`, `openai.rs`, `anthropic.rs`);
//! `respond.rs` adds the faults a script asks for (bad JSON, a cut connection, a hang, a gate).
//! Claude Code's other calls (`HEAD /`, `count_tokens`, `GET /v1/models`) get minimal answers
//! and anything else a 404; they are recorded too, but are no model requests: they take no
//! reply ([`FakeLlm::all_requests`] lists them).
//!
//! Each record carries when the request came and when its answer went out, so that a benchmark
//! can tell the fake's own time from its client's (`tests/src/bench/pi.rs`).

mod anthropic;
mod openai;
mod recorded;
mod respond;
mod script;
#[cfg(test)]
mod tests;
mod wire;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use self::recorded::{RecordedRequest, SentToolResult};
pub use self::script::{BROKEN_ANSWER_TEXT, Gate, Reply, ScriptedToolCall, ScriptedUsage, UNSCRIPTED_REPLY};

/// How long a test waits for requests to reach the fake, or for an answer to reach a gate,
/// before it fails: generous, since a model call may come after a sandbox boots.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A running fake; it stops when dropped, breaking off any answer it still holds.
pub struct FakeLlm {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<FakeState>,
}

/// Which provider API a request called, and so the format of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireFormat {
    /// Chat completions, as OpenAI, OpenRouter and compatible endpoints serve them.
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

#[derive(Debug)]
struct FakeState {
    script: Mutex<Script>,
    /// How many model requests have come, for [`FakeLlm::wait_for_requests`].
    model_requests: watch::Sender<usize>,
    /// Cancelled when the fake is dropped.
    stop: CancellationToken,
}

/// Where to note that the answer to one recorded request has gone out
/// ([`RecordedRequest::answered_at`]).
#[derive(Debug)]
struct AnswerMark {
    state: Arc<FakeState>,
    request_idx: usize,
}

#[derive(Debug, Default)]
struct Script {
    replies: VecDeque<Reply>,
    fallback: Option<Reply>,
    /// Every request, model requests or not, in order.
    requests: Vec<RecordedRequest>,
    n_model_requests: usize,
}

// === impl FakeLlm ===

impl FakeLlm {
    /// Binds a free port and serves both formats on it.
    pub async fn start() -> FakeLlm {
        let state = Arc::new(FakeState {
            script: Mutex::default(),
            model_requests: watch::Sender::new(0),
            stop: CancellationToken::new(),
        });
        let router = Router::new()
            .route("/", get(root))
            .route("/v1/messages", post(anthropic_messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/v1/models", get(models))
            .fallback(other)
            .with_state(state.clone());
        let url = crate::serve_fake(router, state.stop.clone()).await;
        FakeLlm { url, state }
    }

    /// The base URL an OpenAI client takes: `{url}/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.url)
    }

    /// The base URL an Anthropic client takes (`ANTHROPIC_BASE_URL`): `{url}`.
    pub fn anthropic_base_url(&self) -> String {
        self.url.clone()
    }

    /// Queues the answer to a model request: each request takes the next, in order, whichever
    /// format it calls.
    pub fn push(&self, reply: Reply) {
        self.state.script().replies.push_back(reply);
    }

    /// The answer to every model request that finds the queue empty, e.g. one instant answer
    /// for a benchmark. Without one such a request gets the text [`UNSCRIPTED_REPLY`].
    pub fn set_fallback(&self, reply: Reply) {
        self.state.script().fallback = Some(reply);
    }

    /// The model requests so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.script().requests.iter().filter(|request| request.format.is_some()).cloned().collect()
    }

    /// The model requests after the first `first`, in order: what came since a caller last
    /// looked, without copying every earlier request again.
    pub fn requests_since(&self, first: usize) -> Vec<RecordedRequest> {
        let script = self.state.script();
        script.requests.iter().filter(|request| request.format.is_some()).skip(first).cloned().collect()
    }

    /// Every request so far, in order, those that are no model requests included.
    pub fn all_requests(&self) -> Vec<RecordedRequest> {
        self.state.script().requests.clone()
    }

    /// Waits until at least `n` model requests have come and returns them all. Panics, listing
    /// what came, after [`PATIENCE`].
    pub async fn wait_for_requests(&self, n: usize) -> Vec<RecordedRequest> {
        let mut model_requests = self.state.model_requests.subscribe();
        let arrived = tokio::time::timeout(PATIENCE, model_requests.wait_for(|&count| count >= n)).await;
        if arrived.is_err() {
            panic!("the fake LLM got fewer than {n} model requests within {PATIENCE:?}: {:#?}", self.all_requests());
        }
        self.requests()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.state.stop.cancel();
    }
}

// === impl FakeState ===

impl FakeState {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, request: RecordedRequest) {
        self.script().requests.push(request);
    }

    /// Records a model request and takes its reply, its number (1 for the first) and its place
    /// among the records, under one lock so that the n-th request gets the n-th reply.
    fn take_turn(&self, request: RecordedRequest) -> (Reply, usize, usize) {
        let mut script = self.script();
        let request_idx = script.requests.len();
        script.requests.push(request);
        script.n_model_requests += 1;
        let number = script.n_model_requests;
        let reply = match script.replies.pop_front() {
            Some(reply) => reply,
            None => script.fallback.clone().unwrap_or_else(|| Reply::text(UNSCRIPTED_REPLY)),
        };
        drop(script);
        self.model_requests.send_replace(number);
        (reply, number, request_idx)
    }
}

// === impl AnswerMark ===

impl AnswerMark {
    /// Notes the time, once: the first mark of an answer is the one that counts.
    fn mark(&self) {
        let now = Instant::now();
        let mut script = self.state.script();
        if let Some(request) = script.requests.get_mut(self.request_idx) {
            request.answered_at.get_or_insert(now);
        }
    }
}

// === handlers ===

async fn anthropic_messages(
    State(state): State<Arc<FakeState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    model_request(&state, WireFormat::Anthropic, recorded(Method::POST, &uri, &headers, &body)).await
}

async fn model_request(state: &Arc<FakeState>, format: WireFormat, mut request: RecordedRequest) -> Response {
    request.format = Some(format);
    let (reply, number, request_idx) = state.take_turn(request.clone());
    let answered = AnswerMark { state: Arc::clone(state), request_idx };
    respond::respond(format, reply, &request, number, &state.stop, answered).await
}

/// `HEAD /` (and `GET /`): Claude Code checks that the endpoint answers before a run.
async fn root(State(state): State<Arc<FakeState>>, method: Method, uri: Uri, headers: HeaderMap) -> StatusCode {
    state.record(recorded(method, &uri, &headers, &Bytes::new()));
    StatusCode::OK
}

async fn count_tokens(State(state): State<Arc<FakeState>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request = recorded(Method::POST, &uri, &headers, &body);
    let input_tokens = request.body.to_string().len() / 4;
    state.record(request);
    axum::Json(json!({"input_tokens": input_tokens})).into_response()
}

async fn models(State(state): State<Arc<FakeState>>, uri: Uri, headers: HeaderMap) -> Response {
    state.record(recorded(Method::GET, &uri, &headers, &Bytes::new()));
    axum::Json(json!({"data": [], "has_more": false, "first_id": null, "last_id": null})).into_response()
}

/// Chat completions under any prefix (`/v1`, OpenRouter's `/api/v1`); anything else is a 404.
async fn other(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = recorded(method.clone(), &uri, &headers, &body);
    if method == Method::POST && request.path().ends_with("/chat/completions") {
        return model_request(&state, WireFormat::OpenAi, request).await;
    }
    state.record(request);
    let error = json!({"type": "error", "error": {"type": "not_found_error", "message": format!("{method} {uri} is not faked")}});
    (StatusCode::NOT_FOUND, axum::Json(error)).into_response()
}

/// A request as recorded, before it is known to be a model request.
fn recorded(method: Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> RecordedRequest {
    RecordedRequest {
        method: method.to_string(),
        uri: uri.to_string(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        format: None,
        received_at: Instant::now(),
        answered_at: None,
    }
}
