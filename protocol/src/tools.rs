//! Tool results as the model and the API see them: content blocks, an error flag, and details
//! for people and programs (never sent to the model).

use serde::{Deserialize, Serialize};

/// One block of a tool result's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    /// An image, base64-encoded, with its MIME type (`image/png`, ...).
    Image {
        data: String,
        mime_type: String,
    },
}

/// The outcome of one tool call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    pub content: Vec<ContentBlock>,
    /// True when the tool failed; the content then says why, for the model.
    pub is_error: bool,
    /// Structured facts for people and programs (truncation, exit codes, diffs).
    #[serde(default)]
    pub details: serde_json::Value,
}

impl ToolResult {
    pub fn text(text: impl Into<String>, details: serde_json::Value) -> ToolResult {
        ToolResult { content: vec![ContentBlock::Text { text: text.into() }], is_error: false, details }
    }

    pub fn error(message: impl Into<String>, details: serde_json::Value) -> ToolResult {
        ToolResult { content: vec![ContentBlock::Text { text: message.into() }], is_error: true, details }
    }

    /// The text blocks joined, for logs and tests.
    pub fn joined_text(&self) -> String {
        self.content
            .iter()
            .filter_map(|block| match block {
                ContentBlock::Text { text } => Some(text.as_str()),
                ContentBlock::Image { .. } => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
