//! Unpacking an untrusted workspace archive over the workspace.
//!
//! The archive is read twice. The first pass checks every entry and writes nothing: regular
//! files, directories and symlinks only; relative paths without `.` or `..` components (a
//! leading `./` is dropped); no path twice, none inside an earlier file or symlink of the
//! archive, none under `.dari/agent-resources`; symlink targets that stay inside the workspace.
//! The second pass writes: each missing parent directory is created, a parent that is a symlink
//! in the workspace is refused, and each file or symlink is made beside its place and renamed
//! over whatever had its path, so nothing is ever written through a symlink. Directory modes are
//! applied last, deepest first, so a read-only directory still receives its files.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufReader, Read, Seek};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use flate2::read::GzDecoder;

use super::{ArchiveError, MAX_ENTRIES, MAX_PATH_BYTES, io, symlink_escape};
use crate::bundle::AGENT_RESOURCES;

/// Checks the whole archive in `file` (from its start), then writes it over `root`; returns how
/// many regular files it wrote.
pub(super) fn unpack(mut file: File, root: &Path) -> Result<usize, ArchiveError> {
    file.rewind().map_err(ArchiveError::ReadArchive)?;
    let file_count = for_each_entry(&mut file, |_, _| Ok(()))?;
    file.rewind().map_err(ArchiveError::ReadArchive)?;
    let mut writer = Writer { root, directories: Vec::new() };
    for_each_entry(&mut file, |checked, entry| writer.write(checked, entry))?;
    writer.finish()?;
    Ok(file_count)
}

/// An entry that passed the checks.
pub(super) struct Checked {
    pub(super) path: String,
    pub(super) kind: Kind,
    pub(super) mode: u32,
    pub(super) mtime: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Directory,
    File,
    Symlink { target: String },
}

/// Checks every entry of the archive and hands it to `visit`; returns the number of files.
fn for_each_entry(
    file: &mut File,
    mut visit: impl FnMut(&Checked, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<usize, ArchiveError> {
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let mut checker = Checker::default();
    let mut file_count = 0;
    for entry in archive.entries().map_err(ArchiveError::ReadArchive)? {
        let mut entry = entry.map_err(ArchiveError::ReadArchive)?;
        let Some(checked) = checker.check(&entry)? else { continue };
        if checked.kind == Kind::File {
            file_count += 1;
        }
        visit(&checked, &mut entry)?;
    }
    Ok(file_count)
}

/// The rules for entries, and what they need to remember across the archive.
#[derive(Default)]
pub(super) struct Checker {
    /// Every path seen, and whether it can hold other entries.
    seen: HashMap<String, bool>,
}

// === impl Checker ===

impl Checker {
    /// The entry, checked; None for an entry that describes no file (the root, a global header).
    pub(super) fn check<R: Read>(&mut self, entry: &tar::Entry<'_, R>) -> Result<Option<Checked>, ArchiveError> {
        let raw_path = entry.path_bytes();
        let shown = String::from_utf8_lossy(&raw_path).escape_debug().to_string();
        let refuse = |problem: &str| ArchiveError::UnsafeEntry { path: shown.clone(), problem: problem.to_owned() };
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Directory,
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let target = std::str::from_utf8(&target).map_err(|_| refuse("its target is not UTF-8"))?;
                Kind::Symlink { target: target.to_owned() }
            }
            tar::EntryType::XGlobalHeader => return Ok(None),
            tar::EntryType::Link => return Err(refuse("it is a hard link, which a workspace archive never holds")),
            tar::EntryType::Char | tar::EntryType::Block => return Err(refuse("it is a device")),
            tar::EntryType::Fifo => return Err(refuse("it is a fifo")),
            other => return Err(refuse(&format!("it is an entry of type {:?}", char::from(other.as_byte())))),
        };
        let mut path: &[u8] = &raw_path;
        while let Some(rest) = path.strip_prefix(b"./") {
            path = rest;
        }
        let path = path.strip_suffix(b"/").unwrap_or(path);
        if path.is_empty() || path == b"." {
            return match kind {
                Kind::Directory => Ok(None),
                _ => Err(refuse("it is not a directory but names the workspace itself")),
            };
        }
        let path = dari_bundle::check_bundle_path(path, MAX_PATH_BYTES)
            .map_err(|problem| refuse(&format!("the path {problem}")))?
            .to_owned();
        if path == AGENT_RESOURCES || path.starts_with(&format!("{AGENT_RESOURCES}/")) {
            return Err(refuse("the source bundle is materialized again, never restored"));
        }
        for (index, _) in path.match_indices('/') {
            let parent = &path[..index];
            if self.seen.get(parent) == Some(&false) {
                return Err(refuse(&format!("it would be written through {parent}, which is not a directory")));
            }
        }
        if let Kind::Symlink { target } = &kind
            && let Some(problem) = symlink_escape(&path, target)
        {
            return Err(refuse(problem));
        }
        if self.seen.len() >= MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries { limit: MAX_ENTRIES });
        }
        if self.seen.insert(path.clone(), kind == Kind::Directory).is_some() {
            return Err(refuse("it appears twice in the archive"));
        }
        let mode = header.mode().map_err(|_| refuse("its mode is malformed"))? & 0o777;
        let mtime = header.mtime().unwrap_or(0);
        Ok(Some(Checked { path, kind, mode, mtime }))
    }
}

