//! The conversation the managed pi harness holds with a model, in one shape for every provider:
//! its entries (user, assistant, tool result, compaction summary), the tools offered, token
//! usage, and the request, stream event and error types that the providers share.
//!
//! Entries are what the harness stores after each step and replays to the model on the next; the
//! providers translate them to and from their wire formats (`provider/openai.rs`,
//! `provider/anthropic.rs`).

use std::fmt;
use std::time::Duration;

use dari_protocol::manifest::LlmProvider;
use dari_protocol::tools::ContentBlock;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One entry of the conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Entry {
    /// The user's message (after `/skill:` expansion), or text the harness adds as the user.
    User {
        content: Vec<ContentBlock>,
    },
    Assistant(AssistantTurn),
    ToolResult(ToolResultEntry),
    /// The history before this point, summarised by compaction. Sent to the model as a user
    /// message (see [`Entry::summary_text`]).
    CompactionSummary {
        summary: String,
        tokens_before: u64,
    },
}

impl Entry {
    pub fn user_text(text: impl Into<String>) -> Entry {
        Entry::User { content: vec![ContentBlock::Text { text: text.into() }] }
    }

    /// The user-message text a compaction summary is sent as, after pi.
    pub fn summary_text(summary: &str) -> String {
        format!(
            "The conversation history before this point was compacted into the following summary:\n\n<summary>\n{summary}\n</summary>"
        )
    }
}

/// One answer of the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssistantTurn {
    pub content: Vec<AssistantBlock>,
    pub stop_reason: StopReason,
    #[serde(default)]
    pub usage: Usage,
    /// The model that answered, as the provider named it.
    pub model: String,
}

impl AssistantTurn {
    /// The tool calls, in the order the model made them.
    pub fn tool_calls(&self) -> impl Iterator<Item = ToolCall<'_>> {
        self.content.iter().filter_map(|block| match block {
            AssistantBlock::ToolCall { id, name, arguments } => Some(ToolCall { id, name, arguments }),
            _ => None,
        })
    }

    /// The text blocks joined with blank lines.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self
            .content
            .iter()
            .filter_map(|block| match block {
                AssistantBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        texts.join("\n\n")
    }
}

/// A tool call of an assistant turn, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct ToolCall<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub arguments: &'a Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AssistantBlock {
    Text {
        text: String,
    },
    /// Reasoning the provider showed; replayed only to the provider that wrote it (with its
    /// signature), as text to any other.
    Thinking {
        thinking: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// `arguments` is the parsed JSON object the model sent.
    ToolCall {
        id: String,
        name: String,
        arguments: Value,
    },
}

/// Why the model stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It answered.
    Stop,
    /// It reached `max_tokens`.
    Length,
    /// It called tools and waits for their results.
    ToolUse,
}

/// The result of one tool call, as the model sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolResultEntry {
    pub tool_call_id: String,
    pub tool_name: String,
    pub content: Vec<ContentBlock>,
    pub is_error: bool,
}

/// Tokens a model call used, and its cost when the provider reports one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens that were not read from or written to the provider's cache.
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// US dollars, as reported by the provider (OpenRouter does); `None` when it reports none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Usage {
    /// Every token of the call: what the context held plus what the model wrote.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_read_tokens)
            .saturating_add(self.cache_write_tokens)
    }

    pub fn add(&mut self, other: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_read_tokens = self.cache_read_tokens.saturating_add(other.cache_read_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(other.cache_write_tokens);
        self.cost_usd = match (self.cost_usd, other.cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
    }
}

/// A tool as the model is told of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// A JSON Schema of the arguments object.
    pub parameters: Value,
}

/// Where a model call goes.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Which wire format: OpenAI chat completions (OpenAI, OpenRouter and any compatible
    /// endpoint) or Anthropic messages.
    pub provider: LlmProvider,
    /// Without a trailing slash: `https://api.openai.com/v1`, `https://openrouter.ai/api/v1`,
    /// `https://api.anthropic.com`.
    pub base_url: String,
    pub api_key: ApiKey,
}

/// A provider key. Its `Debug` shows no part of it, so that it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for the request header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ApiKey(…)")
    }
}

/// One model call.
#[derive(Clone, Copy, Debug)]
pub struct ModelRequest<'a> {
    /// The model id as the endpoint expects it (`gpt-4.1-mini`, `claude-sonnet-4-6`,
    /// `openai/gpt-4.1-mini` on OpenRouter).
    pub model: &'a str,
    pub system: &'a str,
    pub entries: &'a [Entry],
    pub tools: &'a [ToolSpec],
    pub max_tokens: u32,
}

/// What a provider reports while the answer streams in, for live views.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    TextDelta(String),
    ThinkingDelta(String),
    /// The model started a tool call; its arguments follow.
    ToolCallStarted {
        id: String,
        name: String,
    },
}

/// Why a model call failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ModelError {
    pub kind: ModelErrorKind,
    /// What went wrong, for people: the provider's own error message where it sent one.
    pub message: String,
    /// The HTTP status, when the provider answered with one.
    pub status: Option<u16>,
    /// How long the provider asked us to wait (`retry-after`).
    pub retry_after: Option<Duration>,
    /// The start of the provider's error body (at most 2 KB), for `output.error.details`.
    pub body: Option<String>,
}

impl ModelError {
    pub fn new(kind: ModelErrorKind, message: impl Into<String>) -> ModelError {
        ModelError { kind, message: message.into(), status: None, retry_after: None, body: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelErrorKind {
    /// 429.
    RateLimited,
    /// 5xx, and Anthropic's `overloaded_error`.
    ServerError,
    /// The connection failed, was reset, or ended before the answer did.
    Connection,
    /// No byte arrived for too long.
    Timeout,
    /// The prompt does not fit the model's context window.
    ContextOverflow,
    /// Any other 4xx: a bad key, an unknown model, a request the provider refuses.
    Rejected,
    /// The answer was not what the wire format promises (bad JSON, a tool call with no name).
    BadResponse,
}

impl ModelErrorKind {
    /// Whether trying again may succeed: never for a request the provider refused.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ModelErrorKind::RateLimited
                | ModelErrorKind::ServerError
                | ModelErrorKind::Connection
                | ModelErrorKind::Timeout
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModelErrorKind::RateLimited => "rate_limited",
            ModelErrorKind::ServerError => "server_error",
            ModelErrorKind::Connection => "connection",
            ModelErrorKind::Timeout => "timeout",
            ModelErrorKind::ContextOverflow => "context_overflow",
            ModelErrorKind::Rejected => "rejected",
            ModelErrorKind::BadResponse => "bad_response",
        }
    }
}
