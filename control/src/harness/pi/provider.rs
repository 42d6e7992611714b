//! Model providers: one streaming call to OpenAI's chat completions (OpenAI, OpenRouter and any
//! compatible endpoint) or Anthropic's messages API, turned into an [`AssistantTurn`].
//!
//! (Being written: the wire formats live in `provider/openai.rs` and `provider/anthropic.rs`.)

use super::model::{AssistantTurn, Endpoint, ModelError, ModelErrorKind, ModelRequest, StreamEvent};

/// Calls the model once and streams its answer: `on_event` sees text as it arrives; the result
/// is the whole answer, or why there is none.
pub async fn stream(
    _http: &reqwest::Client,
    endpoint: &Endpoint,
    _request: &ModelRequest<'_>,
    _on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<AssistantTurn, ModelError> {
    Err(ModelError::new(ModelErrorKind::Rejected, format!("{:?} is not wired yet", endpoint.provider)))
}
