//! Writing checked entries to a fresh partial directory, and removing that directory unless it
//! was renamed into place.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::ExtractError;
use super::entries::EntrySink;
use crate::os::O_NOFOLLOW;
use crate::select::SelectedFile;

/// A fresh directory next to the destination, removed on drop unless renamed into place.
pub(super) struct PartialDir {
    path: PathBuf,
    renamed: bool,
}

/// An [`EntrySink`] that writes into a partial directory. The tree is fresh and this code never
/// creates a symlink, so creating each component with `create_dir` and each file with
/// `create_new` and `O_NOFOLLOW` cannot be redirected outside it.
pub(super) struct DiskSink {
    root: PathBuf,
    /// Directories created so far, as bundle paths.
    dirs: BTreeSet<String>,
    /// Files written so far, with whether they are executable.
    files: Vec<(String, bool)>,
    current: Option<File>,
}

/// Numbers partial directories made by this process, so concurrent extractions into the same
/// parent do not collide.
static PARTIAL_COUNTER: AtomicU64 = AtomicU64::new(0);

// === impl PartialDir ===

impl PartialDir {
    /// Creates `.{dest_name}.partial-{pid}-{n}` in `parent`, with mode 0755.
    pub(super) fn create(parent: &Path, dest_name: &OsStr) -> Result<PartialDir, ExtractError> {
        loop {
            let n = PARTIAL_COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut name = OsStr::new(".").to_owned();
            name.push(dest_name);
            name.push(format!(".partial-{}-{n}", std::process::id()));
            let path = parent.join(name);
            match fs::create_dir(&path) {
                Ok(()) => {
                    let partial = PartialDir { path, renamed: false };
                    set_mode(&partial.path, 0o755)?;
                    return Ok(partial);
                }
                // Left behind by a crashed process that had the same pid; take the next number.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(ExtractError::CreateDir { path, source }),
            }
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn rename_to(mut self, dest: &Path) -> Result<(), ExtractError> {
        fs::rename(&self.path, dest).map_err(|source| ExtractError::Rename {
            from: self.path.clone(),
            to: dest.to_owned(),
            source,
        })?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for PartialDir {
    fn drop(&mut self) {
        if self.renamed {
            return;
        }
        // A read-only tree cannot be removed by a process without CAP_DAC_OVERRIDE, so on failure
        // make the directories writable and try once more. Drop cannot report an error; the
        // caller already has the error that caused the cleanup.
        if fs::remove_dir_all(&self.path).is_err() {
            make_dirs_writable(&self.path);
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn make_dirs_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, Permissions::from_mode(0o755));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|file_type| file_type.is_dir()) {
            make_dirs_writable(&entry.path());
        }
    }
}

// === impl DiskSink ===

impl DiskSink {
    pub(super) fn new(root: PathBuf) -> DiskSink {
        DiskSink { root, dirs: BTreeSet::new(), files: Vec::new(), current: None }
    }

    /// Sets files to 0444 or 0555 and directories to 0555, children before parents and the root
    /// last, so no step needs write access to a directory already made read-only.
    pub(super) fn make_read_only(&self) -> Result<(), ExtractError> {
        for (path, executable) in &self.files {
            set_mode(&self.root.join(path), if *executable { 0o555 } else { 0o444 })?;
        }
        // In byte order a directory sorts before everything inside it, so reverse order visits
        // children first.
        for path in self.dirs.iter().rev() {
            set_mode(&self.root.join(path), 0o555)?;
        }
        set_mode(&self.root, 0o555)
    }

    /// Creates `path` and its parents, one component at a time.
    fn ensure_dir(&mut self, path: &str) -> Result<(), ExtractError> {
        let ends = path.match_indices('/').map(|(index, _)| index).chain([path.len()]);
        for end in ends {
            let dir = &path[..end];
            if self.dirs.contains(dir) {
                continue;
            }
            let full_path = self.root.join(dir);
            fs::create_dir(&full_path).map_err(|source| ExtractError::CreateDir { path: full_path.clone(), source })?;
            set_mode(&full_path, 0o755)?;
            self.dirs.insert(dir.to_owned());
        }
        Ok(())
    }
}

impl EntrySink for DiskSink {
    fn directory(&mut self, path: &str) -> Result<(), ExtractError> {
        self.ensure_dir(path)
    }

    fn start_file(&mut self, file: &SelectedFile) -> Result<bool, ExtractError> {
        if let Some((parent, _)) = file.path.rsplit_once('/') {
            self.ensure_dir(parent)?;
        }
        let full_path = self.root.join(&file.path);
        let mode = if file.executable { 0o755 } else { 0o644 };
        let handle = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(O_NOFOLLOW)
            .open(&full_path)
            .map_err(|source| ExtractError::CreateFile { path: full_path.clone(), source })?;
        // The umask may have cleared bits that `mode` asked for.
        handle
            .set_permissions(Permissions::from_mode(mode))
            .map_err(|source| ExtractError::SetPermissions { path: full_path, source })?;
        self.current = Some(handle);
        self.files.push((file.path.clone(), file.executable));
        Ok(true)
    }

    fn write_chunk(&mut self, file: &SelectedFile, chunk: &[u8]) -> Result<(), ExtractError> {
        let handle = self.current.as_mut().expect("start_file opens the file before any chunk");
        handle.write_all(chunk).map_err(|source| ExtractError::WriteFile { path: self.root.join(&file.path), source })
    }

    fn finish_file(&mut self, _file: &SelectedFile) -> Result<(), ExtractError> {
        self.current = None;
        Ok(())
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ExtractError> {
    fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(|source| ExtractError::SetPermissions { path: path.to_owned(), source })
}
