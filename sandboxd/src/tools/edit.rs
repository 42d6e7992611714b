//! The `edit` tool: replaces unique pieces of a text file, each `oldText` matched against the
//! original content, under the file's lock.
//!
//! A UTF-8 BOM and CRLF line endings are taken off for matching and put back when writing. Each
//! `oldText` is looked up verbatim first and, when missing, with the fuzzy normalisation of
//! [`fuzzy`], which rewrites only the lines it matched.

mod fuzzy;

use std::io::Read as _;
use std::ops::Range;
use std::path::PathBuf;

use dari_protocol::tools::ToolResult;
use serde::Deserialize;
use similar::{DiffTag, TextDiff};

use self::fuzzy::{FuzzyFound, NormalizedText};
use super::args;
use super::read::{looks_binary, open_regular};
use super::write::write_inside;
use super::{ToolContext, ToolError};

/// Files larger than this are not loaded for editing; bash can still change them.
pub(crate) const MAX_EDIT_BYTES: u64 = 64 * 1024 * 1024;

const BOM: &str = "\u{FEFF}";

pub(crate) async fn run(context: &ToolContext, arguments: serde_json::Value) -> Result<ToolResult, ToolError> {
    let args: EditArgs = args::parse("edit", arguments)?;
    let edits = args.into_edits()?;
    let written = edits.path.as_str();
    let resolved = context.workspace.resolve(written)?;
    let shown = context.workspace.display(&resolved);
    let root = context.workspace.root().to_path_buf();
    let guard = context.locks.lock(&resolved).await;
    let request = EditRequest { root, path: resolved, shown, edits: edits.edits };
    // The guard moves into the blocking task, so that the file stays locked until the write is
    // done even if this future is dropped.
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        request.edit()
    })
    .await
    .map_err(|error| ToolError(format!("edit task failed: {error}")))?
}

/// The arguments as models send them: `edits`, possibly as a JSON string, and the legacy
/// top-level `oldText`/`newText` pair.
#[derive(Debug, Deserialize)]
struct EditArgs {
    path: String,
    /// An array of `{oldText, newText}`, or that array as a JSON string.
    #[serde(default)]
    edits: Option<serde_json::Value>,
    #[serde(default, rename = "oldText")]
    old_text: Option<String>,
    #[serde(default, rename = "newText")]
    new_text: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct Edit {
    #[serde(rename = "oldText")]
    old_text: String,
    #[serde(rename = "newText")]
    new_text: String,
}

struct ValidEdits {
    path: String,
    edits: Vec<Edit>,
}

struct EditRequest {
    root: PathBuf,
    path: PathBuf,
    shown: String,
    edits: Vec<Edit>,
}

/// One replacement in the LF content: a byte range of the original and what goes there.
#[derive(Debug)]
struct Replacement {
    edit_index: usize,
    range: Range<usize>,
    text: String,
}

// === impl EditArgs ===

impl EditArgs {
    fn into_edits(self) -> Result<ValidEdits, ToolError> {
        let invalid = |message: String| ToolError(format!("invalid arguments for edit: {message}"));
        let mut edits: Vec<Edit> = match self.edits {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(json)) => serde_json::from_str(&json).map_err(|error| {
                invalid(format!("edits is a string but not a JSON array of {{oldText, newText}}: {error}"))
            })?,
            Some(edits) => serde_json::from_value(edits)
                .map_err(|error| invalid(format!("edits must be an array of {{oldText, newText}}: {error}")))?,
        };
        match (self.old_text, self.new_text) {
            (Some(old_text), Some(new_text)) => edits.push(Edit { old_text, new_text }),
            (None, None) => {}
            (Some(_), None) => return Err(invalid("oldText was given without newText".to_owned())),
            (None, Some(_)) => return Err(invalid("newText was given without oldText".to_owned())),
        }
        if edits.is_empty() {
            return Err(invalid("give at least one edit in edits: [{oldText, newText}]".to_owned()));
        }
        Ok(ValidEdits { path: self.path, edits })
    }
}

// === impl EditRequest ===

impl EditRequest {
    fn edit(&self) -> Result<ToolResult, ToolError> {
        let shown = &self.shown;
        let original = self.read_text()?;
        let (bom, body) = match original.strip_prefix(BOM) {
            Some(body) => (BOM, body),
            None => ("", original.as_str()),
        };
        let crlf = uses_crlf(body);
        let content = if crlf { body.replace("\r\n", "\n") } else { body.to_owned() };
        let edited = apply_edits(&content, &self.edits, shown)?;
        if edited == content {
            return Err(ToolError(format!("No changes made to {shown}: the replacement produced identical content.")));
        }
        let restored = if crlf { edited.replace('\n', "\r\n") } else { edited.clone() };
        write_inside(&self.root, &self.path, format!("{bom}{restored}").as_bytes())
            .map_err(|error| ToolError(format!("Cannot write {shown}: {error}")))?;
        let diff = TextDiff::from_lines(&content, &edited);
        let patch = diff.unified_diff().context_radius(3).header(shown, shown).to_string();
        let first_changed_line =
            diff.ops().iter().find(|op| op.tag() != DiffTag::Equal).map(|op| op.new_range().start + 1);
        let text = format!("Successfully replaced {} block(s) in {shown}.", self.edits.len());
        Ok(ToolResult::text(text, serde_json::json!({ "patch": patch, "firstChangedLine": first_changed_line })))
    }

