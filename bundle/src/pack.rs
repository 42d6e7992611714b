//! Packing selected files into a deterministic tar.gz: the same file contents and execute bits
//! always give the same bytes, whatever the mtimes, owners or umask on the packing machine, so
//! the archive's sha256 identifies the source.

use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use crate::limits::{BundleLimits, Limit, Size};
use crate::os::{self, OpenRegularError};
use crate::path::{BundlePathError, check_bundle_path};
use crate::select::{SelectedFile, SelectedFiles};

/// A packed bundle, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedBundle {
    /// The tar.gz bytes.
    pub archive: Vec<u8>,
    /// Lowercase hex sha256 of `archive`.
    pub sha256: String,
    /// Length of `archive`.
    pub size_bytes: u64,
    pub file_count: usize,
    /// Sum of the file sizes as packed, without tar headers.
    pub uncompressed_bytes: u64,
}

/// Errors from [`pack`]. Each names the offending path and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(
        "refuse {path}: it has become a symlink since it was selected; replace it with a regular file and deploy again"
    )]
    Symlink { path: String },
    #[error(
        "refuse {path}: it has become a {kind} since it was selected; replace it with a regular file and deploy again"
    )]
    NotRegular { path: String, kind: &'static str },
    #[error("open {path} for packing; check that it still exists and is readable, then deploy again")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read {path} for packing; check that it is readable, then deploy again")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refuse {path}: the path {problem}; select the files with select_files")]
    InvalidPath { path: String, problem: BundlePathError },
    #[error("refuse {path}: it is listed twice; select the files with select_files")]
    DuplicatePath { path: String },
    #[error(
        "pack {root}: {count} files is over the {limit}-file limit; add build outputs and dependencies to .gitignore"
    )]
    TooManyFiles { root: PathBuf, count: usize, limit: usize },
    #[error("{path} is {}, over the {} limit for one file; add it to .gitignore or remove it", Size(*size), Limit(*limit))]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error(
        "files under {root} add up to more than {} ({} once {path} is counted); add large files to .gitignore or remove them",
        Limit(*limit),
        Size(*total)
    )]
    TotalTooLarge { root: PathBuf, path: String, total: u64, limit: u64 },
    #[error(
        "the bundle of {root} compresses to {}, over the {} limit for an archive; add large files to .gitignore or remove them",
        Size(*size),
        Limit(*limit)
    )]
    ArchiveTooLarge { root: PathBuf, size: u64, limit: u64 },
    #[error("add {path} to the archive; check the path and free memory, then deploy again")]
    Append {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("finish the archive of {root}; check free memory, then deploy again")]
    Finish {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Packs `files` into a deterministic tar.gz.
///
/// Each file is opened again without following symlinks and checked against `limits`, because it
/// may have changed since selection. Entries are regular files only, in byte order of their
/// paths, with mtime 0, uid and gid 0, no owner names and mode 0755 or 0644; paths over 100 bytes
/// use GNU long names. The gzip header has mtime 0 and no file name.
pub fn pack(files: &SelectedFiles, limits: &BundleLimits) -> Result<PackedBundle, PackError> {
    let root = &files.root;
    if files.files.len() > limits.max_files {
        return Err(PackError::TooManyFiles { root: root.clone(), count: files.files.len(), limit: limits.max_files });
    }
    let mut ordered: Vec<&SelectedFile> = files.files.iter().collect();
    ordered.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    if let Some(pair) = ordered.windows(2).find(|pair| pair[0].path == pair[1].path) {
        return Err(PackError::DuplicatePath { path: pair[0].path.clone() });
    }

    let encoder = GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), Compression::default());
    let mut builder = tar::Builder::new(encoder);
    let mut total_bytes: u64 = 0;
    for file in &ordered {
        let path = check_bundle_path(file.path.as_bytes(), limits.max_path_bytes)
            .map_err(|problem| PackError::InvalidPath { path: file.path.clone(), problem })?;
        let (contents, executable) = read_for_pack(files, path, limits)?;
        total_bytes = total_bytes.saturating_add(contents.len() as u64);
        if total_bytes > limits.max_total_bytes {
            return Err(PackError::TotalTooLarge {
                root: root.clone(),
                path: path.to_owned(),
                total: total_bytes,
                limit: limits.max_total_bytes,
            });
        }
        let mut header = file_header(contents.len() as u64, executable);
        builder
            .append_data(&mut header, path, contents.as_slice())
            .map_err(|source| PackError::Append { path: path.to_owned(), source })?;
    }
    let archive = builder
        .into_inner()
        .and_then(|encoder| encoder.finish())
        .map_err(|source| PackError::Finish { root: root.clone(), source })?;

    let size_bytes = archive.len() as u64;
    if size_bytes > limits.max_archive_bytes {
        return Err(PackError::ArchiveTooLarge {
            root: root.clone(),
            size: size_bytes,
            limit: limits.max_archive_bytes,
        });
    }
    Ok(PackedBundle {
        sha256: sha256_hex(&archive),
        archive,
        size_bytes,
        file_count: ordered.len(),
        uncompressed_bytes: total_bytes,
    })
}

/// Lowercase hex sha256 of `bytes`, the form used to name and verify archives.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads one file as it is now, returning its contents and whether it has any execute bit.
fn read_for_pack(files: &SelectedFiles, path: &str, limits: &BundleLimits) -> Result<(Vec<u8>, bool), PackError> {
    let full_path = files.root.join(path);
    let (file, metadata) = os::open_regular(&full_path).map_err(|e| match e {
        OpenRegularError::Symlink => PackError::Symlink { path: path.to_owned() },
        OpenRegularError::NotRegular(kind) => PackError::NotRegular { path: path.to_owned(), kind },
        OpenRegularError::Io(source) => PackError::Open { path: full_path.clone(), source },
    })?;
    let too_large = |size| PackError::FileTooLarge { path: path.to_owned(), size, limit: limits.max_file_bytes };
    if metadata.len() > limits.max_file_bytes {
        return Err(too_large(metadata.len()));
    }
    // The file may grow between the metadata call and the read, so the read is bounded too.
    let mut contents = Vec::with_capacity(metadata.len() as usize);
    file.take(limits.max_file_bytes.saturating_add(1))
        .read_to_end(&mut contents)
        .map_err(|source| PackError::Read { path: full_path, source })?;
    if contents.len() as u64 > limits.max_file_bytes {
        return Err(too_large(contents.len() as u64));
    }
    Ok((contents, metadata.permissions().mode() & 0o111 != 0))
}

/// The header of a regular file entry, with everything but the path and checksum, which
/// `append_data` sets.
fn file_header(size: u64, executable: bool) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(if executable { 0o755 } else { 0o644 });
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    // `new_gnu` zero-fills the owner names, device numbers and the rest, so they stay empty.
    header
}

#[cfg(test)]
mod tests;
