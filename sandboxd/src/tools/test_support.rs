//! What the tools' tests share: a temporary workspace with files, and a tool context over it.

use crate::tools::{BashConfig, FileLocks, ToolContext, Workspace};

/// A temporary workspace holding `files` (path, content); parents are created.
pub(crate) fn workspace(files: &[(&str, &[u8])]) -> (tempfile::TempDir, ToolContext) {
    let dir = tempfile::tempdir().expect("create temp dir");
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a file has a parent")).expect("create parents");
        std::fs::write(&path, content).expect("write file");
    }
    let workspace = Workspace::new(dir.path()).expect("open workspace");
    let bash = BashConfig::for_workspace(workspace.root());
    (dir, ToolContext { workspace, locks: FileLocks::default(), bash })
}

/// An empty temporary workspace.
pub(crate) fn fixture() -> (tempfile::TempDir, ToolContext) {
    workspace(&[])
}
