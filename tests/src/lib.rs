//! The end-to-end test harness: finds (and builds) the real binaries, runs them, and reads test
//! data such as the manifest corpus.
//!
//! Tests start the real `dari` and `sandboxd` binaries, as a user would.

pub mod bench;
pub mod binaries;
pub mod claude_sdk;
pub mod control;
pub mod fake_anthropic;
pub mod fake_control;
pub mod fake_llm;
pub mod hub_server;
pub mod sse;
pub mod txtar;

use std::path::{Path, PathBuf};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

/// Writes files (bundle path → contents) under `root`, creating directories.
pub fn write_tree<'a>(root: &Path, files: impl IntoIterator<Item = (&'a str, &'a [u8])>) {
    for (path, contents) in files {
        let target = root.join(path);
        std::fs::create_dir_all(target.parent().expect("a file has a parent")).expect("create directories");
        std::fs::write(&target, contents).expect("write file");
    }
}
