//! `dari deploy --dry-run`: the bundle it plans is deterministic, selects exactly git's files
//! inside a repository, honours the skip list outside one, and refuses what Dari refuses.

use std::path::Path;
use std::process::Command;

use dari_tests::binaries::dari;
use dari_tests::{workspace_root, write_tree};
use serde_json::Value;

const MANIFEST: &str = "name: dry\nharness:\n  kind: customRuntimeServer\n  protocol: dari-runtime-v1\n  customRuntimeServer:\n    command: python3 server.py\n    port: 8787\ninstructions:\n  system: prompts/system.md\n";

fn dry_run(dir: &Path) -> Value {
    let output = dari(&["deploy", "--dry-run", "--quiet", dir.to_str().expect("UTF-8 path")]);
    assert_eq!(output.status.code(), Some(0), "deploy --dry-run failed:\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the plan is JSON")
}

fn file_paths(plan: &Value) -> Vec<String> {
    plan["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|file| file["path"].as_str().expect("path").to_owned())
        .collect()
}

fn git(dir: &Path, args: &[&str]) -> String {
    #[allow(clippy::disallowed_methods)] // The test drives git to build repositories.
    let output = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.email=test@example.com", "-c", "user.name=test", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .expect("run git");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("git prints UTF-8")
}

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut all = vec![("dari.yml", MANIFEST), ("prompts/system.md", "Echo.\n"), ("server.py", "print('hi')\n")];
    all.extend_from_slice(files);
    write_tree(dir.path(), all.into_iter().map(|(path, text)| (path, text.as_bytes())));
    dir
}

#[test]
fn two_dry_runs_of_the_same_tree_give_the_same_sha256() {
    let dir = project(&[]);
    let first = dry_run(dir.path());
    // Touching every file changes mtimes, which the archive must not record.
    for path in ["dari.yml", "prompts/system.md", "server.py"] {
        let file = std::fs::File::options().append(true).open(dir.path().join(path)).expect("open");
        file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600)).expect("set mtime");
    }
    let second = dry_run(dir.path());
    assert_eq!(first["sha256"], second["sha256"]);
    assert_eq!(first["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(first["size_bytes"], second["size_bytes"]);

    std::fs::write(dir.path().join("server.py"), "print('changed')\n").expect("edit");
    assert_ne!(dry_run(dir.path())["sha256"], first["sha256"], "content changes change the hash");
}

#[test]
fn the_plan_lists_dari_s_publish_steps() {
    let dir = project(&[]);
    let plan = dry_run(dir.path());
    let steps: Vec<String> = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| format!("{} {}", step["method"].as_str().expect("method"), step["path"].as_str().expect("path")))
        .collect();
    assert_eq!(
        steps,
        [
            "POST /v1/source-snapshots",
            "PUT {upload_url}",
            "POST /v1/source-snapshots/{source_snapshot_id}/finalize",
            "GET /v1/source-snapshots/{source_snapshot_id}/manifest",
            "POST /v1/agents",
        ]
    );
    assert_eq!(plan["steps"][0]["body"]["sha256"], plan["sha256"]);
    assert_eq!(plan["steps"][0]["body"]["format"], "tar.gz");
    assert_eq!(plan["metadata"]["origin"], "local_cli");
    assert_eq!(plan["agent_name"], "dry");
    assert_eq!(plan["selection"], "walk");
}

#[test]
fn inside_git_the_file_list_is_git_s() {
    let dir = project(&[
        (".gitignore", "*.log\nbuild/\n"),
        ("notes.txt", "untracked but not ignored\n"),
        ("debug.log", "ignored\n"),
        ("build/out.bin", "ignored\n"),
        ("node_modules/pkg/index.js", "not ignored here: git decides\n"),
    ]);
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "dari.yml", "prompts", "server.py", ".gitignore"]);
    git(dir.path(), &["commit", "-q", "-m", "initial"]);
    let plan = dry_run(dir.path());
    let mut expected: Vec<String> = git(dir.path(), &["ls-files", "--cached", "--others", "--exclude-standard"])
        .lines()
        .map(str::to_owned)
        .collect();
    expected.sort();
    assert_eq!(file_paths(&plan), expected);
    assert!(expected.contains(&"notes.txt".to_owned()) && !expected.contains(&"debug.log".to_owned()));
    assert_eq!(plan["selection"], "git");
    assert_eq!(plan["metadata"]["git_dirty"], true, "untracked files make the tree dirty");
    assert_eq!(plan["metadata"]["git_commit_sha"].as_str().map(str::len), Some(40));
}

#[test]
fn a_subdirectory_of_a_repository_bundles_only_itself() {
    let repo = tempfile::tempdir().expect("temp dir");
    write_tree(repo.path(), [("other/file.txt", b"outside the agent".as_slice())]);
    let agent = repo.path().join("agents/echo");
    write_tree(&agent, [("dari.yml", MANIFEST.as_bytes()), ("prompts/system.md", b"Echo.".as_slice())]);
    git(repo.path(), &["init", "-q"]);
    let plan = dry_run(&agent);
    assert_eq!(file_paths(&plan), ["dari.yml", "prompts/system.md"]);
}

#[test]
fn outside_git_the_skip_list_is_honoured_at_any_depth() {
    let dir = project(&[
        ("node_modules/pkg/index.js", "x"),
        (".venv/bin/python", "x"),
        ("lib/__pycache__/mod.cpython-311.pyc", "x"),
        ("lib/.pytest_cache/v", "x"),
        ("lib/mod.py", "x"),
        (".DS_Store", "x"),
        ("lib/.DS_Store", "x"),
        (".dari/deploy-state.json", "{}"),
        (".git/HEAD", "x"),
        (".env.example", "kept: only listed names are skipped"),
    ]);
    let plan = dry_run(dir.path());
    assert_eq!(file_paths(&plan), [".env.example", "dari.yml", "lib/mod.py", "prompts/system.md", "server.py"]);
}

#[test]
fn the_same_files_in_and_out_of_git_give_the_same_archive() {
    let outside = project(&[]);
    let inside = project(&[]);
    git(inside.path(), &["init", "-q"]);
    assert_eq!(dry_run(outside.path())["sha256"], dry_run(inside.path())["sha256"]);
}

#[test]
fn the_example_bundles_are_stable() {
    let dir = workspace_root().join("examples/echo-runtime");
    assert_eq!(dry_run(&dir)["sha256"], dry_run(&dir)["sha256"]);
}

#[test]
fn symlinks_are_refused_with_their_path() {
    let dir = project(&[]);
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("prompts/passwd")).expect("symlink");
    let output = dari(&["deploy", "--dry-run", dir.path().to_str().expect("UTF-8 path")]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("prompts/passwd"), "{stderr}");
    assert!(output.stdout.is_empty(), "no plan for an invalid project");
}

#[test]
fn an_invalid_manifest_stops_the_deploy() {
    let dir = project(&[]);
    std::fs::write(dir.path().join("dari.yml"), MANIFEST.replace("port: 8787", "port: -1")).expect("write");
    let output = dari(&["deploy", "--dry-run", dir.path().to_str().expect("UTF-8 path")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("harness.customRuntimeServer.port"));
}

#[test]
fn a_known_agent_gets_a_new_version() {
    let dir = project(&[]);
    let output =
        dari(&["deploy", "--dry-run", "--quiet", "--agent-id", "agt_123", dir.path().to_str().expect("UTF-8 path")]);
    let plan: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(plan["steps"][4]["path"], "/v1/agents/agt_123/versions");
}
