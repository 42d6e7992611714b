//! A session's workspace as a zip: `GET /v1/sessions/{id}/workspace.zip` reads the session's last
//! workspace archive and writes a zip of it, or of some of its directories.
//!
//! The archive is a tar.gz of `/workspace` made in the sandbox, its entry paths relative to
//! `/workspace` (`src/main.rs`, or `./src/main.rs`). It comes from a sandbox, so it is untrusted:
//! it is bounded in entries and bytes; links of every kind and special files are left out, never
//! followed; and an entry whose path is absolute, climbs out with `..` or holds a backslash (a
//! separator to Windows' unzip) is left out too.
//!
//! The archive is read twice. [`plan`] reads it whole and decides everything (what goes in, under
//! which name, and every error a client should hear about) before a byte of the response is
//! sent; [`write_zip`] then copies what the plan names, streaming, so no zip is held in memory.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::{Duration, UNIX_EPOCH};

use flate2::read::GzDecoder;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// How much of an archive [`plan`] reads before it gives up.
#[derive(Clone, Copy, Debug)]
pub struct ArchiveLimits {
    /// The most entries, of every kind.
    pub max_entries: usize,
    /// The most bytes the entries hold together, uncompressed.
    pub max_total_bytes: u64,
}

/// What `workspace.zip` serves: room for a large repository with its dependencies.
pub const ARCHIVE_LIMITS: ArchiveLimits = ArchiveLimits { max_entries: 200_000, max_total_bytes: 4 << 30 };

/// The most `path` filters one request may give.
pub const MAX_FILTERS: usize = 64;
/// The longest path, in bytes, of a filter or of an entry kept.
const MAX_PATH_BYTES: usize = 4096;

