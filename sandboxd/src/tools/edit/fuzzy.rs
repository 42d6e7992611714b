//! Fuzzy matching for `edit`, used when an `oldText` is not in the file verbatim.
//!
//! The file and the `oldText` are normalised line by line as pi does (NFKC, typographic quotes,
//! dashes and spaces made ASCII, trailing whitespace dropped) and matched in that space. Because
//! normalisation keeps lines apart, a match maps back to whole lines of the original: only those
//! lines are rewritten, and the parts of them outside the match keep their original text where it
//! can be recovered.

use std::ops::Range;

use unicode_normalization::UnicodeNormalization;

use crate::tools::truncate::truncate_line;

/// Lines longer than this keep the normalised text around a match instead of searching for the
/// original (a quadratic search).
const MAX_RECOVERED_LINE_BYTES: usize = 2048;
/// The closest-match hint needs at least this many matching characters.
const MIN_HINT_CHARS: usize = 4;
/// The closest-match hint shows at most this many lines, each cut to this many characters.
const MAX_HINT_LINES: usize = 10;
const MAX_HINT_LINE_CHARS: usize = 200;

/// The outcome of a fuzzy search, in normalised coordinates.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FuzzyFound {
    Missing,
    Many(usize),
    Unique(Range<usize>),
}

/// A text with its normalised form, and where each line starts in both.
#[derive(Debug)]
pub(super) struct NormalizedText<'a> {
    original: &'a str,
    /// Byte range of each original line, without its `\n`.
    original_lines: Vec<Range<usize>>,
    normalized: String,
    /// Byte range of each normalised line in `normalized`, without its `\n`.
    normalized_lines: Vec<Range<usize>>,
}

/// Normalises one line: NFKC, ASCII quotes, dashes and spaces, no trailing whitespace.
pub(super) fn normalize_line(line: &str) -> String {
    let mut normalized = normalize_fragment(line);
    normalized.truncate(normalized.trim_end().len());
    normalized
}

/// Normalises a text line by line.
pub(super) fn normalize_text(text: &str) -> String {
    text.split('\n').map(normalize_line).collect::<Vec<_>>().join("\n")
}

// === impl NormalizedText ===

impl<'a> NormalizedText<'a> {
    pub(super) fn new(original: &'a str) -> NormalizedText<'a> {
        let mut original_lines = Vec::new();
        let mut normalized = String::with_capacity(original.len());
        let mut normalized_lines = Vec::new();
        let mut line_start = 0;
        for line in original.split('\n') {
            original_lines.push(line_start..line_start + line.len());
            line_start += line.len() + 1;
            if !normalized_lines.is_empty() {
                normalized.push('\n');
            }
            let start = normalized.len();
            normalized.push_str(&normalize_line(line));
            normalized_lines.push(start..normalized.len());
        }
        NormalizedText { original, original_lines, normalized, normalized_lines }
    }

    /// Looks for the normalised `old_text`; counts non-overlapping occurrences as pi does.
    pub(super) fn find(&self, old_text: &str) -> FuzzyFound {
        let needle = normalize_text(old_text);
        if needle.trim().is_empty() {
            return FuzzyFound::Missing;
        }
        let mut found = self.normalized.match_indices(needle.as_str());
        match (found.next(), found.count()) {
            (None, _) => FuzzyFound::Missing,
            (Some((start, _)), 0) => FuzzyFound::Unique(start..start + needle.len()),
            (Some(_), more) => FuzzyFound::Many(1 + more),
        }
    }

    /// Maps a match back to the original: the byte range of the whole original lines it touches,
    /// and their replacement, which is `new_text` between the parts of those lines outside the
    /// match.
    pub(super) fn to_original(&self, found: Range<usize>, new_text: &str) -> (Range<usize>, String) {
        let first = self.line_of(found.start);
        let last = self.line_of(found.end);
        let first_normalized = &self.normalized[self.normalized_lines[first].clone()];
        let last_normalized = &self.normalized[self.normalized_lines[last].clone()];
        let prefix = &first_normalized[..found.start - self.normalized_lines[first].start];
        let suffix = &last_normalized[found.end - self.normalized_lines[last].start..];
        let first_original = &self.original[self.original_lines[first].clone()];
        let last_original = &self.original[self.original_lines[last].clone()];
        let prefix = original_prefix(first_original, prefix);
        let suffix = original_suffix(last_original, suffix);
        let range = self.original_lines[first].start..self.original_lines[last].end;
        (range, format!("{prefix}{new_text}{suffix}"))
    }

    /// A hint for an `oldText` that was not found: the line holding the longest prefix of its
    /// first non-blank line, and the original lines from there.
    pub(super) fn closest_match(&self, old_text: &str) -> Option<String> {
        let first_line = old_text.split('\n').map(normalize_line).find(|line| !line.trim().is_empty())?;
        let first_line = first_line.trim_start();
        let mut boundaries: Vec<usize> = first_line.char_indices().map(|(at, _)| at).skip(1).collect();
        boundaries.push(first_line.len());
        // Containment is monotonic in the prefix length, so the longest found prefix is a binary
        // search away.
        let found = boundaries.partition_point(|&end| self.normalized.contains(&first_line[..end]));
        if found < MIN_HINT_CHARS.min(boundaries.len()) {
            return None;
        }
        let at = self.normalized.find(&first_line[..boundaries[found - 1]])?;
        let line = self.line_of(at);
        let shown_lines = old_text.split('\n').count().clamp(1, MAX_HINT_LINES);
        let snippet: Vec<String> = self.original_lines[line..]
            .iter()
            .take(shown_lines)
            .map(|range| truncate_line(&self.original[range.clone()], MAX_HINT_LINE_CHARS).0)
            .collect();
        Some(format!("Closest match is around line {}:\n{}", line + 1, snippet.join("\n")))
    }

    /// The index of the line holding byte `at` of the normalised text (a line's end counts as
    /// part of it).
    fn line_of(&self, at: usize) -> usize {
        self.normalized_lines.partition_point(|line| line.start <= at) - 1
    }
}

/// The start of `line` that normalises to `normalized_prefix`, or the normalised prefix itself
/// when there is no such start.
fn original_prefix<'l>(line: &'l str, normalized_prefix: &'l str) -> &'l str {
    if normalized_prefix.is_empty() {
        return "";
    }
    if line.len() <= MAX_RECOVERED_LINE_BYTES {
        let ends = line.char_indices().map(|(at, _)| at).skip(1).chain([line.len()]);
        for end in ends {
            if normalize_fragment(&line[..end]) == normalized_prefix {
                return &line[..end];
            }
        }
    }
    normalized_prefix
}

/// The end of `line` that normalises to `normalized_suffix` (trailing whitespace included, so it
/// is kept), or the normalised suffix itself when there is no such end.
fn original_suffix<'l>(line: &'l str, normalized_suffix: &'l str) -> &'l str {
    if line.len() <= MAX_RECOVERED_LINE_BYTES {
        for (start, _) in line.char_indices() {
            if normalize_line(&line[start..]) == normalized_suffix {
                return &line[start..];
            }
        }
    }
    normalized_suffix
}

fn normalize_fragment(text: &str) -> String {
    text.nfkc().map(plain_char).collect()
}

/// Typographic quotes, dashes and spaces as their ASCII counterparts.
fn plain_char(c: char) -> char {
    match c {
        '\u{2018}'..='\u{201B}' => '\'',
        '\u{201C}'..='\u{201F}' => '"',
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => ' ',
        c => c,
    }
}

#[cfg(test)]
mod tests;
