//! The `find` tool: lists the files and directories under a path that match a glob.
//!
//! pi runs `fd --glob`, which matches the basename only, so its own example `src/**/*.spec.ts`
//! finds nothing. Here a pattern without `/` matches the basename (like fd), and a pattern with
//! `/` matches the path relative to the search directory: at any depth, unless it starts with
//! `**/` (already any depth), `/` or `./` (both anchored at the search directory). `*` never
//! crosses a `/`. The walk is the one grep uses, so both tools see the same files.

use std::path::Path;

use dari_protocol::tools::ToolResult;
use globset::{GlobBuilder, GlobMatcher};
use ignore::WalkBuilder;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::args::{self, lenient_u64};
use super::truncate::{DEFAULT_MAX_BYTES, NO_LINE_LIMIT, format_size, truncate_head};
use super::{ToolContext, ToolError};

#[cfg(test)]
mod tests;

/// How many paths a call lists when it names no limit (pi's default).
const DEFAULT_LIMIT: u64 = 1000;

/// The text pi answers with when nothing matches.
const NO_MATCHES: &str = "No files found matching pattern";

pub(crate) async fn run(
    context: &ToolContext,
    arguments: serde_json::Value,
    cancel: CancellationToken,
) -> Result<ToolResult, ToolError> {
    let args: FindArgs = args::parse("find", arguments)?;
    let written_path = args.path.as_deref().unwrap_or(".");
    let search_dir = context.workspace.resolve(written_path)?;
    match std::fs::metadata(&search_dir) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(ToolError(format!("Not a directory: {written_path}"))),
        Err(_) => return Err(ToolError(format!("Path not found: {written_path}"))),
    }
    let pattern = PathPattern::new(&args.pattern)?;
    let limit = clamp_limit(args.limit, DEFAULT_LIMIT);
    let walk_cancel = cancel.clone();
    let listing = tokio::task::spawn_blocking(move || list(&search_dir, &pattern, limit, &walk_cancel))
        .await
        .map_err(|error| ToolError(format!("find failed: {error}")))?;
    if cancel.is_cancelled() {
        return Err(ToolError::new("Operation aborted"));
    }
    Ok(listing.into_result(limit))
}

/// The walk shared by `grep` and `find`, set up like `rg --hidden` and `fd --hidden`: hidden files
/// included; `.gitignore` (also outside a git repository, and from the parent directories, as
/// rg does), `.ignore` and `.git/info/exclude` honoured; the user's global git excludes not,
/// since they belong to the image rather than the project. Symlinks are listed but never
/// followed, so a walk cannot leave the workspace. Directories named in `skipped_dirs` are not
/// entered. Entries come sorted by name within each directory, which makes the order that of
/// the paths compared component by component, the same on every run.
pub(super) fn walk_builder(search_dir: &Path, skipped_dirs: &'static [&'static str]) -> WalkBuilder {
    let mut builder = WalkBuilder::new(search_dir);
    builder
        .hidden(false)
        .parents(true)
        .ignore(true)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|left, right| left.cmp(right))
        .filter_entry(move |entry| {
            let is_dir = entry.file_type().is_some_and(|file_type| file_type.is_dir());
            !(is_dir && entry.depth() > 0 && skipped_dirs.iter().any(|name| entry.file_name() == *name))
        });
    builder
}

/// A `limit` argument as a count: pi's default when absent, and at least one.
pub(super) fn clamp_limit(limit: Option<u64>, default: u64) -> usize {
    usize::try_from(limit.unwrap_or(default).max(1)).unwrap_or(usize::MAX)
}

#[derive(Debug, Deserialize)]
struct FindArgs {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64::deserialize")]
    limit: Option<u64>,
}

