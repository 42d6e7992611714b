//! The one walk over a bundle archive that both [`super::extract`] and
//! [`super::read_archive`] use: it decompresses and hashes the stream, checks every entry's kind,
//! path and size against the limits, and hands accepted entries to an [`EntrySink`].

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use flate2::bufread::GzDecoder;

use super::ExtractError;
use super::stream::{CountingReader, HashingReader, StreamProblem, StreamState, max_decompressed_bytes};
use crate::limits::BundleLimits;
use crate::path::{check_bundle_path, display_path};
use crate::select::SelectedFile;

/// Receives the entries that passed every check, in archive order.
pub(super) trait EntrySink {
    fn directory(&mut self, path: &str) -> Result<(), ExtractError>;
    /// Returns whether the sink wants the file's contents through [`EntrySink::write_chunk`].
    fn start_file(&mut self, file: &SelectedFile) -> Result<bool, ExtractError>;
    fn write_chunk(&mut self, file: &SelectedFile, chunk: &[u8]) -> Result<(), ExtractError>;
    fn finish_file(&mut self, file: &SelectedFile) -> Result<(), ExtractError>;
}

/// What a complete walk found.
pub(super) struct ArchiveSummary {
    /// Sorted by path.
    pub(super) files: Vec<SelectedFile>,
    /// Lowercase hex sha256 of the compressed stream.
    pub(super) sha256: String,
}

/// Walks `archive`, a tar.gz stream, to its end. Fails on the first entry that breaks a rule, on
/// a corrupt stream, on data after the gzip stream, and when `expected_sha256` is given and
/// differs from the stream's hash. The sink may have received entries before a failure.
pub(super) fn walk_archive(
    archive: impl Read,
    limits: &BundleLimits,
    expected_sha256: Option<&str>,
    sink: &mut impl EntrySink,
) -> Result<ArchiveSummary, ExtractError> {
    let state = Rc::new(StreamState::default());
    let hashing = HashingReader::new(archive, limits.max_archive_bytes, Rc::clone(&state));
    // The buffered reader stays reachable, so bytes it read past the gzip stream are noticed.
    let decoder = GzDecoder::new(BufReader::new(hashing));
    let counting = CountingReader::new(decoder, max_decompressed_bytes(limits), Rc::clone(&state));
    let mut tar = tar::Archive::new(counting);
    let mut checker = EntryChecker {
        limits,
        files: Vec::new(),
        file_paths: HashSet::new(),
        dirs: HashSet::new(),
        explicit_dirs: HashSet::new(),
        total_bytes: 0,
    };
    let mut position = Position::Start;

    let entries = tar.entries().map_err(|source| stream_error(&state, &position, source))?;
    for entry in entries {
        let mut entry = entry.map_err(|source| stream_error(&state, &position, source))?;
        match checker.check(&entry)? {
            Checked::Skip => {}
            Checked::Directory(path) => {
                sink.directory(&path)?;
                position = Position::After(path);
            }
            Checked::File(file) => {
                if sink.start_file(&file)? {
                    copy_contents(&mut entry, &file, limits, &state, sink)?;
                }
                sink.finish_file(&file)?;
                position = Position::After(file.path.clone());
                checker.files.push(file);
            }
        }
    }

    // Read to the end of the gzip stream, so its checksum and length are verified and the hash
    // covers every byte, then make sure nothing follows it.
    let mut counting = tar.into_inner();
    io::copy(&mut counting, &mut io::sink()).map_err(|source| stream_error(&state, &position, source))?;
    let mut buffered = counting.into_inner().into_inner();
    let trailing = buffered.fill_buf().map_err(|source| stream_error(&state, &position, source))?;
    if !trailing.is_empty() {
        return Err(ExtractError::TrailingData);
    }
    let sha256 = buffered.into_inner().finish();
    if let Some(expected) = expected_sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(ExtractError::HashMismatch { expected: expected.to_owned(), actual: sha256 });
    }
    let mut files = checker.files;
    files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(ArchiveSummary { files, sha256 })
}

/// What the checker decided about one entry.
enum Checked {
    /// Metadata that describes no file, such as a PAX global header.
    Skip,
    Directory(String),
    File(SelectedFile),
}

/// Where in the archive a stream error happened, for the error message.
enum Position {
    Start,
    After(String),
}

/// The rules for entries, and the state they need across the archive.
struct EntryChecker<'a> {
    limits: &'a BundleLimits,
    files: Vec<SelectedFile>,
    file_paths: HashSet<String>,
    /// Directories, whether they have an entry or only hold files.
    dirs: HashSet<String>,
    /// Directories that have an entry of their own.
    explicit_dirs: HashSet<String>,
    total_bytes: u64,
}

// === impl EntryChecker ===