/// Writes checked entries under the root.
struct Writer<'a> {
    root: &'a Path,
    /// Directories written, with their modes, applied at the end.
    directories: Vec<(PathBuf, u32)>,
}

// === impl Writer ===

impl Writer<'_> {
    fn write(&mut self, checked: &Checked, contents: &mut dyn Read) -> Result<(), ArchiveError> {
        let parent = self.parent_of(&checked.path)?;
        let target = self.root.join(&checked.path);
        match &checked.kind {
            Kind::Directory => {
                self.make_directory(&target)?;
                self.directories.push((target, checked.mode));
                Ok(())
            }
            Kind::File => {
                let temporary = beside(&parent, &target);
                let written = write_file(&temporary, contents, checked);
                let placed = written.and_then(|()| place(&temporary, &target));
                if placed.is_err() {
                    let _ = std::fs::remove_file(&temporary);
                }
                placed
            }
            Kind::Symlink { target: link_target } => {
                let temporary = beside(&parent, &target);
                std::os::unix::fs::symlink(link_target, &temporary)
                    .map_err(|source| io("create the symlink", &temporary, source))?;
                let placed = place(&temporary, &target);
                if placed.is_err() {
                    let _ = std::fs::remove_file(&temporary);
                }
                placed
            }
        }
    }

    /// Makes sure every directory above `path` exists as a directory, never through a symlink;
    /// returns the closest one.
    fn parent_of(&self, path: &str) -> Result<PathBuf, ArchiveError> {
        for (index, _) in path.match_indices('/') {
            let parent = &path[..index];
            let full_path = self.root.join(parent);
            let is_symlink =
                std::fs::symlink_metadata(&full_path).is_ok_and(|metadata| metadata.file_type().is_symlink());
            if is_symlink {
                return Err(ArchiveError::UnsafeEntry {
                    path: path.to_owned(),
                    problem: format!("it would be written through the symlink {parent} in the workspace"),
                });
            }
            self.make_directory(&full_path)?;
        }
        Ok(match path.rfind('/') {
            Some(index) => self.root.join(&path[..index]),
            None => self.root.to_owned(),
        })
    }

    /// Makes `full_path` a directory: keeps one, creates a missing one, and replaces a file or a
    /// symlink that had its path (removing a symlink never touches what it points to).
    fn make_directory(&self, full_path: &Path) -> Result<(), ArchiveError> {
        match std::fs::symlink_metadata(full_path) {
            Ok(metadata) if metadata.is_dir() => return Ok(()),
            Ok(_) => std::fs::remove_file(full_path).map_err(|source| io("replace", full_path, source))?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(io("inspect", full_path, source)),
        }
        std::fs::create_dir(full_path).map_err(|source| io("create the directory", full_path, source))
    }

    /// Applies the directories' modes, deepest first.
    fn finish(mut self) -> Result<(), ArchiveError> {
        self.directories.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        for (path, mode) in &self.directories {
            std::fs::set_permissions(path, Permissions::from_mode(*mode))
                .map_err(|source| io("set the mode of", path, source))?;
        }
        Ok(())
    }
}

/// A fresh name in `parent` for what will become `target`.
fn beside(parent: &Path, target: &Path) -> PathBuf {
    let name = target.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let short: String = name.chars().take(64).collect();
    parent.join(format!(".{short}.restore-{:016x}", fastrand::u64(..)))
}

/// Writes a file's contents, mode and mtime at a fresh path.
fn write_file(path: &Path, contents: &mut dyn Read, checked: &Checked) -> Result<(), ArchiveError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|source| io("create", path, source))?;
    io::copy(contents, &mut file).map_err(ArchiveError::ReadArchive)?;
    file.set_permissions(Permissions::from_mode(checked.mode)).map_err(|source| io("set the mode of", path, source))?;
    let _ = file.set_modified(UNIX_EPOCH + Duration::from_secs(checked.mtime));
    Ok(())
}

/// Renames `temporary` to `target`, first removing a directory that had its path (a file or a
/// symlink is replaced by the rename itself, which never follows it).
fn place(temporary: &Path, target: &Path) -> Result<(), ArchiveError> {
    if std::fs::symlink_metadata(target).is_ok_and(|metadata| metadata.is_dir()) {
        std::fs::remove_dir_all(target).map_err(|source| io("replace", target, source))?;
    }
    std::fs::rename(temporary, target).map_err(|source| io("rename", temporary, source))
}
