//! What raw notify events mean for the paths they name, how changes to one path fold together
//! within a window, and the listing of directories that appeared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use notify::EventKind;
use notify::event::{CreateKind, ModifyKind, RenameMode};

use super::ChangeKind;

/// The daemon's own directory under the workspace root, never reported.
pub(super) const DAEMON_DIR: &str = ".dari";
/// Listing new directories stops after this many entries per window, with an error event.
pub(super) const MAX_LISTED_ENTRIES: usize = 10_000;

/// What a raw event means for each path it names. Opening, reading and closing mean nothing.
pub(super) fn classify(event: &notify::Event) -> Vec<(&PathBuf, ChangeKind)> {
    let all = |kind| event.paths.iter().map(|path| (path, kind)).collect();
    match event.kind {
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => all(ChangeKind::Created),
        EventKind::Remove(_) => all(ChangeKind::Removed),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => all(ChangeKind::Renamed),
        // notify also sends the two halves on their own; this only repeats them.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => match &event.paths[..] {
            [from, to] => vec![(from, ChangeKind::Renamed), (to, ChangeKind::Created)],
            _ => Vec::new(),
        },
        EventKind::Modify(_) => all(ChangeKind::Modified),
        EventKind::Access(_) | EventKind::Any | EventKind::Other => Vec::new(),
    }
}

/// Folds one change of `path` into the window's changes.
pub(super) fn merge(changes: &mut BTreeMap<String, ChangeKind>, path: String, kind: ChangeKind) {
    use ChangeKind::{Created, Modified, Removed, Renamed};
    match (changes.get(&path), kind) {
        // Born and gone within the window: nothing to report.
        (Some(Created), Removed | Renamed) => {
            changes.remove(&path);
        }
        // Still new, however often it was written since.
        (Some(Created), Modified) => {}
        // It existed before the window and exists after it.
        (Some(Removed | Renamed), Created) => {
            changes.insert(path, Modified);
        }
        _ => {
            changes.insert(path, kind);
        }
    }
}

pub(super) fn is_new_dir(kind: &EventKind, path: &Path) -> bool {
    match kind {
        EventKind::Create(CreateKind::Folder) => true,
        EventKind::Create(CreateKind::File) => false,
        _ => path.symlink_metadata().is_ok_and(|metadata| metadata.is_dir()),
    }
}

/// Everything under the given directories, relative to the root, without following symlinks.
/// Blocking. The flag is false when the listing stopped at [`MAX_LISTED_ENTRIES`].
pub(super) fn list_new_dirs(root: &Path, dirs: &[PathBuf]) -> (Vec<String>, bool) {
    let mut found = Vec::new();
    let mut stack = dirs.to_vec();
    while let Some(dir) = stack.pop() {
        // It may be gone again already.
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(Result::ok) {
            if found.len() >= MAX_LISTED_ENTRIES {
                return (found, false);
            }
            let path = entry.path();
            let Some(relative) = relative(root, &path) else { continue };
            if is_excluded(&relative) {
                continue;
            }
            if entry.file_type().is_ok_and(|file_type| file_type.is_dir()) {
                stack.push(path);
            }
            found.push(relative);
        }
    }
    (found, true)
}

/// The path relative to the workspace root (`.` for the root itself). Linux separates with `/`.
pub(super) fn relative(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    if relative.as_os_str().is_empty() {
        return Some(".".to_owned());
    }
    Some(relative.to_string_lossy().into_owned())
}

pub(super) fn is_excluded(relative: &str) -> bool {
    relative.strip_prefix(DAEMON_DIR).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
