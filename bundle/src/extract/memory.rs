//! Reading a bundle archive into memory, with the same checks as extraction, for the server to
//! look at a snapshot (its dari.yml, its file list) without touching the disk.

use std::collections::HashMap;

use super::ExtractError;
use super::entries::{EntrySink, walk_archive};
use crate::files::{self, ReadFileError};
use crate::limits::BundleLimits;
use crate::select::SelectedFile;

/// The files of an archive read by [`read_archive`]: every file's path, size and execute bit, and
/// the contents of those no larger than the per-file read limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFiles {
    files: Vec<SelectedFile>,
    contents: HashMap<String, Vec<u8>>,
    max_read_bytes_per_file: u64,
    sha256: String,
}

/// Reads the tar.gz `archive` into memory with the same entry checks as [`super::extract`].
/// Contents are kept only for files of at most `max_read_bytes_per_file` bytes; larger files are
/// listed but [`ArchiveFiles::read_file`] refuses them.
pub fn read_archive(
    archive: &[u8],
    limits: &BundleLimits,
    max_read_bytes_per_file: u64,
) -> Result<ArchiveFiles, ExtractError> {
    let mut sink = MemorySink { max_read_bytes_per_file, contents: HashMap::new(), current: None };
    let summary = walk_archive(archive, limits, None, &mut sink)?;
    Ok(ArchiveFiles { files: summary.files, contents: sink.contents, max_read_bytes_per_file, sha256: summary.sha256 })
}

/// Keeps small files' contents.
struct MemorySink {
    max_read_bytes_per_file: u64,
    contents: HashMap<String, Vec<u8>>,
    current: Option<Vec<u8>>,
}

// === impl ArchiveFiles ===

impl ArchiveFiles {
    /// Every file, sorted by path.
    pub fn files(&self) -> &[SelectedFile] {
        &self.files
    }

    /// Lowercase hex sha256 of the compressed archive.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Returns the contents of the file at `path`, failing if it is larger than `max_bytes` or
    /// was too large to keep in memory.
    pub fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, ReadFileError> {
        let Some(index) = files::find(&self.files, path) else {
            return Err(ReadFileError::NotInBundle { path: path.to_owned() });
        };
        let size = self.files[index].size;
        if size > max_bytes {
            return Err(ReadFileError::TooLarge { path: path.to_owned(), size, limit: max_bytes });
        }
        match self.contents.get(path) {
            Some(contents) => Ok(contents.clone()),
            None => Err(ReadFileError::NotLoaded {
                path: path.to_owned(),
                size,
                loaded_limit: self.max_read_bytes_per_file,
            }),
        }
    }

    /// Whether `path` is one of the archive's files.
    pub fn contains(&self, path: &str) -> bool {
        files::find(&self.files, path).is_some()
    }

    /// The file paths, in sorted order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|file| file.path.as_str())
    }
}

// === impl MemorySink ===

impl EntrySink for MemorySink {
    fn directory(&mut self, _path: &str) -> Result<(), ExtractError> {
        Ok(())
    }

    fn start_file(&mut self, file: &SelectedFile) -> Result<bool, ExtractError> {
        let keep = file.size <= self.max_read_bytes_per_file;
        // The size is at most the per-file limit, checked before this call.
        self.current = keep.then(|| Vec::with_capacity(file.size as usize));
        Ok(keep)
    }

    fn write_chunk(&mut self, _file: &SelectedFile, chunk: &[u8]) -> Result<(), ExtractError> {
        if let Some(current) = self.current.as_mut() {
            current.extend_from_slice(chunk);
        }
        Ok(())
    }

    fn finish_file(&mut self, file: &SelectedFile) -> Result<(), ExtractError> {
        if let Some(contents) = self.current.take() {
            self.contents.insert(file.path.clone(), contents);
        }
        Ok(())
    }
}
