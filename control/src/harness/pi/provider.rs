//! Model providers: one streaming call to OpenAI's chat completions (OpenAI, OpenRouter and any
//! compatible endpoint) or Anthropic's messages API, turned into an [`AssistantTurn`].
//!
//! A call goes through the same steps for both wire formats: build the request from the
//! conversation (`openai`, `anthropic`), send it, map a refusal to a [`ModelError`] (`failure`),
//! then cut the body into Server-Sent Events (`sse`) and decode them one by one, reporting text
//! as it arrives, until the provider says the answer is complete.
//!
//! Tool-call arguments arrive as streamed JSON text. Text that is not valid JSON does not fail
//! the call: the call's `arguments` is then that text as a `Value::String`, so that the
//! harness's argument validation reports it to the model, which can try again.

mod anthropic;
mod failure;
mod openai;
mod sse;

use std::time::Duration;

use dari_protocol::manifest::LlmProvider;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use tokio::time::timeout;

pub use self::failure::is_context_overflow;
use self::failure::{http_error, quote, redact_error, stream_error, transport_error};
use self::sse::{SseEvent, SseParser};
use super::model::{AssistantTurn, Endpoint, ModelError, ModelErrorKind, ModelRequest, StreamEvent};

/// How long a call may wait for the next byte (of the headers or of the stream) before it gives
/// up with [`ModelErrorKind::Timeout`]. Long, since a model may think for a while before its first
/// token; providers send keep-alive comments on streams that stay quiet longer.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest Server-Sent Event a call accepts. A whole tool call's arguments fit in one event
/// from neither provider, so this bounds memory, not what a model may write.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const OPENROUTER_BASE_URL: &str = "https://openrouter.ai/api/v1";
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

/// How much of a refusal's body is read to find the provider's message.
const MAX_READ_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The limits of one streaming call.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`DEFAULT_MAX_EVENT_BYTES`].
    pub max_event_bytes: usize,
}