impl EntryChecker<'_> {
    fn check<R: Read>(&mut self, entry: &tar::Entry<'_, R>) -> Result<Checked, ExtractError> {
        let raw_path = entry.path_bytes();
        let entry_type = entry.header().entry_type();
        let is_dir = match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => false,
            tar::EntryType::Directory => true,
            tar::EntryType::XGlobalHeader => return Ok(Checked::Skip),
            other => {
                return Err(ExtractError::UnsupportedEntry {
                    path: display_path(&raw_path),
                    kind: kind_name(other, entry.link_name_bytes().as_deref()),
                });
            }
        };
        // Directory entries conventionally end in '/'.
        let trimmed = if is_dir { raw_path.strip_suffix(b"/").unwrap_or(&raw_path) } else { &raw_path[..] };
        let path = check_bundle_path(trimmed, self.limits.max_path_bytes)
            .map_err(|problem| ExtractError::UnsafePath { path: display_path(&raw_path), problem })?
            .to_owned();
        self.check_place(&path, is_dir)?;
        if is_dir {
            if self.explicit_dirs.len() >= self.limits.max_files {
                return Err(ExtractError::TooManyDirectories { path, limit: self.limits.max_files });
            }
            self.explicit_dirs.insert(path.clone());
            self.dirs.insert(path.clone());
            return Ok(Checked::Directory(path));
        }

        if self.files.len() >= self.limits.max_files {
            return Err(ExtractError::TooManyFiles { path, limit: self.limits.max_files });
        }
        // The size the tar crate will deliver, which a PAX header may have set. It is checked
        // before any data is read.
        let size = entry.size();
        if size > self.limits.max_file_bytes {
            return Err(ExtractError::FileTooLarge { path, size, limit: self.limits.max_file_bytes });
        }
        self.total_bytes = self.total_bytes.saturating_add(size);
        if self.total_bytes > self.limits.max_total_bytes {
            return Err(ExtractError::TotalTooLarge {
                path,
                total: self.total_bytes,
                limit: self.limits.max_total_bytes,
            });
        }
        let mode =
            entry.header().mode().map_err(|source| ExtractError::InvalidHeader { path: path.clone(), source })?;
        self.file_paths.insert(path.clone());
        Ok(Checked::File(SelectedFile { path, size, executable: mode & 0o111 != 0 }))
    }

    /// Refuses a path seen before, and a path that would make one name both a file and a
    /// directory. Records the parents of `path` as directories.
    fn check_place(&mut self, path: &str, is_dir: bool) -> Result<(), ExtractError> {
        let seen = if is_dir { self.explicit_dirs.contains(path) } else { self.file_paths.contains(path) };
        if seen {
            return Err(ExtractError::DuplicatePath { path: path.to_owned() });
        }
        let conflicts = if is_dir { self.file_paths.contains(path) } else { self.dirs.contains(path) };
        if conflicts {
            return Err(ExtractError::PathConflict { path: path.to_owned(), other: path.to_owned() });
        }
        let parents = path.match_indices('/').map(|(index, _)| &path[..index]);
        for parent in parents.clone() {
            if self.file_paths.contains(parent) {
                return Err(ExtractError::PathConflict { path: path.to_owned(), other: parent.to_owned() });
            }
        }
        for parent in parents {
            self.dirs.insert(parent.to_owned());
        }
        Ok(())
    }
}

/// Copies one file's data to the sink. The header's size was checked already; the copy counts
/// the bytes it really reads, so a reader that yields more than announced cannot get past the
/// per-file limit, and one that yields less is a truncated archive.
fn copy_contents(
    entry: &mut impl Read,
    file: &SelectedFile,
    limits: &BundleLimits,
    state: &StreamState,
    sink: &mut impl EntrySink,
) -> Result<(), ExtractError> {
    let mut limited = entry.take(limits.max_file_bytes.saturating_add(1));
    let mut buffer = vec![0; 64 * 1024];
    let mut copied: u64 = 0;
    loop {
        let n = match limited.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(stream_error(state, &Position::After(file.path.clone()), source));
            }
        };
        copied += n as u64;
        if copied > limits.max_file_bytes {
            return Err(ExtractError::FileTooLarge {
                path: file.path.clone(),
                size: copied,
                limit: limits.max_file_bytes,
            });
        }
        sink.write_chunk(file, &buffer[..n])?;
    }
    if copied != file.size {
        return Err(ExtractError::TruncatedEntry { path: file.path.clone(), expected: file.size, actual: copied });
    }
    Ok(())
}

/// Turns an I/O error from the stream into the typed error a limit recorded, or into a generic
/// "corrupt or truncated" error that says where it happened.
fn stream_error(state: &StreamState, position: &Position, source: io::Error) -> ExtractError {
    let position = match position {
        Position::Start => "at the start".to_owned(),
        Position::After(path) => format!("after entry {path}"),
    };
    match state.problem() {
        Some(StreamProblem::ArchiveTooLarge { limit }) => ExtractError::ArchiveTooLarge { position, limit },
        Some(StreamProblem::DecompressedTooLarge { limit }) => ExtractError::DecompressedTooLarge { position, limit },
        None => ExtractError::ReadArchive { position, source },
    }
}

/// Names a refused entry type for error messages.
fn kind_name(entry_type: tar::EntryType, link_name: Option<&[u8]>) -> String {
    let target = || display_path(link_name.unwrap_or_default());
    match entry_type {
        tar::EntryType::Symlink => format!("symlink to {}", target()),
        tar::EntryType::Link => format!("hard link to {}", target()),
        tar::EntryType::Char => "character device".to_owned(),
        tar::EntryType::Block => "block device".to_owned(),
        tar::EntryType::Fifo => "fifo".to_owned(),
        tar::EntryType::GNUSparse => "sparse file".to_owned(),
        other => format!("entry of type {:?}", char::from(other.as_byte())),
    }
}
