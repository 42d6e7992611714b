//! Packing the workspace into a tar.gz written to a file, bounded by the archive's size.
//!
//! The walk never follows a symlink: directories are read in byte order of their names, each
//! directory's entry before its contents; files are opened with `O_NOFOLLOW` and stored with
//! the size they had when opened (a file that shrinks meanwhile is padded with zeros, one that
//! grows is cut), so a workspace that changes under the walk still gives a valid archive.

use std::cell::Cell;
use std::fs::{File, Metadata};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::rc::Rc;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::{ArchiveError, MAX_PATH_BYTES, MAX_SKIPPED_LISTED, io, symlink_escape};

/// An archive written to its file, which is rewound to the start.
pub(super) struct Packed {
    pub(super) file: File,
    pub(super) sha256: String,
    pub(super) size_bytes: u64,
    pub(super) file_count: usize,
    pub(super) skipped: Vec<String>,
}

/// Packs `root` into `file` (named `file_path` in messages), leaving out the `exclude` paths and
/// refusing an archive over `max_bytes`.
pub(super) fn pack(
    root: &Path,
    exclude: &[String],
    max_bytes: u64,
    file: File,
    file_path: &Path,
) -> Result<Packed, ArchiveError> {
    let written = Rc::new(Cell::new(0));
    let writer = LimitedWriter {
        inner: BufWriter::new(file),
        hasher: Sha256::new(),
        written: Rc::clone(&written),
        limit: max_bytes,
    };
    let mut packer = Packer {
        root,
        exclude,
        builder: tar::Builder::new(GzEncoder::new(writer, Compression::fast())),
        file_count: 0,
        skipped: Vec::new(),
    };
    let over_limit = |error: ArchiveError| {
        if written.get() > max_bytes { ArchiveError::TooLarge { limit: max_bytes } } else { error }
    };
    packer.walk().map_err(over_limit)?;
    let (file_count, skipped) = (packer.file_count, packer.skipped);
    let finish = |source| over_limit(io("write", file_path, source));
    let writer = packer.builder.into_inner().and_then(GzEncoder::finish).map_err(finish)?;
    let mut file = writer.inner.into_inner().map_err(|error| finish(error.into_error()))?;
    file.rewind().map_err(|source| io("rewind", file_path, source))?;
    Ok(Packed { file, sha256: hex::encode(writer.hasher.finalize()), size_bytes: written.get(), file_count, skipped })
}

struct Packer<'a, W: Write> {
    root: &'a Path,
    exclude: &'a [String],
    builder: tar::Builder<W>,
    file_count: usize,
    skipped: Vec<String>,
}

/// Counts and hashes what passes through, and fails once more than `limit` bytes were written.
struct LimitedWriter<W> {
    inner: W,
    hasher: Sha256,
    written: Rc<Cell<u64>>,
    limit: u64,
}

// === impl Packer ===

impl<W: Write> Packer<'_, W> {
    /// Adds everything under the root, depth first, each directory before its contents.
    fn walk(&mut self) -> Result<(), ArchiveError> {
        // Relative paths still to visit, the next one last.
        let mut pending = self.children("")?;
        while let Some(path) = pending.pop() {
            if self.exclude.contains(&path) {
                continue;
            }
            let full_path = self.root.join(&path);
            let metadata = match std::fs::symlink_metadata(&full_path) {
                Ok(metadata) => metadata,
                // Removed since its directory was read.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(io("inspect", &full_path, source)),
            };
            let file_type = metadata.file_type();
            if file_type.is_dir() {
                self.append(&path, &metadata, tar::EntryType::Directory, io::empty(), 0)?;
                let children = self.children(&path)?;
                pending.extend(children);
            } else if file_type.is_file() {
                self.add_file(&path, &full_path)?;
            } else if file_type.is_symlink() {
                self.add_symlink(&path, &full_path, &metadata)?;
            } else {
                self.skip(path);
            }
        }
        Ok(())
    }

    /// The entries of directory `path` (relative; "" for the root) that can be archived, in
    /// reverse byte order so that popping visits them in order. Others are listed as skipped.
    fn children(&mut self, path: &str) -> Result<Vec<String>, ArchiveError> {
        let directory = self.root.join(path);
        let entries = std::fs::read_dir(&directory).map_err(|source| io("read", &directory, source))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| io("read", &directory, source))?;
            let name = entry.file_name();
            let child = match name.to_str() {
                Some(name) if path.is_empty() => name.to_owned(),
                Some(name) => format!("{path}/{name}"),
                None => {
                    self.skip(format!("{path}/{}", name.to_string_lossy()));
                    continue;
                }
            };
            if dari_bundle::check_bundle_path(child.as_bytes(), MAX_PATH_BYTES).is_err() {
                self.skip(child);
                continue;
            }
            names.push(child);
        }
        names.sort_unstable_by(|a, b| b.cmp(a));
        Ok(names)
    }

    fn add_file(&mut self, path: &str, full_path: &Path) -> Result<(), ArchiveError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(full_path);
        let file = match file {
            Ok(file) => file,
            // Removed, or replaced by a symlink, since its directory was read.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) if error.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => return Ok(()),
            Err(source) => return Err(io("open", full_path, source)),
        };
        let metadata = file.metadata().map_err(|source| io("inspect", full_path, source))?;
        if !metadata.is_file() {
            self.skip(path.to_owned());
            return Ok(());
        }
        let size = metadata.len();
        // Exactly `size` bytes, whatever happens to the file meanwhile.
        let contents = file.take(size).chain(io::repeat(0)).take(size);
        self.append(path, &metadata, tar::EntryType::Regular, contents, size)?;
        self.file_count += 1;
        Ok(())
    }

    fn add_symlink(&mut self, path: &str, full_path: &Path, metadata: &Metadata) -> Result<(), ArchiveError> {
        let target = std::fs::read_link(full_path).map_err(|source| io("read the link", full_path, source))?;
        let Some(target) = target.to_str().filter(|target| symlink_escape(path, target).is_none()) else {
            self.skip(path.to_owned());
            return Ok(());
        };
        let mut header = header(metadata, tar::EntryType::Symlink, 0);
        self.builder.append_link(&mut header, path, target).map_err(|source| io("archive", full_path, source))
    }

    fn append(
        &mut self,
        path: &str,
        metadata: &Metadata,
        entry_type: tar::EntryType,
        contents: impl Read,
        size: u64,
    ) -> Result<(), ArchiveError> {
        let mut header = header(metadata, entry_type, size);
        self.builder
            .append_data(&mut header, path, contents)
            .map_err(|source| io("archive", &self.root.join(path), source))
    }

    fn skip(&mut self, path: String) {
        if self.skipped.len() < MAX_SKIPPED_LISTED {
            self.skipped.push(path);
        }
    }
}

/// A header with the entry's mode and mtime, and no owner: a restore writes as its own user.
fn header(metadata: &Metadata, entry_type: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_size(size);
    header.set_mode(metadata.mode() & 0o777);
    header.set_mtime(u64::try_from(metadata.mtime()).unwrap_or(0));
    header.set_uid(0);
    header.set_gid(0);
    header
}

// === impl LimitedWriter ===

impl<W: Write> Write for LimitedWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let written = self.written.get() + buffer.len() as u64;
        self.written.set(written);
        if written > self.limit {
            return Err(io::Error::other(format!("the archive passed its limit of {} bytes", self.limit)));
        }
        let n = self.inner.write(buffer)?;
        // Count only what was really written.
        self.written.set(written - (buffer.len() - n) as u64);
        self.hasher.update(&buffer[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
