//! Anthropic's Messages API as Claude Code calls it with `ANTHROPIC_BASE_URL` set: the
//! [`FakeLlm`] seen from the Anthropic side, with text answers only.
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
//! `stream: true`. The fake answers both, as well as `count_tokens` and `GET /v1/models`, and
//! records everything, unknown paths included, so a test can see them.

pub use crate::fake_llm::RecordedRequest;
use crate::fake_llm::{FakeLlm, Reply, WireFormat};

/// A running fake; it stops when dropped.
pub struct FakeAnthropic {
    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub url: String,
    llm: FakeLlm,
}

impl FakeAnthropic {
    pub async fn start() -> FakeAnthropic {
        let llm = FakeLlm::start().await;
        FakeAnthropic { url: llm.anthropic_base_url(), llm }
    }

    /// Queues the text of the next answer to `POST /v1/messages`.
    pub fn reply(&self, text: &str) {
        self.llm.push(Reply::text(text));
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.llm.all_requests()
    }

    /// The `POST /v1/messages` requests so far (the model calls), in order.
    pub fn message_requests(&self) -> Vec<RecordedRequest> {
        let mut requests = self.llm.requests();
        requests.retain(|request| request.format == Some(WireFormat::Anthropic));
        requests
    }
}
