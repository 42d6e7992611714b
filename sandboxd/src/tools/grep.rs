//! The `grep` tool: ripgrep's search, in process, with pi's output.
//!
//! pi runs the `rg` binary; we use the crates it is made of (`ignore` for the walk, `grep-regex`
//! and `grep-searcher` for the search), so the daemon needs no binary and stops as soon as it has
//! enough. Unlike rg's, our output never depends on thread timing: results come in path order
//! (paths compared component by component), then line order, and a limit keeps the first
//! matches in that order.

mod search;

use std::path::PathBuf;

use dari_protocol::tools::ToolResult;
use grep_regex::RegexMatcherBuilder;
use ignore::overrides::OverrideBuilder;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use self::search::{FileHits, SearchPlan};
use super::args::{self, lenient_bool, lenient_u64};
use super::find::{clamp_limit, walk_builder};
use super::truncate::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_LINES, GREP_MAX_LINE_CHARS, NO_LINE_LIMIT, format_size, truncate_head,
};
use super::{ToolContext, ToolError};

#[cfg(test)]
mod tests;

/// How many matching lines a call reports when it names no limit (pi's default).
const DEFAULT_LIMIT: u64 = 100;

pub(crate) async fn run(
    context: &ToolContext,
    arguments: serde_json::Value,
    cancel: CancellationToken,
) -> Result<ToolResult, ToolError> {
    let args: GrepArgs = args::parse("grep", arguments)?;
    let written_path = args.path.as_deref().unwrap_or(".");
    let target = context.workspace.resolve(written_path)?;
    let metadata = std::fs::metadata(&target).map_err(|_| ToolError(format!("Path not found: {written_path}")))?;
    let matcher = RegexMatcherBuilder::new()
        .case_insensitive(args.ignore_case.unwrap_or(false))
        .fixed_strings(args.literal.unwrap_or(false))
        .line_terminator(Some(b'\n'))
        // Files holding a NUL are skipped as binary, so no pattern may match one.
        .ban_byte(Some(b'\0'))
        .build(&args.pattern)
        .map_err(|error| ToolError(format!("invalid pattern {:?}: {error}", args.pattern)))?;
    let files = if metadata.is_dir() {
        let glob = args.glob.as_deref().filter(|glob| !glob.is_empty());
        SearchFiles::Tree { dir: target, glob: glob.map(ToOwned::to_owned) }
    } else if metadata.is_file() {
        SearchFiles::One(target)
    } else {
        return Err(ToolError(format!("Not a file or directory: {written_path}")));
    };
    // A context wider than the most lines a tool shows could never be displayed.
    let context_lines = usize::try_from(args.context.unwrap_or(0)).unwrap_or(usize::MAX).min(DEFAULT_MAX_LINES);
    let limit = clamp_limit(args.limit, DEFAULT_LIMIT);
    let plan = SearchPlan { matcher, context_lines, max_matches_per_file: limit.saturating_add(1) };
    let search_cancel = cancel.clone();
    let collected = tokio::task::spawn_blocking(move || files.search(&plan, limit, &search_cancel))
        .await
        .map_err(|error| ToolError(format!("grep failed: {error}")))??;
    if cancel.is_cancelled() {
        return Err(ToolError::new("Operation aborted"));
    }
    Ok(collected.into_result())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrepArgs {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    glob: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool::deserialize")]
    ignore_case: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool::deserialize")]
    literal: Option<bool>,
    #[serde(default, deserialize_with = "lenient_u64::deserialize")]
    context: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64::deserialize")]
    limit: Option<u64>,
}

/// What a call searches.
#[derive(Debug)]
enum SearchFiles {
    /// One file, shown by its basename; a glob does not apply (as with rg).
    One(PathBuf),
    /// The files under a directory, shown relative to it, optionally filtered like `rg --glob`.
    Tree { dir: PathBuf, glob: Option<String> },
}

/// The output lines kept so far, in order, and what the footer must say.
#[derive(Debug)]
struct Collected {
    limit: usize,
    context_lines: u64,
    lines: Vec<String>,
    shown_bytes: usize,
    /// The output is past what can be shown: later files only count matches.
    full: bool,
    match_count: usize,
    limit_reached: bool,
    lines_cut: bool,
}

// === impl SearchFiles ===

impl SearchFiles {
    /// Searches, blocking, until the limit is passed, the files run out or `cancel` fires.
    fn search(self, plan: &SearchPlan, limit: usize, cancel: &CancellationToken) -> Result<Collected, ToolError> {
        let mut collected = Collected {
            limit,
            context_lines: plan.context_lines as u64,
            lines: Vec::new(),
            shown_bytes: 0,
            full: false,
            match_count: 0,
            limit_reached: false,
            lines_cut: false,
        };
        match self {
            SearchFiles::One(file) => {
                let shown = file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
                plan.search_in_order(std::iter::once(file), 1, cancel, |_, hits| collected.take(&shown, hits));
            }
            SearchFiles::Tree { dir, glob } => {
                let mut builder = walk_builder(&dir, &[".git"]);
                if let Some(glob) = glob {
                    let invalid = |error: ignore::Error| ToolError(format!("invalid glob {glob:?}: {error}"));
                    let overrides = OverrideBuilder::new(&dir).add(&glob).map_err(invalid)?.build().map_err(invalid)?;
                    builder.overrides(overrides);
                }
                let files = builder
                    .build()
                    .take_while(|_| !cancel.is_cancelled())
                    .filter_map(Result::ok)
                    .filter(|entry| entry.file_type().is_some_and(|file_type| file_type.is_file()))
                    .map(ignore::DirEntry::into_path);
                let workers = std::thread::available_parallelism().map_or(1, usize::from).min(8);
                plan.search_in_order(files, workers, cancel, |path, hits| {
                    let shown = path.strip_prefix(&dir).unwrap_or(path).to_string_lossy();
                    collected.take(&shown, hits)
                });
            }
        }
        Ok(collected)
    }
}

// === impl Collected ===

impl Collected {
    /// Adds one file's hits; returns whether the next file is still wanted.
    fn take(&mut self, shown_path: &str, hits: FileHits) -> bool {
        if hits.binary || hits.match_count == 0 {
            return true;
        }
        let needed = self.limit - self.match_count;
        let kept_matches = hits.match_count.min(needed);
        if !self.full && kept_matches > 0 {
            let mut matches_seen = 0;
            let mut last_wanted = u64::MAX;
            for line in &hits.lines {
                if line.number > last_wanted {
                    break;
                }
                // Matches past the limit are still shown as context of the last kept one.
                let is_match = line.is_match && matches_seen < kept_matches;
                if is_match {
                    matches_seen += 1;
                    if matches_seen == kept_matches && kept_matches < hits.match_count {
                        last_wanted = line.number.saturating_add(self.context_lines);
                    }
                }
                let separator = if is_match { ':' } else { '-' };
                let formatted = format!("{shown_path}{separator}{}{separator} {}", line.number, line.text);
                self.lines_cut |= line.cut;
                self.shown_bytes += formatted.len() + 1;
                self.lines.push(formatted);
                if self.shown_bytes > DEFAULT_MAX_BYTES {
                    self.full = true;
                    break;
                }
            }
        }
        self.match_count += kept_matches;
        if hits.match_count > needed {
            self.limit_reached = true;
            return false;
        }
        true
    }

    fn into_result(self) -> ToolResult {
        let limit = self.limit;
        let mut details = serde_json::json!({
            "matchCount": self.match_count,
            "limitReached": self.limit_reached,
            "linesTruncated": self.lines_cut,
        });
        if self.match_count == 0 {
            return ToolResult::text("No matches found", details);
        }
        let truncation = truncate_head(&self.lines.join("\n"), NO_LINE_LIMIT, DEFAULT_MAX_BYTES);
        let mut notices = Vec::new();
        if self.limit_reached {
            let more = limit.saturating_mul(2);
            notices.push(format!("{limit} matches limit reached. Use limit={more} for more, or refine pattern"));
        }
        if truncation.truncated {
            notices.push(format!("{} limit reached", format_size(DEFAULT_MAX_BYTES)));
            details["truncation"] = truncation.details();
        }
        if self.lines_cut {
            notices
                .push(format!("Some lines truncated to {GREP_MAX_LINE_CHARS} chars. Use read tool to see full lines"));
        }
        let mut text = truncation.content;
        if !notices.is_empty() {
            text.push_str(&format!("\n\n[{}]", notices.join(". ")));
        }
        ToolResult::text(text, details)
    }
}
