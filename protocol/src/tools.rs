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

/// The image types a model can see: what `image` blocks carry, in tool results and in messages.
pub const IMAGE_MIME_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// How many leading bytes [`image_mime_type`] needs to tell every type apart.
pub const IMAGE_SNIFF_BYTES: usize = 12;

/// The image type that `head`, a file's first bytes, starts with. Images are recognised by their
/// magic numbers, never by a name or a declared type (as in pi).
pub fn image_mime_type(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= IMAGE_SNIFF_BYTES && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
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

    /// Adds a paragraph at the end of the last text block (or as a new block).
    pub fn append_paragraph(&mut self, paragraph: &str) {
        match self.content.last_mut() {
            Some(ContentBlock::Text { text }) if !text.is_empty() => {
                text.push_str("\n\n");
                text.push_str(paragraph);
            }
            Some(ContentBlock::Text { text }) => text.push_str(paragraph),
            _ => self.content.push(ContentBlock::Text { text: paragraph.to_owned() }),
        }
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