/// Why an archive cannot be served as asked.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceZipError {
    #[error("path {path:?} is not a directory in the workspace")]
    NotADirectory { path: String },
    #[error("the workspace holds more than {limit} entries, more than this server serves as a zip")]
    TooManyEntries { limit: usize },
    #[error("the workspace holds more than {limit} bytes, more than this server serves as a zip")]
    TooLarge { limit: u64 },
    #[error("read the workspace archive")]
    Read(#[source] std::io::Error),
    #[error("write the zip")]
    Write(#[source] std::io::Error),
}

/// What goes into the zip, decided by [`plan`].
#[derive(Debug)]
pub struct ZipPlan {
    /// In the archive's order.
    entries: Vec<PlannedEntry>,
    /// Entries of the archive left out as unsafe or unsupported (links, special files, paths).
    pub skipped: usize,
}

#[derive(Debug)]
struct PlannedEntry {
    /// The entry's position in the archive.
    index: usize,
    name: String,
    kind: EntryKind,
    mode: u32,
    modified: zip::DateTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryKind {
    Directory,
    File { size: u64 },
}

impl ZipPlan {
    /// How many files and directories the zip will hold.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A `path` query parameter as a directory relative to `/workspace`, normalized (`./src/` is
/// `src`; `.` is the whole workspace, the empty string). The error is the client's `detail`.
pub fn parse_filter(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("path is empty: give a directory relative to /workspace, or leave path out for all of it".into());
    }
    if raw.contains('\0') {
        return Err(format!("path {raw:?} holds a NUL byte"));
    }
    if raw.starts_with('/') {
        return Err(format!("path {raw:?} is absolute: give a directory relative to /workspace, such as `src`"));
    }
    if raw.contains('\\') {
        return Err(format!("path {raw:?} holds a backslash: separate directories with `/`"));
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(format!("path is longer than {MAX_PATH_BYTES} bytes"));
    }
    normalize_relative(raw).ok_or_else(|| format!("path {raw:?} climbs out of /workspace with `..`"))
}

/// Reads the whole archive and decides what the zip holds: the entries under `filters` (all of
/// them when there are none), each filter having to be a directory of the archive. Blocking.
pub fn plan(archive: &[u8], filters: &[String], limits: ArchiveLimits) -> Result<ZipPlan, WorkspaceZipError> {
    let mut tar = tar::Archive::new(GzDecoder::new(archive));
    let mut plan = ZipPlan { entries: Vec::new(), skipped: 0 };
    // Every directory the archive holds or implies (`a` and `a/b` for a file `a/b/c`).
    let mut directories: HashSet<String> = HashSet::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut total_bytes = 0u64;
    for (index, entry) in tar.entries().map_err(WorkspaceZipError::Read)?.enumerate() {
        if index >= limits.max_entries {
            return Err(WorkspaceZipError::TooManyEntries { limit: limits.max_entries });
        }
        let entry = entry.map_err(WorkspaceZipError::Read)?;
        total_bytes = total_bytes.saturating_add(entry.size());
        if total_bytes > limits.max_total_bytes {
            return Err(WorkspaceZipError::TooLarge { limit: limits.max_total_bytes });
        }
        let Some(path) = entry_path(&entry.path_bytes()) else {
            plan.skipped += 1;
            continue;
        };
        for (slash, _) in path.match_indices('/') {
            directories.insert(path[..slash].to_owned());
        }
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => {
                directories.insert(path.clone());
                EntryKind::Directory
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File { size: entry.size() },
            _ => {
                plan.skipped += 1;
                continue;
            }
        };
        // The archive's root (`./`) is not an entry of the zip; a name seen before keeps its
        // first entry.
        if path.is_empty() || !is_selected(&path, filters) || !names.insert(path.clone()) {
            continue;
        }
        let default_mode = if kind == EntryKind::Directory { 0o755 } else { 0o644 };
        plan.entries.push(PlannedEntry {
            index,
            name: path,
            kind,
            mode: header.mode().map_or(default_mode, |mode| mode & 0o777),
            modified: header.mtime().map_or_else(|_| zip::DateTime::default(), zip_time),
        });
    }
    if let Some(missing) = filters.iter().find(|filter| !filter.is_empty() && !directories.contains(*filter)) {
        return Err(WorkspaceZipError::NotADirectory { path: missing.clone() });
    }
    Ok(plan)
}

/// Writes the zip that `plan` describes, reading `archive` again, into `out`. Blocking.
pub fn write_zip(archive: &[u8], plan: &ZipPlan, out: impl Write) -> Result<(), WorkspaceZipError> {
    let mut tar = tar::Archive::new(GzDecoder::new(archive));
    let mut zip = ZipWriter::new_stream(out);
    let mut planned = plan.entries.iter().peekable();
    for (index, entry) in tar.entries().map_err(WorkspaceZipError::Read)?.enumerate() {
        let Some(next) = planned.peek() else { break };
        if next.index != index {
            continue;
        }
        let mut entry = entry.map_err(WorkspaceZipError::Read)?;
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(next.mode)
            .last_modified_time(next.modified);
        match next.kind {
            EntryKind::Directory => zip.add_directory(next.name.as_str(), options).map_err(write_error)?,
            EntryKind::File { size } => {
                zip.start_file(next.name.as_str(), options.large_file(size >= u64::from(u32::MAX)))
                    .map_err(write_error)?;
                copy(&mut entry, &mut zip)?;
            }
        }
        planned.next();
    }
    zip.finish().map_err(write_error)?.into_inner().flush().map_err(WorkspaceZipError::Write)
}

/// An entry's path relative to `/workspace`, or `None` when it must be left out.
fn entry_path(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    if text.starts_with('/') || text.contains('\\') || text.contains('\0') || text.len() > MAX_PATH_BYTES {
        return None;
    }
    normalize_relative(text)
}

/// A relative path without empty and `.` parts; `None` when a part is `..`.
fn normalize_relative(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split('/').filter(|part| !part.is_empty() && *part != ".").collect();
    if parts.contains(&"..") { None } else { Some(parts.join("/")) }
}

fn is_selected(path: &str, filters: &[String]) -> bool {
    filters.is_empty()
        || filters.iter().any(|filter| {
            filter.is_empty()
                || path.strip_prefix(filter.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// Copies a file's bytes into the zip, telling a failed read of the archive from a failed write.
fn copy(entry: &mut impl Read, zip: &mut impl Write) -> Result<(), WorkspaceZipError> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = entry.read(&mut buffer).map_err(WorkspaceZipError::Read)?;
        if n == 0 {
            return Ok(());
        }
        zip.write_all(&buffer[..n]).map_err(WorkspaceZipError::Write)?;
    }
}

fn write_error(error: zip::result::ZipError) -> WorkspaceZipError {
    WorkspaceZipError::Write(error.into())
}

/// A Unix time as a zip's (UTC) date and time; outside 1980 to 2107, the zip's earliest time.
fn zip_time(unix_seconds: u64) -> zip::DateTime {
    /// 2108-01-01T00:00:00Z, the first second a zip cannot say.
    const END_OF_ZIP_TIME: u64 = 4_354_819_200;
    if unix_seconds >= END_OF_ZIP_TIME {
        return zip::DateTime::default();
    }
    // `YYYY-MM-DDTHH:MM:SSZ`, cut into its numbers.
    let text = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_seconds)).to_string();
    let number = |range: std::ops::Range<usize>| text.get(range).and_then(|digits| digits.parse::<u8>().ok());
    let year = text.get(0..4).and_then(|digits| digits.parse::<u16>().ok());
    match (year, number(5..7), number(8..10), number(11..13), number(14..16), number(17..19)) {
        (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) => {
            zip::DateTime::from_date_and_time(year, month, day, hour, minute, second).unwrap_or_default()
        }
        _ => zip::DateTime::default(),
    }
}

#[cfg(test)]
mod tests;
