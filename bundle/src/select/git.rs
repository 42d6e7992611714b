//! Selection inside a Git work tree: ask git which files it tracks or would track, so that
//! `.gitignore`, `.git/info/exclude` and the global excludes file all apply.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::process::{Output, Stdio};

use super::{Collector, SelectError, Selection};
use crate::command::{ChildEnv, ChildStdio, command};
use crate::path::{BundlePathError, display_path};

const IS_INSIDE_WORK_TREE: [&str; 2] = ["rev-parse", "--is-inside-work-tree"];
const LS_FILES: [&str; 5] = ["ls-files", "--cached", "--others", "--exclude-standard", "-z"];

/// Decides whether `root` is inside a Git work tree. Without git installed, or outside a
/// repository, the answer is [`Selection::Walk`]; any other git failure is an error, because
/// walking a repository we failed to read would pack ignored files.
pub(super) fn detect(root: &Path) -> Result<Selection, SelectError> {
    let output = match run_git(root, &IS_INSIDE_WORK_TREE) {
        Ok(output) => output,
        Err(SelectError::RunGit { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(Selection::Walk);
        }
        Err(e) => return Err(e),
    };
    if output.status.success() {
        // "false" means the root is inside a `.git` directory, which is not a work tree.
        return Ok(if output.stdout.trim_ascii() == b"true" { Selection::Git } else { Selection::Walk });
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("not a git repository") {
        return Ok(Selection::Walk);
    }
    Err(git_failed(root, &IS_INSIDE_WORK_TREE, &output))
}

/// Adds every file git lists under the collector's root. Paths deleted from disk are skipped;
/// symlinks, submodules and other non-regular files are refused.
pub(super) fn collect(collector: &mut Collector<'_>) -> Result<(), SelectError> {
    let root = collector.root;
    let output = run_git(root, &LS_FILES)?;
    if !output.status.success() {
        return Err(git_failed(root, &LS_FILES, &output));
    }
    let mut raw_paths: Vec<&[u8]> = output.stdout.split(|byte| *byte == 0).filter(|raw| !raw.is_empty()).collect();
    // Unmerged paths are listed once per stage.
    raw_paths.sort_unstable();
    raw_paths.dedup();

    let mut checked_dirs = HashSet::new();
    for raw_path in raw_paths {
        // `--others` lists an untracked nested repository as a directory with a trailing '/'.
        if let Some(dir) = raw_path.strip_suffix(b"/") {
            return Err(SelectError::Submodule { path: display_path(dir) });
        }
        let Ok(path) = std::str::from_utf8(raw_path) else {
            return Err(SelectError::InvalidPath { path: display_path(raw_path), problem: BundlePathError::NotUtf8 });
        };
        if !parents_are_directories(root, path, &mut checked_dirs)? {
            continue;
        }
        let full_path = root.join(path);
        let metadata = match fs::symlink_metadata(&full_path) {
            Ok(metadata) => metadata,
            Err(e) if is_gone(&e) => continue,
            Err(source) => {
                return Err(SelectError::Stat { path: full_path, source });
            }
        };
        if metadata.is_dir() {
            return Err(SelectError::Submodule { path: path.to_owned() });
        }
        collector.add(path, &metadata)?;
    }
    Ok(())
}

/// Checks that no parent directory of `path` has been replaced by a symlink, which git would not
/// list but which `root.join(path)` would follow. Returns false when a parent is gone or is no
/// longer a directory, i.e. the file is deleted.
fn parents_are_directories(root: &Path, path: &str, checked_dirs: &mut HashSet<String>) -> Result<bool, SelectError> {
    let mut end = 0;
    while let Some(offset) = path[end..].find('/') {
        end += offset;
        let parent = &path[..end];
        end += 1;
        if checked_dirs.contains(parent) {
            continue;
        }
        let full_path = root.join(parent);
        match fs::symlink_metadata(&full_path) {
            Ok(metadata) if metadata.is_symlink() => {
                return Err(SelectError::Symlink { path: parent.to_owned() });
            }
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => return Ok(false),
            Err(e) if is_gone(&e) => return Ok(false),
            Err(source) => {
                return Err(SelectError::Stat { path: full_path, source });
            }
        }
        checked_dirs.insert(parent.to_owned());
    }
    Ok(true)
}

fn is_gone(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// Runs git in `root` with the user's environment, so their global excludes file applies, but
/// without variables that would point git at another repository, and with messages in English
/// so that [`detect`] can recognise "not a git repository".
fn run_git(root: &Path, args: &[&str]) -> Result<Output, SelectError> {
    let env = ChildEnv {
        inherit: true,
        set: &[("LC_ALL", "C"), ("GIT_OPTIONAL_LOCKS", "0")],
        remove: &["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"],
    };
    let stdio = ChildStdio { stdin: Stdio::null(), stdout: Stdio::piped(), stderr: Stdio::piped() };
    command("git", root, &env, stdio).args(args).output().map_err(|source| SelectError::RunGit {
        root: root.to_owned(),
        args: args.join(" "),
        source,
    })
}

fn git_failed(root: &Path, args: &[&str], output: &Output) -> SelectError {
    SelectError::GitFailed {
        root: root.to_owned(),
        args: args.join(" "),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    }
}

/// Where a deploy came from in Git, for a source snapshot's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitMetadata {
    /// The full hash of `HEAD`.
    pub commit_sha: String,
    /// The branch (`refs/heads/main`), or `HEAD` when detached.
    pub git_ref: String,
    /// Whether the work tree has changes or untracked files.
    pub dirty: bool,
}

/// Reads `HEAD`, its ref and whether the tree is dirty. `None` outside Git, without git, or
/// before the first commit: metadata is informative and never stops a deploy.
pub fn git_metadata(root: &Path) -> Option<GitMetadata> {
    let text = |args: &[&str]| {
        let output = run_git(root, args).ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit_sha = text(&["rev-parse", "--verify", "--quiet", "HEAD"])?;
    let git_ref = text(&["symbolic-ref", "--quiet", "HEAD"]).unwrap_or_else(|| "HEAD".to_owned());
    let dirty =
        text(&["status", "--porcelain", "--untracked-files=normal", "--", "."]).is_none_or(|status| !status.is_empty());
    Some(GitMetadata { commit_sha, git_ref, dirty })
}