/// A compiled `pattern` argument and what it is matched against.
#[derive(Debug)]
struct PathPattern {
    glob: GlobMatcher,
    scope: PatternScope,
    /// The pattern ended in `/`: only directories match.
    directories_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatternScope {
    /// No `/`: the entry's name.
    Basename,
    /// The path relative to the search directory (the glob starts with `**/`).
    Relative,
    /// A leading `/`: the absolute path, or the relative path with a leading `/`.
    Rooted,
}

/// What a walk found: shown paths in walk order.
#[derive(Debug, Default)]
struct Listing {
    paths: Vec<String>,
    /// More paths matched than the limit allows.
    limit_reached: bool,
}

// === impl PathPattern ===

impl PathPattern {
    fn new(written: &str) -> Result<PathPattern, ToolError> {
        let (pattern, directories_only) = match written.strip_suffix('/') {
            Some(rest) if !rest.is_empty() => (rest, true),
            _ => (written, false),
        };
        let (glob, scope) = if let Some(rest) = pattern.strip_prefix("./") {
            (format!("/{rest}"), PatternScope::Rooted)
        } else if pattern.starts_with('/') {
            (pattern.to_owned(), PatternScope::Rooted)
        } else if !pattern.contains('/') {
            (pattern.to_owned(), PatternScope::Basename)
        } else if pattern.starts_with("**/") {
            (pattern.to_owned(), PatternScope::Relative)
        } else {
            (format!("**/{pattern}"), PatternScope::Relative)
        };
        let glob = GlobBuilder::new(&glob)
            .literal_separator(true)
            .build()
            .map_err(|error| ToolError(format!("invalid glob pattern {written:?}: {error}")))?
            .compile_matcher();
        Ok(PathPattern { glob, scope, directories_only })
    }

    fn is_match(&self, absolute: &Path, relative: &Path, is_dir: bool) -> bool {
        if self.directories_only && !is_dir {
            return false;
        }
        match self.scope {
            PatternScope::Basename => relative.file_name().is_some_and(|name| self.glob.is_match(name)),
            PatternScope::Relative => self.glob.is_match(relative),
            PatternScope::Rooted => self.glob.is_match(absolute) || self.glob.is_match(Path::new("/").join(relative)),
        }
    }
}

// === impl Listing ===

impl Listing {
    fn into_result(self, limit: usize) -> ToolResult {
        let result_count = self.paths.len();
        if result_count == 0 {
            let details = serde_json::json!({ "resultCount": 0, "limitReached": false });
            return ToolResult::text(NO_MATCHES, details);
        }
        let truncation = truncate_head(&self.paths.join("\n"), NO_LINE_LIMIT, DEFAULT_MAX_BYTES);
        let mut notices = Vec::new();
        if self.limit_reached {
            let more = limit.saturating_mul(2);
            notices.push(format!("{limit} results limit reached. Use limit={more} for more, or refine pattern"));
        }
        if truncation.truncated {
            notices.push(format!("{} limit reached", format_size(DEFAULT_MAX_BYTES)));
        }
        let mut text = truncation.content.clone();
        if !notices.is_empty() {
            text.push_str(&format!("\n\n[{}]", notices.join(". ")));
        }
        let mut details = serde_json::json!({ "resultCount": result_count, "limitReached": self.limit_reached });
        if truncation.truncated {
            details["truncation"] = truncation.details();
        }
        ToolResult::text(text, details)
    }
}

/// Walks `search_dir` and keeps the matching entries, stopping at `limit` (after checking that
/// one more exists), once the listing is past what the output can show, or when cancelled.
fn list(search_dir: &Path, pattern: &PathPattern, limit: usize, cancel: &CancellationToken) -> Listing {
    let mut listing = Listing::default();
    let mut shown_bytes = 0;
    for entry in walk_builder(search_dir, &[".git", "node_modules"]).build() {
        if cancel.is_cancelled() {
            break;
        }
        let Ok(entry) = entry else { continue };
        if entry.depth() == 0 {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(search_dir) else { continue };
        let is_dir = entry.file_type().is_some_and(|file_type| file_type.is_dir());
        if !pattern.is_match(entry.path(), relative, is_dir) {
            continue;
        }
        if listing.paths.len() == limit {
            listing.limit_reached = true;
            break;
        }
        let mut shown = relative.to_string_lossy().into_owned();
        if is_dir {
            shown.push('/');
        }
        shown_bytes += shown.len() + 1;
        listing.paths.push(shown);
        if shown_bytes > DEFAULT_MAX_BYTES {
            break;
        }
    }
    listing
}
