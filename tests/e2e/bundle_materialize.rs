//! `bundle.materialize` through the real daemon: fetch with the sandbox token, check the sha256,
//! unpack read-only, copy extensions, and keep a bundle that is already in place.

use std::os::unix::fs::PermissionsExt;

use dari_protocol::link::{BundleMaterialize, BundleMaterialized, Operation, Outcome};
use dari_tests::binaries::dari;
use dari_tests::fake_control::{FakeControl, serve_bytes};
use dari_tests::write_tree;

/// Packs a small project with an extension through `dari deploy --dry-run --save-archive`.
fn packed_project() -> (Vec<u8>, String) {
    let project = tempfile::tempdir().expect("project");
    let manifest = "name: ext\nharness: pi\ninstructions: {system: prompts/system.md}\nllm: {model: openai/gpt-4.1-mini}\nextensions:\n  - {name: guard, path: extensions/guard}\n";
    write_tree(
        project.path(),
        [
            ("dari.yml", manifest.as_bytes()),
            ("prompts/system.md", b"Be careful.".as_slice()),
            ("extensions/guard/index.ts", b"export default function () {}\n".as_slice()),
        ],
    );
    let archive = project.path().join("bundle.tar.gz");
    let output = dari(&[
        "deploy",
        "--dry-run",
        "--quiet",
        "--save-archive",
        archive.to_str().expect("utf-8"),
        project.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("plan");
    let bytes = std::fs::read(&archive).expect("archive");
    (bytes, plan["sha256"].as_str().expect("sha256").to_owned())
}

fn materialized(outcome: &Outcome) -> BundleMaterialized {
    match outcome {
        Outcome::Ok { value } => serde_json::from_value(value.clone()).expect("a materialized bundle"),
        Outcome::Error { error } => panic!("materialize failed: {}", error.message),
    }
}

#[tokio::test]
async fn the_bundle_is_fetched_checked_and_unpacked_read_only() {
    let (archive, sha256) = packed_project();
    let size_bytes = archive.len() as u64;
    let url = serve_bytes(archive).await;
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let _daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    link.welcome(0).await;

    let request = BundleMaterialize { url: url.clone(), sha256: sha256.clone(), size_bytes };
    let (outcome, _) = link.request("b1", Operation::BundleMaterialize(request.clone())).await;
    let bundle = materialized(&outcome);
    assert!(bundle.fetched);
    assert_eq!(bundle.sha256, sha256);
    assert_eq!(bundle.extensions, ["guard"]);
    let root = workspace.path().join(".dari/agent-resources/source-bundle");
    assert_eq!(std::fs::canonicalize(&bundle.root).expect("root"), std::fs::canonicalize(&root).expect("root"));
    assert_eq!(std::fs::read_to_string(root.join("prompts/system.md")).expect("prompt"), "Be careful.");
    let mode = std::fs::metadata(root.join("dari.yml")).expect("stat").permissions().mode();
    assert_eq!(mode & 0o222, 0, "the bundle is read-only");
    let extension = workspace.path().join(".dari/agent-resources/extensions/guard/index.ts");
    assert_eq!(std::fs::metadata(&extension).expect("extension copied").permissions().mode() & 0o200, 0o200);

    let (again, _) = link.request("b2", Operation::BundleMaterialize(request)).await;
    assert!(!materialized(&again).fetched, "the same bundle is kept, not fetched again");
}

#[tokio::test]
async fn a_bundle_with_the_wrong_sha256_is_refused_and_not_installed() {
    let (archive, _) = packed_project();
    let size_bytes = archive.len() as u64;
    let url = serve_bytes(archive).await;
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let _daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    link.welcome(0).await;
    let request = BundleMaterialize { url, sha256: "0".repeat(64), size_bytes };
    let (outcome, _) = link.request("b1", Operation::BundleMaterialize(request)).await;
    let Outcome::Error { error } = outcome else { panic!("a wrong sha256 must fail") };
    assert!(error.message.contains("sha256"), "{}", error.message);
    assert!(!workspace.path().join(".dari/agent-resources/source-bundle").exists());
}

#[tokio::test]
async fn a_bundle_larger_than_announced_is_refused() {
    let (archive, sha256) = packed_project();
    let url = serve_bytes(archive).await;
    let workspace = tempfile::tempdir().expect("workspace");
    let mut control = FakeControl::start().await;
    let _daemon = control.spawn_daemon(workspace.path());
    let mut link = control.accept().await;
    link.welcome(0).await;
    let request = BundleMaterialize { url, sha256, size_bytes: 10 };
    let (outcome, _) = link.request("b1", Operation::BundleMaterialize(request)).await;
    let Outcome::Error { error } = outcome else { panic!("an oversized bundle must fail") };
    assert!(error.message.contains("larger than the 10 bytes announced"), "{}", error.message);
}
