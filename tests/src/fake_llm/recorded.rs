//! A request the fake received, and the questions tests ask of it (the system prompt, the tools
//! offered, the user's last text, the tool results sent back), answered alike for both formats.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

use super::WireFormat;

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
    /// Which model API the request called; `None` for anything else (Claude Code's `HEAD /`,
    /// `count_tokens`, a path the fake does not know).
    pub format: Option<WireFormat>,
    /// When the fake had read the whole request.
    pub received_at: Instant,
    /// When the last frame of a model request's answer was handed to the server to write (for
    /// an error status, when the response was; for an answer that breaks off, when it broke).
    /// `None` while the answer is still going out, and for requests that are no model requests.
    pub answered_at: Option<Instant>,
}

/// A tool result as the request sends it back to the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentToolResult {
    pub tool_call_id: String,
    /// The result's text parts, joined with newlines.
    pub text: String,
    /// Anthropic's `is_error`; OpenAI has no such flag, so always false there.
    pub is_error: bool,
}

impl RecordedRequest {
    /// The path without its query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The model the request names.
    pub fn model(&self) -> Option<&str> {
        self.body["model"].as_str()
    }

    /// The system prompt: Anthropic's `system`, or OpenAI's `system` and `developer` messages;
    /// several parts are joined with blank lines.
    pub fn system_prompt(&self) -> Option<String> {
        let parts: Vec<String> = match self.format {
            Some(WireFormat::OpenAi) => self
                .messages()
                .filter(|message| matches!(message["role"].as_str(), Some("system" | "developer")))
                .flat_map(|message| texts(&message["content"]))
                .collect(),
            _ => texts(&self.body["system"]),
        };
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    /// The names of the tools offered, in order.
    pub fn tool_names(&self) -> Vec<String> {
        let name_of = |tool: &Value| match self.format {
            Some(WireFormat::OpenAi) => tool["function"]["name"].as_str().map(str::to_owned),
            _ => tool["name"].as_str().map(str::to_owned),
        };
        self.body["tools"].as_array().into_iter().flatten().filter_map(name_of).collect()
    }

    /// The texts of the messages, as `(role, text)`, every text part of each; tool results and
    /// the system prompt are left out.
    pub fn message_texts(&self) -> Vec<(String, String)> {
        self.messages()
            .filter(|message| !matches!(message["role"].as_str(), Some("tool" | "system" | "developer")))
            .flat_map(|message| {
                let role = message["role"].as_str().unwrap_or_default().to_owned();
                texts(&message["content"]).into_iter().map(move |text| (role.clone(), text))
            })
            .collect()
    }

    /// The text of the last user message that has any (a message of only tool results has
    /// none), its parts joined with newlines.
    pub fn last_user_text(&self) -> Option<String> {
        let user_texts = self
            .messages()
            .filter(|message| message["role"] == "user")
            .map(|message| texts(&message["content"]))
            .filter(|parts| !parts.is_empty());
        user_texts.last().map(|parts| parts.join("\n"))
    }

    /// The tool results sent back, in order: OpenAI's `tool` messages, Anthropic's `tool_result`
    /// blocks.
    pub fn tool_results(&self) -> Vec<SentToolResult> {
        let result = |id: &Value, content: &Value, is_error: &Value| SentToolResult {
            tool_call_id: id.as_str().unwrap_or_default().to_owned(),
            text: texts(content).join("\n"),
            is_error: is_error.as_bool().unwrap_or(false),
        };
        match self.format {
            Some(WireFormat::OpenAi) => self
                .messages()
                .filter(|message| message["role"] == "tool")
                .map(|message| result(&message["tool_call_id"], &message["content"], &Value::Null))
                .collect(),
            _ => self
                .messages()
                .filter_map(|message| message["content"].as_array())
                .flatten()
                .filter(|block| block["type"] == "tool_result")
                .map(|block| result(&block["tool_use_id"], &block["content"], &block["is_error"]))
                .collect(),
        }
    }

    /// The texts of [`RecordedRequest::tool_results`].
    pub fn tool_result_texts(&self) -> Vec<String> {
        self.tool_results().into_iter().map(|result| result.text).collect()
    }

    fn messages(&self) -> impl Iterator<Item = &Value> {
        self.body["messages"].as_array().into_iter().flatten()
    }
}

/// The text parts of a content: a string, or the `text` of each `text` part of an array.
fn texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(text) => vec![text.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter(|part| part["type"] == "text")
            .filter_map(|part| part["text"].as_str())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}
