//! The workspace root every tool is confined to, and the resolution of a tool's `path` argument.
//!
//! pi accepts any path on the machine. We resolve like pi (a leading `@` dropped, Unicode spaces
//! made plain, `~` meaning the workspace, relative paths against the workspace) and then refuse
//! anything that lands outside the workspace once symlinks are followed.
//!
//! Models are told the workspace is `/workspace` (where a jailed or remote sandbox mounts it).
//! Where it lives elsewhere (an unjailed local sandbox), `/workspace` and the paths under it
//! still name the workspace.

use std::path::{Component, Path, PathBuf};

use super::ToolError;

/// The workspace's path as models are told it.
pub const MODEL_ROOT: &str = "/workspace";

#[derive(Clone, Debug)]
pub struct Workspace {
    /// Canonical (symlink-free) absolute path of the workspace root.
    root: PathBuf,
}

impl Workspace {
    /// Opens a workspace root, which must exist.
    pub fn new(root: &Path) -> std::io::Result<Workspace> {
        Ok(Workspace { root: std::fs::canonicalize(root)? })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a tool's path argument to an absolute path inside the workspace. The part of the
    /// path that exists is resolved with symlinks followed; the rest may not contain `..`.
    pub fn resolve(&self, written: &str) -> Result<PathBuf, ToolError> {
        let cleaned = clean(written);
        if cleaned.contains('\0') {
            return Err(ToolError(format!("path {written:?} contains a NUL byte")));
        }
        let joined = if cleaned.is_empty() || cleaned == "~" || cleaned == MODEL_ROOT {
            self.root.clone()
        } else if let Some(rest) = cleaned.strip_prefix("~/") {
            self.root.join(rest)
        } else if let Some(rest) = cleaned.strip_prefix(MODEL_ROOT).and_then(|rest| rest.strip_prefix('/')) {
            self.root.join(rest)
        } else {
            self.root.join(&cleaned)
        };
        let resolved = resolve_existing_prefix(&joined)
            .map_err(|error| ToolError(format!("cannot resolve path {written}: {error}")))?;
        if !resolved.starts_with(&self.root) {
            return Err(ToolError(format!(
                "path {written} is outside the workspace {}; use a path inside it",
                self.root.display()
            )));
        }
        Ok(resolved)
    }

    /// The path as the model should see it: relative to the workspace root when inside it.
    pub fn display(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(relative) if relative.as_os_str().is_empty() => ".".to_owned(),
            Ok(relative) => relative.to_string_lossy().into_owned(),
            Err(_) => path.to_string_lossy().into_owned(),
        }
    }
}

/// Drops a leading `@` and turns Unicode space variants into plain spaces, as pi does.
fn clean(written: &str) -> String {
    let written = written.strip_prefix('@').unwrap_or(written);
    written
        .chars()
        .map(|c| match c {
            '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => ' ',
            c => c,
        })
        .collect()
}

/// Canonicalizes the longest existing ancestor of `path` (following symlinks) and appends the
/// rest, which cannot contain symlinks because it does not exist. `..` in that rest is refused.
fn resolve_existing_prefix(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut missing = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(canonical) => {
                let mut resolved = canonical;
                for component in missing.iter().rev() {
                    resolved.push(component);
                }
                return Ok(resolved);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = existing.file_name().map(ToOwned::to_owned) else { return Err(error) };
                if existing.components().next_back() == Some(Component::ParentDir) {
                    return Err(std::io::Error::other("`..` after a path that does not exist"));
                }
                missing.push(name);
                if !existing.pop() {
                    return Err(error);
                }
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().expect("temp dir");
        let workspace = Workspace::new(dir.path()).expect("workspace");
        (dir, workspace)
    }

    #[test]
    fn relative_absolute_and_home_paths_land_inside() {
        let (_dir, workspace) = workspace();
        let root = workspace.root().to_path_buf();
        assert_eq!(workspace.resolve("a/b.txt"), Ok(root.join("a/b.txt")));
        assert_eq!(workspace.resolve("@a.txt"), Ok(root.join("a.txt")));
        assert_eq!(workspace.resolve("~/x"), Ok(root.join("x")));
        assert_eq!(workspace.resolve(""), Ok(root.clone()));
        assert_eq!(workspace.resolve(root.join("c").to_str().expect("utf-8")), Ok(root.join("c")));
        assert_eq!(workspace.resolve("my\u{00A0}file"), Ok(root.join("my file")));
    }

    #[test]
    fn slash_workspace_names_the_workspace_wherever_it_lives() {
        let (_dir, workspace) = workspace();
        let root = workspace.root().to_path_buf();
        assert_eq!(workspace.resolve("/workspace").expect("root"), root);
        assert_eq!(workspace.resolve("/workspace/notes/a.txt").expect("inside"), root.join("notes/a.txt"));
        assert!(workspace.resolve("/workspace/../etc/passwd").is_err(), "no escape through the alias");
        assert!(workspace.resolve("/workspaces/x").is_err(), "only the exact prefix");
    }

    #[test]
    fn escapes_are_refused() {
        let (dir, workspace) = workspace();
        std::os::unix::fs::symlink("/etc", dir.path().join("etc-link")).expect("symlink");
        for escape in ["../x", "/etc/passwd", "etc-link/passwd", "a/../../x", "missing/../../x", "nul\0byte"] {
            let error = workspace.resolve(escape).expect_err(escape);
            assert!(!error.0.is_empty(), "{escape}");
        }
    }

    #[test]
    fn symlinks_inside_the_workspace_are_followed() {
        let (dir, workspace) = workspace();
        std::fs::create_dir(dir.path().join("real")).expect("mkdir");
        std::os::unix::fs::symlink("real", dir.path().join("alias")).expect("symlink");
        assert_eq!(workspace.resolve("alias/f"), Ok(workspace.root().join("real/f")));
    }
}
