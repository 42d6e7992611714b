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
pub mod fake_e2b;
pub mod fake_llm;
pub mod hub_server;
pub mod sse;
pub mod txtar;

use std::path::{Path, PathBuf};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

/// True when the tests run as root (CI does): chroot, namespaces and cgroups need it.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|metadata| std::os::unix::fs::MetadataExt::uid(&metadata) == 0).unwrap_or(false)
}

/// The `chroot` program, which is in `sbin` (often not on a test's PATH), if installed.
pub fn chroot_program() -> Option<PathBuf> {
    ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"].into_iter().map(PathBuf::from).find(|path| path.exists())
}

/// Serves a fake's `router` on a free loopback port until `stop`, and returns its
/// `http://127.0.0.1:PORT`.
pub async fn serve_fake(router: axum::Router, stop: tokio_util::sync::CancellationToken) -> String {
    use axum::serve::ListenerExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port for a fake");
    let url = format!("http://{}", listener.local_addr().expect("a local address"));
    // Each frame goes out at once, as a provider streams: with Nagle on, a frame written while the
    // last one is unacknowledged waits for the client's delayed ACK (40 ms).
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
    });
    url
}

/// Writes files (bundle path → contents) under `root`, creating directories.
pub fn write_tree<'a>(root: &Path, files: impl IntoIterator<Item = (&'a str, &'a [u8])>) {
    for (path, contents) in files {
        let target = root.join(path);
        std::fs::create_dir_all(target.parent().expect("a file has a parent")).expect("create directories");
        std::fs::write(&target, contents).expect("write file");
    }
}
