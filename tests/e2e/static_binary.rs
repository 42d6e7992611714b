//! sandboxd is a static binary: it runs in a root file system that holds nothing but itself.

use std::process::Command;

use dari_tests::binaries::binary;
use dari_tests::{chroot_program, is_root};

#[test]
fn sandboxd_is_statically_linked() {
    #[allow(clippy::disallowed_methods)] // `file` describes the binary.
    let output = Command::new("file").arg(binary("sandboxd")).output();
    let Ok(output) = output else {
        eprintln!("skipped: the `file` command is not installed");
        return;
    };
    let description = String::from_utf8_lossy(&output.stdout);
    assert!(description.contains("statically linked") || description.contains("static-pie linked"), "{description}");
}

#[test]
fn sandboxd_runs_in_an_empty_root() {
    if !is_root() {
        eprintln!("skipped: chroot needs root (CI runs as root)");
        return;
    }
    let root = tempfile::tempdir().expect("root directory");
    std::fs::copy(binary("sandboxd"), root.path().join("sandboxd")).expect("copy the binary");
    std::fs::create_dir(root.path().join("workspace")).expect("workspace");
    std::fs::write(root.path().join("workspace/hello.txt"), "hello from an empty root\n").expect("write");
    let Some(chroot) = chroot_program() else {
        eprintln!("skipped: chroot is not installed");
        return;
    };
    #[allow(clippy::disallowed_methods)] // chroot runs the binary with nothing else around it.
    let output = Command::new(chroot)
        .arg(root.path())
        .args(["/sandboxd", "tool", "read", r#"{"path":"hello.txt"}"#, "--workspace", "/workspace"])
        .env_clear()
        .output()
        .expect("run chroot");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON tool result");
    assert_eq!(result["is_error"], false, "{result}");
    assert_eq!(result["content"][0]["text"], "hello from an empty root\n");
}
