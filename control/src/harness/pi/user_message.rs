//! The user's message as it enters the conversation: its text (a leading `/skill:NAME` expanded),
//! its images (uploaded files, sent to the model as images) and a line naming any other file.

use base64::Engine as _;
use dari_protocol::tools::ContentBlock;
use serde_json::Value;

use super::model::Entry;
use super::prompt::expand_skill_command;
use super::turn::{Turn, internal};
use crate::harness::TurnFailure;
use crate::persistence::{TurnError, file_blob_key};

impl Turn<'_> {
    /// The message as the model sees it: text, images, `/skill:` expanded.
    pub(super) async fn user_entry(&self) -> Result<Entry, TurnFailure> {
        let message = &self.context.claimed.message;
        let parts = message.parts.as_array().cloned().unwrap_or_default();
        let mut content = Vec::with_capacity(parts.len());
        for part in parts {
            let field = |name: &str| part.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
            match part.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let text = field("text");
                    let expanded = if content.is_empty() {
                        expand_skill_command(&text, &self.resources.skills)
                            .map_err(|error| TurnFailure::Final(TurnError::new("unknown_skill", error, Value::Null)))?
                    } else {
                        None
                    };
                    content.push(ContentBlock::Text { text: expanded.unwrap_or(text) });
                }
                Some(kind @ ("file" | "image")) => content.push(self.file_block(kind, &field("file_id")).await?),
                _ => {}
            }
        }
        Ok(Entry::User { content })
    }

    /// An image the model can see, or a note naming an attached file.
    async fn file_block(&self, kind: &str, file_id: &str) -> Result<ContentBlock, TurnFailure> {
        let context = self.context;
        let org_id = &context.claimed.message.org_id;
        let record = context.store.file(org_id, file_id).await.map_err(|error| internal(format!("{error:#}")))?;
        let Some(record) = record else {
            return Ok(ContentBlock::Text { text: format!("[attached file {file_id} was deleted]") });
        };
        if kind == "image" && record.is_image() {
            let bytes = self
                .harness
                .blobs
                .get(&file_blob_key(file_id))
                .await
                .map_err(|error| internal(format!("read file {file_id}: {error:#}")))?;
            if let Some(bytes) = bytes {
                let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
                return Ok(ContentBlock::Image { data, mime_type: record.content_type.clone() });
            }
        }
        Ok(ContentBlock::Text {
            text: format!(
                "[attached file {} ({}, {} bytes), id {file_id}]",
                record.filename, record.content_type, record.size_bytes
            ),
        })
    }
}
