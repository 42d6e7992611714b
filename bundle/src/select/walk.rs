//! Selection outside Git: a walk of the deploy root that skips [`WALK_SKIPPED_NAMES`] at any
//! depth and never follows a symlink.

use std::fs;
use std::path::PathBuf;

use super::{Collector, SelectError, WALK_SKIPPED_NAMES};
use crate::path::{BundlePathError, display_path};

/// Adds every regular file under the collector's root. The walk keeps an explicit stack rather
/// than recursing, so a deep tree cannot overflow the thread's stack.
pub(super) fn collect(collector: &mut Collector<'_>) -> Result<(), SelectError> {
    let mut pending: Vec<(PathBuf, String)> = vec![(collector.root.to_owned(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|source| SelectError::ReadDir { path: dir.clone(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| SelectError::ReadDir { path: dir.clone(), source })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                let lossy = display_path(name.as_encoded_bytes());
                return Err(SelectError::InvalidPath {
                    path: format!("{prefix}{lossy}"),
                    problem: BundlePathError::NotUtf8,
                });
            };
            if WALK_SKIPPED_NAMES.contains(&name) {
                continue;
            }
            let path = format!("{prefix}{name}");
            // `DirEntry::metadata` does not follow symlinks, so a symlink shows up as one.
            let metadata = entry.metadata().map_err(|source| SelectError::Stat { path: entry.path(), source })?;
            if metadata.is_dir() {
                pending.push((entry.path(), format!("{path}/")));
            } else {
                collector.add(&path, &metadata)?;
            }
        }
    }
    Ok(())
}