    /// Reads the whole file as UTF-8, refusing binary, huge and non-UTF-8 files.
    fn read_text(&self) -> Result<String, ToolError> {
        let shown = &self.shown;
        let (file, size) = open_regular(&self.path, shown)?;
        let too_large = |bytes: u64| {
            ToolError(format!(
                "Cannot edit {shown}: it is {bytes} bytes, over the {MAX_EDIT_BYTES} bytes edit can load. \
                 Use bash to change it."
            ))
        };
        if size > MAX_EDIT_BYTES {
            return Err(too_large(size));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(MAX_EDIT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| ToolError(format!("Cannot read {shown}: {error}")))?;
        if bytes.len() as u64 > MAX_EDIT_BYTES {
            return Err(too_large(bytes.len() as u64));
        }
        if looks_binary(&bytes) {
            return Err(ToolError(format!(
                "Cannot edit {shown}: it is a binary file ({} bytes). Use bash to change it.",
                bytes.len()
            )));
        }
        String::from_utf8(bytes).map_err(|error| {
            ToolError(format!(
                "Cannot edit {shown}: it is not valid UTF-8 (invalid byte at offset {}). Use bash to change it.",
                error.utf8_error().valid_up_to()
            ))
        })
    }
}

/// pi's rule: the file uses CRLF when its first `\n` is preceded by `\r`.
fn uses_crlf(text: &str) -> bool {
    text.find('\n').is_some_and(|newline| text[..newline].ends_with('\r'))
}

/// Matches every edit against `content` (LF line endings), checks the matches are unique and do
/// not overlap, and returns the edited content.
fn apply_edits(content: &str, edits: &[Edit], shown: &str) -> Result<String, ToolError> {
    let mut normalized: Option<NormalizedText<'_>> = None;
    let mut replacements = Vec::with_capacity(edits.len());
    for (edit_index, edit) in edits.iter().enumerate() {
        if edit.old_text.is_empty() {
            return Err(ToolError(format!("edits[{edit_index}].oldText must not be empty")));
        }
        let old_text = edit.old_text.replace("\r\n", "\n");
        let new_text = edit.new_text.replace("\r\n", "\n");
        let not_unique = |count: usize| {
            ToolError(format!(
                "Found {count} occurrences of edits[{edit_index}] in {shown}. The text must be unique. \
                 Please provide more context to make it unique."
            ))
        };
        let mut exact = content.match_indices(old_text.as_str());
        if let Some((start, _)) = exact.next() {
            let count = 1 + exact.count();
            if count > 1 {
                return Err(not_unique(count));
            }
            replacements.push(Replacement { edit_index, range: start..start + old_text.len(), text: new_text });
            continue;
        }
        let normalized = normalized.get_or_insert_with(|| NormalizedText::new(content));
        match normalized.find(&old_text) {
            FuzzyFound::Unique(found) => {
                let (range, text) = normalized.to_original(found, &new_text);
                replacements.push(Replacement { edit_index, range, text });
            }
            FuzzyFound::Many(count) => return Err(not_unique(count)),
            FuzzyFound::Missing => {
                let mut message = format!(
                    "Could not find edits[{edit_index}] in {shown}. \
                     The old text must match exactly including all whitespace and newlines."
                );
                if let Some(hint) = normalized.closest_match(&old_text) {
                    message.push('\n');
                    message.push_str(&hint);
                }
                return Err(ToolError(message));
            }
        }
    }
    replacements.sort_by_key(|replacement| (replacement.range.start, replacement.range.end));
    for pair in replacements.windows(2) {
        if pair[0].range.end > pair[1].range.start {
            let (first, second) =
                (pair[0].edit_index.min(pair[1].edit_index), pair[0].edit_index.max(pair[1].edit_index));
            return Err(ToolError(format!(
                "edits[{first}] and edits[{second}] overlap in {shown}. Merge them into one edit."
            )));
        }
    }
    let mut edited = String::with_capacity(content.len());
    let mut copied_up_to = 0;
    for replacement in &replacements {
        edited.push_str(&content[copied_up_to..replacement.range.start]);
        edited.push_str(&replacement.text);
        copied_up_to = replacement.range.end;
    }
    edited.push_str(&content[copied_up_to..]);
    Ok(edited)
}

#[cfg(test)]
mod tests;
