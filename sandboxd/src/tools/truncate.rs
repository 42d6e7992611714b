//! pi's truncation: keep the head or the tail of a text within a line and a byte limit, and say
//! what was cut so the tool can write an actionable footer.

use serde::Serialize;

/// At most this many lines reach the model from one tool call.
pub const DEFAULT_MAX_LINES: usize = 2000;
/// At most this many bytes (50 KB) reach the model from one tool call.
pub const DEFAULT_MAX_BYTES: usize = 50 * 1024;
/// grep cuts each line to this many characters.
pub const GREP_MAX_LINE_CHARS: usize = 500;
/// The line limit of outputs capped by bytes only (grep, find): JavaScript's
/// `Number.MAX_SAFE_INTEGER`, as pi passes, so that `details.truncation.maxLines` is exact in JSON.
pub(crate) const NO_LINE_LIMIT: usize = (1 << 53) - 1;

/// What a truncation kept, reported in a tool's `details.truncation` with pi's field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Truncation {
    pub content: String,
    pub truncated: bool,
    /// `lines` or `bytes`, when truncated.
    pub truncated_by: Option<&'static str>,
    pub total_lines: usize,
    pub total_bytes: usize,
    pub output_lines: usize,
    pub output_bytes: usize,
    pub last_line_partial: bool,
    pub first_line_exceeds_limit: bool,
    pub max_lines: usize,
    pub max_bytes: usize,
}

/// Keeps the first complete lines within the limits; never a partial line.
pub fn truncate_head(text: &str, max_lines: usize, max_bytes: usize) -> Truncation {
    let lines: Vec<&str> = text.split('\n').collect();
    let total_lines = lines.len();
    let total_bytes = text.len();
    let mut report = Truncation::untouched(text, total_lines, max_lines, max_bytes);
    if total_lines <= max_lines && total_bytes <= max_bytes {
        return report;
    }
    if lines.first().is_some_and(|first| first.len() > max_bytes) {
        report.content = String::new();
        report.truncated = true;
        report.truncated_by = Some("bytes");
        report.first_line_exceeds_limit = true;
        report.output_lines = 0;
        report.output_bytes = 0;
        return report;
    }
    let mut kept_bytes = 0;
    let mut kept_lines = 0;
    let mut truncated_by = "lines";
    for (index, line) in lines.iter().enumerate() {
        if index >= max_lines {
            break;
        }
        let cost = line.len() + usize::from(index > 0);
        if kept_bytes + cost > max_bytes {
            truncated_by = "bytes";
            break;
        }
        kept_bytes += cost;
        kept_lines += 1;
    }
    report.content = lines[..kept_lines].join("\n");
    report.truncated = true;
    report.truncated_by = Some(truncated_by);
    report.output_lines = kept_lines;
    report.output_bytes = report.content.len();
    report
}

/// Keeps the last complete lines within the limits. If the last line alone is over the byte
/// limit, keeps its tail, cut on a character boundary, and says so.
pub fn truncate_tail(text: &str, max_lines: usize, max_bytes: usize) -> Truncation {
    let lines: Vec<&str> = text.split('\n').collect();
    let total_lines = lines.len();
    let total_bytes = text.len();
    let mut report = Truncation::untouched(text, total_lines, max_lines, max_bytes);
    if total_lines <= max_lines && total_bytes <= max_bytes {
        return report;
    }
    let mut kept_bytes = 0;
    let mut kept_lines = 0;
    let mut truncated_by = "lines";
    for (offset, line) in lines.iter().rev().enumerate() {
        if offset >= max_lines {
            break;
        }
        let cost = line.len() + usize::from(offset > 0);
        if kept_bytes + cost > max_bytes {
            truncated_by = "bytes";
            break;
        }
        kept_bytes += cost;
        kept_lines += 1;
    }
    report.truncated = true;
    report.truncated_by = Some(truncated_by);
    if kept_lines == 0 {
        let last = lines.last().copied().unwrap_or_default();
        let mut start = last.len().saturating_sub(max_bytes);
        while !last.is_char_boundary(start) {
            start += 1;
        }
        report.content = last[start..].to_owned();
        report.last_line_partial = true;
        report.output_lines = 1;
    } else {
        report.content = lines[total_lines - kept_lines..].join("\n");
        report.output_lines = kept_lines;
    }
    report.output_bytes = report.content.len();
    report
}

/// Formats a byte count as pi does: `512B`, `50.0KB`, `1.2MB`.
pub fn format_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes}B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1}KB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1}MB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// Cuts a line to `max_chars` characters, marking the cut as grep does.
pub fn truncate_line(line: &str, max_chars: usize) -> (String, bool) {
    match line.char_indices().nth(max_chars) {
        Some((cut, _)) => (format!("{}... [truncated]", &line[..cut]), true),
        None => (line.to_owned(), false),
    }
}

impl Truncation {
    /// The record for a tool's `details.truncation`: every field but the kept text, which the
    /// tool's content already carries.
    pub(crate) fn details(&self) -> serde_json::Value {
        let mut details = serde_json::to_value(self).expect("a truncation record serializes");
        if let Some(fields) = details.as_object_mut() {
            fields.remove("content");
        }
        details
    }

    fn untouched(text: &str, total_lines: usize, max_lines: usize, max_bytes: usize) -> Truncation {
        Truncation {
            content: text.to_owned(),
            truncated: false,
            truncated_by: None,
            total_lines,
            total_bytes: text.len(),
            output_lines: total_lines,
            output_bytes: text.len(),
            last_line_partial: false,
            first_line_exceeds_limit: false,
            max_lines,
            max_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_keeps_whole_lines() {
        let kept = truncate_head("a\nb\nc\nd", 2, 100);
        assert_eq!((kept.content.as_str(), kept.truncated_by), ("a\nb", Some("lines")));
        let kept = truncate_head("aaaa\nbbbb\ncccc", 10, 9);
        assert_eq!((kept.content.as_str(), kept.truncated_by), ("aaaa\nbbbb", Some("bytes")));
        let kept = truncate_head(&"x".repeat(20), 10, 10);
        assert!(kept.first_line_exceeds_limit && kept.content.is_empty());
        assert!(!truncate_head("short", 10, 10).truncated);
    }

    #[test]
    fn tail_keeps_the_end() {
        let kept = truncate_tail("a\nb\nc\nd", 2, 100);
        assert_eq!(kept.content, "c\nd");
        let kept = truncate_tail(&format!("x\n{}", "é".repeat(10)), 10, 5);
        assert!(kept.last_line_partial);
        assert_eq!(kept.content, "éé", "cut on a character boundary");
    }

    #[test]
    fn sizes_and_lines() {
        assert_eq!(format_size(51200), "50.0KB");
        assert_eq!(format_size(12), "12B");
        assert_eq!(truncate_line("abcdef", 3), ("abc... [truncated]".to_owned(), true));
        assert_eq!(truncate_line("ab", 3), ("ab".to_owned(), false));
    }
}
