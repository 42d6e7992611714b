//! The `read` tool: a text file's lines within pi's limits, an image as image content, and a clear
//! refusal for binary files.
//!
//! A text file is streamed once: the lines the call asks for are kept (each cut just past the byte
//! limit), the rest are only counted for the footer, so a huge file costs one pass and little
//! memory.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use dari_protocol::tools::{ContentBlock, ToolResult, image_mime_type};
use nix::fcntl::OFlag;
use serde::Deserialize;

use super::args::{self, lenient_u64};
use super::truncate::{DEFAULT_MAX_BYTES, DEFAULT_MAX_LINES, format_size, truncate_head};
use super::{ToolContext, ToolError};

/// Images larger than this (4.5 MB, under Anthropic's 5 MB cap) are refused: we do not resize.
pub(crate) const MAX_IMAGE_BYTES: u64 = 4_718_592;
/// A NUL byte within this many leading bytes marks a file as binary.
pub(crate) const SNIFF_BYTES: usize = 8192;

pub(crate) async fn run(context: &ToolContext, arguments: serde_json::Value) -> Result<ToolResult, ToolError> {
    let args: ReadArgs = args::parse("read", arguments)?;
    let resolved = context.workspace.resolve(&args.path)?;
    let shown = context.workspace.display(&resolved);
    let request = ReadRequest { path: resolved, shown, offset: args.offset, limit: args.limit };
    tokio::task::spawn_blocking(move || request.read())
        .await
        .map_err(|error| ToolError(format!("read task failed: {error}")))?
}

/// Opens a regular file for reading without following a symlink at the final component and
/// without blocking on a FIFO. Errors are pi's: `File not found: <path>`, and `Not a file: <path>`
/// for directories and other special files.
pub(crate) fn open_regular(path: &Path, shown: &str) -> Result<(File, u64), ToolError> {
    let opened = OpenOptions::new().read(true).custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits()).open(path);
    let file = match opened {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(ToolError(format!("File not found: {shown}")));
        }
        Err(error) => return Err(ToolError(format!("Cannot open {shown}: {error}"))),
    };
    let metadata = file.metadata().map_err(|error| ToolError(format!("Cannot stat {shown}: {error}")))?;
    if !metadata.is_file() {
        return Err(ToolError(format!("Not a file: {shown}")));
    }
    Ok((file, metadata.len()))
}

/// Whether the leading bytes of a file say it is binary: a NUL byte among them.
pub(crate) fn looks_binary(head: &[u8]) -> bool {
    head[..head.len().min(SNIFF_BYTES)].contains(&0)
}

/// Quotes a path for the bash hints in footers, only when it needs quoting.
pub(crate) fn shell_quote(path: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./-+,:@%".contains(c);
    if !path.is_empty() && path.chars().all(plain) {
        path.to_owned()
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    }
}

#[derive(Debug, Deserialize)]
struct ReadArgs {
    path: String,
    #[serde(default, with = "lenient_u64")]
    offset: Option<u64>,
    #[serde(default, with = "lenient_u64")]
    limit: Option<u64>,
}

struct ReadRequest {
    path: PathBuf,
    shown: String,
    offset: Option<u64>,
    limit: Option<u64>,
}

/// What one pass over a text file found.
#[derive(Debug, Default)]
struct LineScan {
    /// Lines in the file, counted as pi does (`split("\n").length`).
    total_lines: usize,
    /// The selected lines kept for output, each cut just past the byte limit. Keeping stops once
    /// the truncation limits are certainly exceeded.
    kept: Vec<String>,
    /// Lines within offset and limit, kept or not.
    selected_lines: usize,
    /// Bytes of the selected lines joined with `\n`.
    selected_bytes: usize,
    /// Length in bytes of the first selected line.
    first_line_bytes: usize,
}

// === impl ReadRequest ===

impl ReadRequest {
    fn read(&self) -> Result<ToolResult, ToolError> {
        let shown = &self.shown;
        let (file, size) = open_regular(&self.path, shown)?;
        let failed = |error: io::Error| ToolError(format!("Cannot read {shown}: {error}"));
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        (&file).take(SNIFF_BYTES as u64).read_to_end(&mut head).map_err(failed)?;
        if let Some(mime_type) = image_mime_type(&head) {
            return self.read_image(io::Cursor::new(head).chain(file), size, mime_type);
        }
        if looks_binary(&head) {
            let quoted = shell_quote(shown);
            return Err(ToolError(format!(
                "Cannot read {shown}: it is a binary file ({size} bytes). \
                 Use bash to inspect it, e.g. xxd {quoted} | head"
            )));
        }
        let start = usize::try_from(self.offset.unwrap_or(0).saturating_sub(1)).unwrap_or(usize::MAX);
        let limit = self.limit.map(|limit| usize::try_from(limit).unwrap_or(usize::MAX));
        let reader = BufReader::with_capacity(64 * 1024, io::Cursor::new(head).chain(file));
        let scan = scan_lines(reader, start, limit).map_err(failed)?;
        if start >= scan.total_lines {
            let offset = self.offset.unwrap_or(0);
            return Err(ToolError(format!("Offset {offset} is beyond end of file ({} lines total)", scan.total_lines)));
        }
        Ok(self.format_text(&scan, start, limit))
    }

