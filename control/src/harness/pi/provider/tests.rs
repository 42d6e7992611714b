//! Whole calls against a fake provider: a tiny axum server on 127.0.0.1 that records each request
//! and gives the answer the test chose.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::harness::pi::model::{ApiKey, Entry};

const KEY: &str = "sk-test-key-0123456789";

/// What the fake answers, once.
type Respond = Box<dyn FnOnce() -> Response + Send>;

/// One request the fake received.
struct Recorded {
    path: String,
    headers: HeaderMap,
    body: Value,
}

struct FakeProvider {
    base_url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    server: JoinHandle<()>,
}

impl FakeProvider {
    async fn start(respond: impl FnOnce() -> Response + Send + 'static) -> FakeProvider {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Mutex<Option<Respond>>> = Arc::new(Mutex::new(Some(Box::new(respond))));
        let recorded = Arc::clone(&requests);
        let app = Router::new().fallback(move |request: Request| {
            let (recorded, respond) = (Arc::clone(&recorded), Arc::clone(&respond));
            async move {
                let path = request.uri().path().to_owned();
                let headers = request.headers().clone();
                let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.expect("a request body");
                let body = serde_json::from_slice(&body).expect("a JSON request");
                recorded.lock().expect("not poisoned").push(Recorded { path, headers, body });
                let respond = respond.lock().expect("not poisoned").take().expect("one request per test");
                respond()
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let base_url = format!("http://{}", listener.local_addr().expect("a bound address"));
        let server = tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        FakeProvider { base_url, requests, server }
    }

    fn endpoint(&self, provider: LlmProvider) -> Endpoint {
        let base_url = match provider {
            LlmProvider::Anthropic => self.base_url.clone(),
            LlmProvider::Openai | LlmProvider::Openrouter => format!("{}/v1", self.base_url),
        };
        Endpoint { provider, base_url, api_key: ApiKey::new(KEY) }
    }

    fn request(&self) -> Recorded {
        self.requests.lock().expect("not poisoned").pop().expect("a request")
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn sse(body: impl Into<Body>) -> Response {
    Response::builder().header("content-type", "text/event-stream").body(body.into()).expect("a response")
}

fn status(status: StatusCode, headers: &[(&str, &str)], body: &'static str) -> Response {
    let mut response = Response::builder().status(status).header("content-type", "application/json");
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(Body::from(body)).expect("a response")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("a client")
}

fn conversation() -> Vec<Entry> {
    vec![Entry::user_text("Hi")]
}

fn model_request(entries: &[Entry]) -> ModelRequest<'_> {
    ModelRequest { model: "test-model", system: "Be brief.", entries, tools: &[], max_tokens: 100 }
}

/// Calls `endpoint` with the default limits, collecting what streamed.
async fn call(endpoint: &Endpoint) -> (Vec<StreamEvent>, Result<AssistantTurn, ModelError>) {
    let config = StreamConfig { idle_timeout: DEFAULT_IDLE_TIMEOUT, max_event_bytes: DEFAULT_MAX_EVENT_BYTES };
    call_with(endpoint, &config, |_| {}).await
}

async fn call_with(
    endpoint: &Endpoint,
    config: &StreamConfig,
    mut also: impl FnMut(&StreamEvent) + Send,
) -> (Vec<StreamEvent>, Result<AssistantTurn, ModelError>) {
    let entries = conversation();
    let mut events = Vec::new();
    let mut on_event = |event: StreamEvent| {
        also(&event);
        events.push(event);
    };
    let http = client();
    let result = require_send(stream_with(&http, endpoint, &model_request(&entries), config, &mut on_event)).await;
    (events, result)
}

/// The harness runs calls in spawned tasks: the future must be `Send`.
fn require_send<F: Future + Send>(future: F) -> F {
    future
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn openai_is_called_with_a_bearer_key_and_its_stream_decoded() {
    let answer =
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let fake = FakeProvider::start(move || sse(answer)).await;
    let (events, turn) = call(&fake.endpoint(LlmProvider::Openai)).await;
    assert_eq!(turn.expect("an answer").text(), "Hello");
    assert_eq!(events, [StreamEvent::TextDelta("Hello".to_owned())]);
    let request = fake.request();
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(header(&request.headers, "authorization"), format!("Bearer {KEY}"));
    assert_eq!(header(&request.headers, "content-type"), "application/json");
    assert_eq!(request.body["model"], "test-model");
    assert_eq!(request.body["messages"][1], json!({ "role": "user", "content": "Hi" }));
}

#[tokio::test]
async fn anthropic_is_called_with_its_key_and_version_headers() {
    let answer = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude\",\"usage\":{\"input_tokens\":3}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi!\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let fake = FakeProvider::start(move || sse(answer)).await;
    let turn = call(&fake.endpoint(LlmProvider::Anthropic)).await.1.expect("an answer");
    assert_eq!((turn.text().as_str(), turn.usage.input_tokens, turn.usage.output_tokens), ("Hi!", 3, 2));
    let request = fake.request();
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(header(&request.headers, "x-api-key"), KEY);
    assert_eq!(header(&request.headers, "anthropic-version"), "2023-06-01");
    assert_eq!(header(&request.headers, "authorization"), "");
    assert_eq!(request.body["max_tokens"], 100);
}

#[tokio::test]
async fn a_429_is_rate_limited_for_as_long_as_retry_after_says() {
    let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit"}}"#;
    let fake = FakeProvider::start(move || status(StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "17")], body)).await;
    let error = call(&fake.endpoint(LlmProvider::Anthropic)).await.1.expect_err("rate limited");
    assert_eq!(error.kind, ModelErrorKind::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(17)));
    assert_eq!(error.status, Some(429));
    assert_eq!(
        error.message,
        "the Anthropic-compatible endpoint returned 429 Too Many Requests: Number of requests has exceeded your rate limit"
    );
    assert_eq!(error.body.as_deref(), Some(body));
}

#[tokio::test]
async fn a_401_says_what_the_provider_said_and_never_the_key() {
    let body = r#"{"error":{"message":"Incorrect API key provided: sk-test-key-0123456789.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    let fake = FakeProvider::start(move || status(StatusCode::UNAUTHORIZED, &[], body)).await;
    let error = call(&fake.endpoint(LlmProvider::Openai)).await.1.expect_err("refused");
    assert_eq!(error.kind, ModelErrorKind::Rejected);
    assert_eq!(error.status, Some(401));
    assert_eq!(
        error.message,
        "the OpenAI-compatible endpoint returned 401 Unauthorized: Incorrect API key provided: [redacted]."
    );
    assert!(!format!("{error:?}").contains(KEY), "{error:?}");
}

#[tokio::test]
async fn a_connection_cut_mid_stream_is_a_connection_error() {
    let (text_seen, text_seen_rx) = oneshot::channel::<()>();
    let fake = FakeProvider::start(move || {
        let start = Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n");
        // The server fails its body (hyper drops the connection) once the client has the text.
        let cut = stream::once(async move {
            let _ = text_seen_rx.await;
            Err(std::io::Error::other("cut"))
        });
        sse(Body::from_stream(stream::iter([Ok(start)]).chain(cut)))
    })
    .await;
    let config = StreamConfig { idle_timeout: DEFAULT_IDLE_TIMEOUT, max_event_bytes: DEFAULT_MAX_EVENT_BYTES };
    let mut text_seen = Some(text_seen);
    let notify = move |_: &StreamEvent| {
        if let Some(text_seen) = text_seen.take() {
            let _ = text_seen.send(());
        }
    };
    let (events, result) = call_with(&fake.endpoint(LlmProvider::Openrouter), &config, notify).await;
    assert_eq!(events, [StreamEvent::TextDelta("Hel".to_owned())]);
    let error = result.expect_err("cut");
    assert_eq!(error.kind, ModelErrorKind::Connection, "{error:?}");
    assert!(error.message.starts_with("the connection to the OpenAI-compatible endpoint broke: "), "{}", error.message);
}

#[tokio::test]
async fn a_stream_that_goes_quiet_times_out() {
    let fake = FakeProvider::start(|| {
        let start = Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n");
        sse(Body::from_stream(stream::iter([Ok::<_, std::io::Error>(start)]).chain(stream::pending())))
    })
    .await;
    let config = StreamConfig { idle_timeout: Duration::from_millis(200), max_event_bytes: DEFAULT_MAX_EVENT_BYTES };
    let (events, result) = call_with(&fake.endpoint(LlmProvider::Openai), &config, |_| {}).await;
    assert_eq!(events.len(), 1);
    let error = result.expect_err("timed out");
    assert_eq!(error.kind, ModelErrorKind::Timeout);
    assert_eq!(error.message, "the OpenAI-compatible endpoint sent nothing for 200ms");
}

#[tokio::test]
async fn an_endpoint_nobody_listens_on_is_a_connection_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    let address = listener.local_addr().expect("a bound address");
    drop(listener);
    let endpoint =
        Endpoint { provider: LlmProvider::Openai, base_url: format!("http://{address}/v1"), api_key: ApiKey::new(KEY) };
    let error = call(&endpoint).await.1.expect_err("refused");
    assert_eq!(error.kind, ModelErrorKind::Connection);
    assert!(error.message.starts_with("could not reach the OpenAI-compatible endpoint: "), "{}", error.message);
    assert!(!error.message.contains("127.0.0.1"), "the URL is left out: {}", error.message);
}

#[tokio::test]
async fn an_error_sent_as_json_with_a_200_is_still_an_error() {
    let body = r#"{"error":{"message":"model 'x' not found","code":404}}"#;
    let fake = FakeProvider::start(move || status(StatusCode::OK, &[], body)).await;
    let error = call(&fake.endpoint(LlmProvider::Openai)).await.1.expect_err("not found");
    assert_eq!(error.kind, ModelErrorKind::Rejected);
    assert_eq!(error.message, "the OpenAI-compatible endpoint reported an error: model 'x' not found");
}

#[test]
fn model_ids_lose_the_prefix_only_of_the_provider_they_go_to() {
    assert_eq!(upstream_model(LlmProvider::Openai, "openai/gpt-4.1", false), "gpt-4.1");
    assert_eq!(upstream_model(LlmProvider::Openai, "gpt-4.1", false), "gpt-4.1");
    assert_eq!(upstream_model(LlmProvider::Openai, "openai/gpt-4.1", true), "openai/gpt-4.1");
    assert_eq!(upstream_model(LlmProvider::Openai, "anthropic/claude", false), "anthropic/claude");
    assert_eq!(upstream_model(LlmProvider::Anthropic, "anthropic/claude-sonnet-4-6", false), "claude-sonnet-4-6");
    assert_eq!(
        upstream_model(LlmProvider::Anthropic, "anthropic/claude-sonnet-4-6", true),
        "anthropic/claude-sonnet-4-6"
    );
    assert_eq!(upstream_model(LlmProvider::Openrouter, "openai/gpt-4.1", false), "openai/gpt-4.1");
    assert_eq!(default_base_url(LlmProvider::Openrouter), "https://openrouter.ai/api/v1");
    let endpoint = |base_url: &str| Endpoint {
        provider: LlmProvider::Anthropic,
        base_url: base_url.to_owned(),
        api_key: ApiKey::new(KEY),
    };
    assert!(!is_custom_base_url(&endpoint("https://api.anthropic.com/")));
    assert!(is_custom_base_url(&endpoint("https://gateway.example/anthropic")));
}

#[test]
fn tool_arguments_that_are_not_json_are_kept_as_text() {
    assert_eq!(parse_tool_arguments(""), json!({}));
    assert_eq!(parse_tool_arguments("  "), json!({}));
    assert_eq!(parse_tool_arguments("{\"a\": 1}"), json!({ "a": 1 }));
    assert_eq!(parse_tool_arguments("{\"a\": "), json!("{\"a\": "));
}
