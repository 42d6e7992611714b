//! What a test scripts the fake to answer: [`Reply`], the tool calls and usage an answer carries,
//! and the [`Gate`] that holds an answer until the test lets it go.
//!
//! A reply says what happens, not how a provider spells it: the same `Reply` is rendered as an
//! OpenAI chat completion or an Anthropic message, whichever endpoint the request called.

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::PATIENCE;

/// The text of the answer to a request that found the script empty (and no fallback set):
/// visible in a failing test's output.
pub const UNSCRIPTED_REPLY: &str = "(the fake has no scripted reply left)";

/// The text that [`Reply::Malformed`] and [`Reply::CutMidStream`] start to send.
pub const BROKEN_ANSWER_TEXT: &str = "This answer breaks off before it ends, as a flaky provider's would.";

/// One scripted answer to one model request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// An answer with this text; the model stops (`stop`, `end_turn`).
    Text(String),
    /// Optional leading text, then tool calls, in order; the model waits for their results
    /// (`tool_calls`, `tool_use`).
    ToolCalls { text: Option<String>, calls: Vec<ScriptedToolCall> },
    /// An HTTP error with the provider's error body (`{"error":{"message","type","code"}}` for
    /// OpenAI, `{"type":"error","error":{"type","message"}}` for Anthropic), its error type
    /// following from the status (429 is a rate limit, 529 Anthropic's overload...).
    Status { status: u16, retry_after: Option<String>, message: String },
    /// A 200 answer whose data stops being JSON half-way (a whole answer: a body cut in half);
    /// the stream then ends as usual.
    Malformed,
    /// The first half of an answer with [`BROKEN_ANSWER_TEXT`], then the connection closes
    /// abruptly: no `[DONE]`, no `message_stop`, no end of the chunked body.
    CutMidStream,
    /// The request is accepted and never answered, for timeouts. Dropping the fake ends it.
    Hang,
    /// `reply`, reporting `usage` rather than [`ScriptedUsage::default`].
    WithUsage { usage: ScriptedUsage, reply: Box<Reply> },
    /// `reply`, held by `gate` until the test releases it: a streamed answer half-way through
    /// (after its first text or tool call has gone out), any other before the response starts.
    Gated { gate: Gate, reply: Box<Reply> },
}

/// A tool call of a scripted answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model writes them: JSON text, which need not be valid.
    pub arguments: String,
}

/// The tokens (and cost) an answer reports, in the shape of the harness's own usage: input
/// tokens are those neither read from nor written to the cache.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptedUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    /// Anthropic's `cache_creation_input_tokens`; OpenAI counts them as prompt tokens only.
    pub cache_write_tokens: u64,
    /// US dollars, sent as OpenRouter does (`usage.cost`); Anthropic reports none.
    pub cost_usd: Option<f64>,
}

/// Holds a [`Reply::Gated`] answer until [`Gate::release`]; clones share one gate.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    held: CancellationToken,
    released: CancellationToken,
}

// === impl Reply ===

impl Reply {
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Text(text.into())
    }

    /// Tool calls without leading text.
    pub fn tool_calls(calls: impl IntoIterator<Item = ScriptedToolCall>) -> Reply {
        Reply::ToolCalls { text: None, calls: calls.into_iter().collect() }
    }

    /// An error status with the provider's error body carrying `message`.
    pub fn status(status: u16, message: impl Into<String>) -> Reply {
        Reply::Status { status, retry_after: None, message: message.into() }
    }

    /// A 429 asking the client to wait `retry_after` (the header's value, e.g. `"1"`).
    pub fn rate_limited(retry_after: impl Into<String>) -> Reply {
        Reply::Status { status: 429, retry_after: Some(retry_after.into()), message: "Rate limit reached".to_owned() }
    }

    pub fn with_usage(self, usage: ScriptedUsage) -> Reply {
        Reply::WithUsage { usage, reply: Box::new(self) }
    }

    pub fn gated(self, gate: &Gate) -> Reply {
        Reply::Gated { gate: gate.clone(), reply: Box::new(self) }
    }
}

// === impl ScriptedToolCall ===

impl ScriptedToolCall {
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: &Value) -> ScriptedToolCall {
        ScriptedToolCall { id: id.into(), name: name.into(), arguments: arguments.to_string() }
    }

    /// A call whose arguments are this text as it is, e.g. JSON that does not parse.
    pub fn raw(id: impl Into<String>, name: impl Into<String>, arguments: impl Into<String>) -> ScriptedToolCall {
        ScriptedToolCall { id: id.into(), name: name.into(), arguments: arguments.into() }
    }
}

// === impl ScriptedUsage ===

impl Default for ScriptedUsage {
    /// 100 tokens in, 20 out, no cache, no cost.
    fn default() -> ScriptedUsage {
        ScriptedUsage {
            input_tokens: 100,
            output_tokens: 20,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cost_usd: None,
        }
    }
}

// === impl Gate ===

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Lets the held answer go on (or the next one to reach the gate pass straight through).
    pub fn release(&self) {
        self.released.cancel();
    }

    /// Waits until an answer is held at the gate: the request arrived and, for a stream, its
    /// first half went out. Panics after a generous patience.
    pub async fn wait_until_held(&self) {
        if tokio::time::timeout(PATIENCE, self.held.cancelled()).await.is_err() {
            panic!("no answer reached the fake's gate within {PATIENCE:?}");
        }
    }

    /// Marks the answer held and waits for [`Gate::release`] or for `stop`; true when released.
    pub(super) async fn hold(&self, stop: &CancellationToken) -> bool {
        self.held.cancel();
        tokio::select! {
            () = self.released.cancelled() => true,
            () = stop.cancelled() => false,
        }
    }
}