    fn format_text(&self, scan: &LineScan, start: usize, limit: Option<usize>) -> ToolResult {
        let mut truncation = truncate_head(&scan.kept.join("\n"), DEFAULT_MAX_LINES, DEFAULT_MAX_BYTES);
        truncation.total_lines = scan.selected_lines;
        truncation.total_bytes = scan.selected_bytes;
        let first_line = start + 1;
        let total = scan.total_lines;
        let max_size = format_size(DEFAULT_MAX_BYTES);
        if truncation.first_line_exceeds_limit {
            let line_size = format_size(scan.first_line_bytes);
            let quoted = shell_quote(&self.shown);
            let text = format!(
                "[Line {first_line} is {line_size}, exceeds {max_size} limit. \
                 Use bash: sed -n '{first_line}p' {quoted} | head -c {DEFAULT_MAX_BYTES}]"
            );
            return ToolResult::text(text, serde_json::json!({ "truncation": truncation }));
        }
        if truncation.truncated {
            let last_line = first_line + truncation.output_lines - 1;
            let next = last_line + 1;
            let limit_note =
                if truncation.truncated_by == Some("bytes") { format!(" ({max_size} limit)") } else { String::new() };
            let text = format!(
                "{}\n\n[Showing lines {first_line}-{last_line} of {total}{limit_note}. Use offset={next} to continue.]",
                truncation.content
            );
            return ToolResult::text(text, serde_json::json!({ "truncation": truncation }));
        }
        if limit.is_some() && start + scan.selected_lines < total {
            let shown_end = start + scan.selected_lines;
            let remaining = total - shown_end;
            let next = shown_end + 1;
            let text =
                format!("{}\n\n[{remaining} more lines in file. Use offset={next} to continue.]", truncation.content);
            return ToolResult::text(text, serde_json::Value::Null);
        }
        ToolResult::text(truncation.content, serde_json::Value::Null)
    }

    fn read_image(&self, reader: impl Read, size: u64, mime_type: &str) -> Result<ToolResult, ToolError> {
        let shown = &self.shown;
        let too_large = |bytes: u64| {
            ToolError(format!(
                "Cannot read image {shown}: it is {} ({mime_type}), over the {} limit for images. \
                 Images are not resized; make a smaller copy with bash and read that.",
                format_size(usize::try_from(bytes).unwrap_or(usize::MAX)),
                format_size(MAX_IMAGE_BYTES as usize),
            ))
        };
        if size > MAX_IMAGE_BYTES {
            return Err(too_large(size));
        }
        let mut data = Vec::with_capacity(size as usize);
        reader
            .take(MAX_IMAGE_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|error| ToolError(format!("Cannot read {shown}: {error}")))?;
        if data.len() as u64 > MAX_IMAGE_BYTES {
            return Err(too_large(data.len() as u64));
        }
        let details = serde_json::json!({ "mimeType": mime_type, "bytes": data.len() });
        let content = vec![
            ContentBlock::Text { text: format!("Read image file [{mime_type}]") },
            ContentBlock::Image {
                data: base64::engine::general_purpose::STANDARD.encode(&data),
                mime_type: mime_type.to_owned(),
            },
        ];
        Ok(ToolResult { content, is_error: false, details })
    }
}

/// Streams the lines of a file, keeping the selected ones (from line index `start`, at most
/// `limit`) until the truncation limits are certainly exceeded, and counting all of them.
fn scan_lines(mut reader: impl BufRead, start: usize, limit: Option<usize>) -> io::Result<LineScan> {
    let mut scan = LineScan::default();
    let mut kept_bytes = 0;
    let mut keeping = true;
    let mut line = Vec::new();
    let mut index = 0;
    loop {
        let selected = index >= start && limit.is_none_or(|limit| index - start < limit);
        let keep = selected && keeping;
        line.clear();
        let (length, ended) = read_line_capped(&mut reader, &mut line, if keep { DEFAULT_MAX_BYTES + 1 } else { 0 })?;
        if selected {
            if index == start {
                scan.first_line_bytes = length;
            }
            scan.selected_bytes += length + usize::from(scan.selected_lines > 0);
            scan.selected_lines += 1;
        }
        if keep {
            kept_bytes += length + usize::from(!scan.kept.is_empty());
            scan.kept.push(String::from_utf8_lossy(&line).into_owned());
            keeping = scan.kept.len() <= DEFAULT_MAX_LINES && kept_bytes <= DEFAULT_MAX_BYTES;
        }
        if !ended {
            break;
        }
        index += 1;
    }
    scan.total_lines = index + 1;
    Ok(scan)
}

/// Reads one line, up to and including its `\n`, keeping at most `cap` bytes of it in `kept`.
/// Returns the line's full length without the `\n`, and whether a `\n` ended it.
fn read_line_capped(reader: &mut impl BufRead, kept: &mut Vec<u8>, cap: usize) -> io::Result<(usize, bool)> {
    let mut length = 0;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if chunk.is_empty() {
            return Ok((length, false));
        }
        let newline = chunk.iter().position(|&byte| byte == b'\n');
        let part = &chunk[..newline.unwrap_or(chunk.len())];
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&part[..part.len().min(room)]);
        length += part.len();
        let used = part.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            return Ok((length, true));
        }
    }
}

#[cfg(test)]
mod tests;
