//! Reading single files out of a bundle by path, shared by [`crate::SelectedFiles`] (files on
//! disk) and [`crate::ArchiveFiles`] (files in memory).

use std::io::{self, Read};

use crate::limits::{Limit, Size};
use crate::select::SelectedFile;

/// Errors from `read_file` on a selected or archived bundle.
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    #[error("read {path}: it is not in the bundle; add it under the deploy root and make sure git does not ignore it")]
    NotInBundle { path: String },
    #[error("read {path}: it is {}, over the {} limit for this file; make it smaller", Size(*size), Limit(*limit))]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error(
        "read {path}: it is {}, over the {} that was loaded from the archive for each file; read it with a lower limit or load the archive with a higher one",
        Size(*size),
        Limit(*loaded_limit)
    )]
    NotLoaded { path: String, size: u64, loaded_limit: u64 },
    #[error("read {path}: it has become a symlink since it was selected; replace it with a regular file")]
    Symlink { path: String },
    #[error("read {path}: it has become a {kind} since it was selected; replace it with a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("read {path}; check that it still exists and is readable")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Finds `path` in a list sorted by path, by binary search.
pub(crate) fn find(files: &[SelectedFile], path: &str) -> Option<usize> {
    files.binary_search_by(|file| file.path.as_str().cmp(path)).ok()
}

/// Reads at most `max_bytes` from `reader`, and fails with [`ReadFileError::TooLarge`] when
/// there is more, whatever size was announced.
pub(crate) fn read_limited(mut reader: impl Read, path: &str, max_bytes: u64) -> Result<Vec<u8>, ReadFileError> {
    let mut contents = Vec::new();
    (&mut reader)
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut contents)
        .map_err(|source| ReadFileError::Io { path: path.to_owned(), source })?;
    let read_bytes = contents.len() as u64;
    if read_bytes > max_bytes {
        return Err(ReadFileError::TooLarge { path: path.to_owned(), size: read_bytes, limit: max_bytes });
    }
    Ok(contents)
}