/// Calls the model once and streams its answer: `on_event` sees text as it arrives; the result
/// is the whole answer, or why there is none. Uses [`DEFAULT_IDLE_TIMEOUT`] and
/// [`DEFAULT_MAX_EVENT_BYTES`].
///
/// # Cancel safety
///
/// Dropping the future drops the connection, and with it the answer; nothing else is left behind.
pub async fn stream(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    request: &ModelRequest<'_>,
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<AssistantTurn, ModelError> {
    let config = StreamConfig { idle_timeout: DEFAULT_IDLE_TIMEOUT, max_event_bytes: DEFAULT_MAX_EVENT_BYTES };
    stream_with(http, endpoint, request, &config, on_event).await
}

/// [`stream`] with its limits chosen by the caller.
pub async fn stream_with(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    request: &ModelRequest<'_>,
    config: &StreamConfig,
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<AssistantTurn, ModelError> {
    let label = provider_label(endpoint);
    let result = match endpoint.provider {
        LlmProvider::Openai | LlmProvider::Openrouter => {
            let call = openai::call(endpoint, request);
            run(http, call, openai::Decoder::new(label, request.model), label, config, on_event).await
        }
        LlmProvider::Anthropic => {
            let call = anthropic::call(endpoint, request);
            run(http, call, anthropic::Decoder::new(label, request.model), label, config, on_event).await
        }
    };
    result.map_err(|error| redact_error(error, &endpoint.api_key))
}

/// The model id as `provider` expects it: `openai/gpt-4.1` is `gpt-4.1` to OpenAI itself and
/// `anthropic/claude-sonnet-4-6` is `claude-sonnet-4-6` to Anthropic itself, while OpenRouter and
/// custom base URLs (proxies, gateways) get the model as written.
pub fn upstream_model(provider: LlmProvider, model: &str, custom_base_url: bool) -> String {
    let prefix = match (provider, custom_base_url) {
        (LlmProvider::Openai, false) => "openai/",
        (LlmProvider::Anthropic, false) => "anthropic/",
        _ => return model.to_owned(),
    };
    model.strip_prefix(prefix).unwrap_or(model).to_owned()
}

/// Where `provider` is reached when the agent names no base URL.
pub fn default_base_url(provider: LlmProvider) -> &'static str {
    match provider {
        LlmProvider::Openai => OPENAI_BASE_URL,
        LlmProvider::Openrouter => OPENROUTER_BASE_URL,
        LlmProvider::Anthropic => ANTHROPIC_BASE_URL,
    }
}

/// Whether `endpoint` goes elsewhere than its provider's own API (a proxy, a gateway, a local
/// server speaking the same wire format).
pub fn is_custom_base_url(endpoint: &Endpoint) -> bool {
    endpoint.base_url.trim_end_matches('/') != default_base_url(endpoint.provider)
}

/// What to send: the request a wire format built from a [`ModelRequest`].
#[derive(Debug)]
struct HttpCall {
    url: String,
    /// Besides `content-type: application/json`.
    headers: Vec<(&'static str, String)>,
    body: Value,
}

/// Turns the events of one wire format's stream into an answer.
trait Decoder {
    /// Takes one event; returns whether the answer is complete (nothing more is read then).
    fn decode(&mut self, event: SseEvent, on_event: &mut dyn FnMut(StreamEvent)) -> Result<bool, ModelError>;

    /// The answer, once the stream is complete or has ended; or why there is none (it ended too
    /// soon, a tool call had no name).
    fn finish(self) -> Result<AssistantTurn, ModelError>;
}

/// Who answers, for messages: "OpenAI", or "the OpenAI-compatible endpoint" at a custom base URL
/// (whose URL is left out, as it may carry credentials).
fn provider_label(endpoint: &Endpoint) -> &'static str {
    match (endpoint.provider, is_custom_base_url(endpoint)) {
        (LlmProvider::Openai, false) => "OpenAI",
        (LlmProvider::Openrouter, false) => "OpenRouter",
        (LlmProvider::Anthropic, false) => "Anthropic",
        (LlmProvider::Openai | LlmProvider::Openrouter, true) => "the OpenAI-compatible endpoint",
        (LlmProvider::Anthropic, true) => "the Anthropic-compatible endpoint",
    }
}

/// The arguments of a tool call from their streamed JSON text: `{}` when the model sent none, and
/// the text itself as a JSON string when it is not valid JSON (see the module's doc).
fn parse_tool_arguments(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::Object(serde_json::Map::new());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// Sends `call` and decodes the answer's stream with `decoder`.
async fn run<D: Decoder>(
    http: &reqwest::Client,
    call: HttpCall,
    mut decoder: D,
    label: &str,
    config: &StreamConfig,
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<AssistantTurn, ModelError> {
    let idle_error =
        || ModelError::new(ModelErrorKind::Timeout, format!("{label} sent nothing for {:?}", config.idle_timeout));
    let mut builder = http.post(&call.url).json(&call.body);
    for (name, value) in call.headers {
        builder = builder.header(name, value);
    }
    let mut response = match timeout(config.idle_timeout, builder.send()).await {
        Err(_elapsed) => return Err(idle_error()),
        Ok(Err(error)) => return Err(transport_error(&format!("could not reach {label}"), error)),
        Ok(Ok(response)) => response,
    };

    let status = response.status();
    let headers = response.headers().clone();
    if !status.is_success() {
        let body = read_error_body(&mut response, config).await;
        return Err(http_error(label, status, &headers, &body));
    }
    let content_type = headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if content_type.starts_with("application/json") {
        let body = read_error_body(&mut response, config).await;
        return Err(json_instead_of_stream(label, &body));
    }

    let mut parser = SseParser::new(config.max_event_bytes);
    loop {
        let chunk = match timeout(config.idle_timeout, response.chunk()).await {
            Err(_elapsed) => return Err(idle_error()),
            Ok(Err(error)) => return Err(transport_error(&format!("the connection to {label} broke"), error)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        if decode_chunk(&mut parser, &mut decoder, &chunk, on_event)? {
            return decoder.finish();
        }
    }
    decode_end(parser, decoder, on_event)
}

/// Decodes the events one chunk of the body completes; returns whether the answer is complete.
fn decode_chunk(
    parser: &mut SseParser,
    decoder: &mut impl Decoder,
    chunk: &[u8],
    on_event: &mut dyn FnMut(StreamEvent),
) -> Result<bool, ModelError> {
    for event in parser.push(chunk)? {
        if decoder.decode(event, on_event)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The body ended: decodes what the parser still holds and finishes the answer.
fn decode_end(
    mut parser: SseParser,
    mut decoder: impl Decoder,
    on_event: &mut dyn FnMut(StreamEvent),
) -> Result<AssistantTurn, ModelError> {
    if let Some(event) = parser.finish()? {
        decoder.decode(event, on_event)?;
    }
    decoder.finish()
}

/// The start of a body that is not a stream, read as far as it comes within the limits: what is
/// read is enough to explain the failure, so a read error only ends the reading.
async fn read_error_body(response: &mut reqwest::Response, config: &StreamConfig) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_READ_ERROR_BODY_BYTES {
        match timeout(config.idle_timeout, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            Ok(Ok(None) | Err(_)) | Err(_) => break,
        }
    }
    body
}

/// A successful status with a JSON body: some compatible servers report errors that way.
fn json_instead_of_stream(label: &str, body: &[u8]) -> ModelError {
    let text = String::from_utf8_lossy(body);
    match serde_json::from_str::<Value>(&text) {
        Ok(json) if json.get("error").is_some_and(|error| !error.is_null()) => {
            stream_error(label, &json["error"], &text)
        }
        _ => ModelError::new(
            ModelErrorKind::BadResponse,
            format!("{label} answered with JSON instead of an event stream: {}", quote(&text)),
        ),
    }
}

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
