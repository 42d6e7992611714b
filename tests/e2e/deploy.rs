//! `dari deploy` against the real server on every engine, and the publish pipeline's API driven
//! by hand with hostile input: wrong tokens, digests and sizes, invalid manifests, escaping
//! archives, and another organization's resources.

use std::path::Path;

use dari_bundle::{BundleLimits, pack, select_files, sha256_hex};
use dari_tests::binaries::dari_with_env;
use dari_tests::control::{ControlServer, Engine};
use dari_tests::{workspace_root, write_tree};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A copy of examples/echo-runtime, so deploys write their state outside the repository.
fn echo_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&workspace_root().join("examples/echo-runtime"), dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("read the example") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            if entry.file_name() != ".dari" {
                copy_tree(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn cli(control: &ControlServer, config: &Path, args: &[&str]) -> (i32, Value, String) {
    let mut env = control.cli_env();
    env.push(("DARI_CONFIG_DIR", config.display().to_string()));
    let output = dari_with_env(args, &env);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::String(stdout));
    (output.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&output.stderr).into_owned())
}

fn archive_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tree(dir.path(), files.iter().copied());
    let selected = select_files(dir.path(), &BundleLimits::DEFAULT).expect("select");
    pack(&selected, &BundleLimits::DEFAULT).expect("pack").archive
}

#[tokio::test]
async fn deploy_publishes_versions_that_the_agent_commands_show() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine.clone()).await;
        let project = echo_project();
        let config = tempfile::tempdir().expect("config dir");
        let dir = project.path().to_str().expect("utf-8 path");

        let (code, first, stderr) = cli(&control, config.path(), &["deploy", dir]);
        assert_eq!(code, 0, "{engine:?}: {stderr}");
        for stage in ["package:", "reserve:", "upload:", "finalize:", "validate:", "publish:"] {
            assert!(stderr.contains(stage), "progress names stage {stage}: {stderr}");
        }
        assert_eq!((first["created"].as_bool(), first["version_number"].as_i64()), (Some(true), Some(1)), "{first}");
        let agent_id = first["agent_id"].as_str().expect("an agent id").to_owned();
        let state: Value = serde_json::from_str(
            &std::fs::read_to_string(project.path().join(".dari/deploy-state.json")).expect("deploy state"),
        )
        .expect("JSON");
        assert_eq!(state["agents"][&control.url], agent_id.as_str());

        // A second deploy is a new version of the same agent; --quiet prints no progress.
        let (code, second, stderr) = cli(&control, config.path(), &["deploy", dir, "--quiet"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.is_empty(), "--quiet: {stderr}");
        assert_eq!(
            (second["agent_id"].as_str(), second["version_number"].as_i64()),
            (Some(agent_id.as_str()), Some(2))
        );
        assert_eq!(second["sha256"], first["sha256"], "the same tree packs to the same archive");

        let (code, listed, _) = cli(&control, config.path(), &["agent", "list"]);
        assert_eq!(code, 0);
        assert_eq!(listed["agents"].as_array().map(Vec::len), Some(1));
        assert_eq!(listed["agents"][0]["active_version_id"], second["version_id"]);
        // By name as well as by id.
        let (_, versions, _) = cli(&control, config.path(), &["agent", "versions", "echo-runtime"]);
        let numbers: Vec<i64> =
            versions["versions"].as_array().expect("versions").iter().filter_map(|v| v["number"].as_i64()).collect();
        assert_eq!(numbers, [2, 1]);
        assert_eq!(versions["versions"][0]["is_active"], true);
        let version_id = second["version_id"].as_str().expect("a version id");
        let (_, shown, _) = cli(&control, config.path(), &["agent", "version", "show", &agent_id, version_id]);
        assert_eq!(shown["version"]["manifest"]["name"], "echo-runtime");
        let (_, files, _) = cli(&control, config.path(), &["agent", "version", "files", "echo-runtime", version_id]);
        let paths: Vec<&str> =
            files["files"].as_array().expect("files").iter().filter_map(|f| f["path"].as_str()).collect();
        assert!(paths.contains(&"dari.yml") && paths.contains(&"server.py"), "{paths:?}");
        let (_, cat, _) = cli(&control, config.path(), &["agent", "cat", "echo-runtime", version_id, "dari.yml"]);
        let local = std::fs::read_to_string(project.path().join("dari.yml")).expect("dari.yml");
        assert_eq!(cat, Value::String(local));
        let (_, status, _) = cli(&control, config.path(), &["agent", "status", dir]);
        assert_eq!(status["up_to_date"], true, "{status}");
        std::fs::write(project.path().join("notes.txt"), "changed").expect("change the project");
        let (_, status, _) = cli(&control, config.path(), &["agent", "status", dir]);
        assert_eq!(status["up_to_date"], false, "{status}");

        // Deleted: gone from the list; the next deploy, which remembered it, makes a new agent.
        let (code, deleted, stderr) = cli(&control, config.path(), &["agent", "delete", "echo-runtime", "--yes"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(deleted["deleted_at"].is_string());
        let (status, again) = control.delete(&format!("/v1/agents/{agent_id}")).await;
        assert_eq!((status, &again["deleted_at"]), (StatusCode::OK, &deleted["deleted_at"]), "delete is idempotent");
        let (code, third, stderr) = cli(&control, config.path(), &["deploy", dir]);
        assert_eq!(code, 0, "{stderr}");
        assert_ne!(third["agent_id"].as_str(), Some(agent_id.as_str()));
        assert_eq!(third["created"], true);
        let (status, _) = control
            .post(
                &format!("/v1/agents/{agent_id}/versions"),
                &json!({"source_snapshot_id": third["source_snapshot_id"]}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "publishing to a deleted agent");
        assert!(control.unexpected_warnings(&[]).is_empty(), "{:?}", control.unexpected_warnings(&[]));
    }
}

#[tokio::test]
async fn deploy_of_an_invalid_project_fails_locally_and_a_missing_server_is_named() {
    let control = ControlServer::start(Engine::Sqlite).await;
    let config = tempfile::tempdir().expect("config dir");
    let project = tempfile::tempdir().expect("project");
    write_tree(project.path(), [("dari.yml", &b"name: x\nharness: nope\n"[..])]);
    let (code, _, stderr) = cli(&control, config.path(), &["deploy", project.path().to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{stderr}");
    let (status, snapshots) = control.get("/v1/agents").await;
    assert_eq!((status, snapshots["agents"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));

    let echo = echo_project();
    let output = dari_with_env(
        &["deploy", echo.path().to_str().expect("utf-8")],
        &[
            ("DARI_API_URL", "http://127.0.0.1:9".to_owned()),
            ("DARI_API_KEY", "dari_x".to_owned()),
            ("DARI_CONFIG_DIR", config.path().display().to_string()),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach the control plane at http://127.0.0.1:9"), "{stderr}");
}

#[tokio::test]
async fn the_publish_pipeline_refuses_what_it_cannot_trust() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine.clone()).await;
        let archive = archive_of(&[
            ("dari.yml", include_bytes!("../../examples/echo-runtime/dari.yml")),
            ("server.py", include_bytes!("../../examples/echo-runtime/server.py")),
            ("prompts/system.md", b"You echo.\n"),
        ]);
        let sha256 = sha256_hex(&archive);
        let reserve = |sha256: &str, size: usize| json!({"format": "tar.gz", "sha256": sha256, "size_bytes": size});

        // Reservation checks what it can.
        for (body, status, needle) in [
            (json!({"format": "zip", "sha256": sha256, "size_bytes": 10}), StatusCode::UNPROCESSABLE_ENTITY, "format"),
            (reserve("ABC", 10), StatusCode::UNPROCESSABLE_ENTITY, "sha256"),
            (reserve(&sha256, 0), StatusCode::UNPROCESSABLE_ENTITY, "size_bytes"),
            (reserve(&sha256, 200 * 1024 * 1024), StatusCode::PAYLOAD_TOO_LARGE, "over the limit"),
            (
                json!({"format": "tar.gz", "sha256": sha256, "size_bytes": -1}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "size_bytes",
            ),
        ] {
            let (got, answer) = control.post("/v1/source-snapshots", &body).await;
            assert_eq!(got, status, "{body}: {answer}");
            assert!(answer["detail"].as_str().expect("detail").contains(needle), "{answer}");
        }

        // The upload URL's token is the credential; a wrong one, or none, finds nothing.
        let (_, reserved) = control.post("/v1/source-snapshots", &reserve(&sha256, archive.len())).await;
        let snapshot_id = reserved["source_snapshot_id"].as_str().expect("id").to_owned();
        let upload_url = reserved["upload_url"].as_str().expect("url").to_owned();
        let (status, _) = control.post(&format!("/v1/source-snapshots/{snapshot_id}/finalize"), &json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT, "finalize before upload");
        let forged = format!("{}x", upload_url);
        let (status, _) = control.send(control.http.put(&forged).body(archive.clone())).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let bare = upload_url.split('?').next().expect("url").to_owned();
        let (status, _) = control.send(control.http.put(&bare).body(archive.clone())).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Too many bytes, too few, or other bytes of the right length.
        let mut longer = archive.clone();
        longer.push(0);
        let (status, answer) = control.send(control.http.put(&upload_url).body(longer)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        let (status, answer) = control.send(control.http.put(&upload_url).body(archive[..10].to_vec())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        let mut altered = archive.clone();
        altered[20] ^= 0xff;
        let (status, answer) = control.send(control.http.put(&upload_url).body(altered)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(answer["detail"].as_str().expect("detail").contains("sha256"), "{answer}");

        // Another organization sees none of it.
        let (other_org, other_key) = control.create_org("tenant-b").await;
        let as_other = |method: Method, path: String| {
            control.http.request(method, format!("{}{path}", control.url)).bearer_auth(&other_key)
        };
        let response = as_other(Method::POST, format!("/v1/source-snapshots/{snapshot_id}/finalize"))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        let (status, _) = control.send(control.http.put(&upload_url).body(archive.clone())).await;
        assert_eq!(status, StatusCode::OK);
        let (status, finalized) =
            control.post(&format!("/v1/source-snapshots/{snapshot_id}/finalize"), &json!({})).await;
        assert_eq!((status, &finalized["status"]), (StatusCode::OK, &json!("ready")), "{finalized}");
        let (status, _) = control.send(control.http.put(&upload_url).body(archive.clone())).await;
        assert_eq!(status, StatusCode::CONFLICT, "a finalized snapshot is immutable");
        let (status, manifest) = control.get(&format!("/v1/source-snapshots/{snapshot_id}/manifest")).await;
        assert_eq!((status, &manifest["name"]), (StatusCode::OK, &json!("echo-runtime")));
        let response = as_other(Method::POST, "/v1/agents".to_owned())
            .json(&json!({"source_snapshot_id": snapshot_id}))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "publishing another organization's snapshot");
        let (status, published) = control.post("/v1/agents", &json!({"source_snapshot_id": snapshot_id})).await;
        assert_eq!(status, StatusCode::CREATED, "{published}");
        let agent_id = published["agent_id"].as_str().expect("agent").to_owned();
        let version_id = published["version_id"].as_str().expect("version").to_owned();
        let (status, _) = control.delete(&format!("/v1/source-snapshots/{snapshot_id}")).await;
        assert_eq!(status, StatusCode::CONFLICT, "a published snapshot is kept");

        for path in [
            format!("/v1/agents/{agent_id}"),
            format!("/v1/agents/{agent_id}/versions"),
            format!("/v1/agents/{agent_id}/versions/{version_id}"),
            format!("/v1/agents/{agent_id}/versions/{version_id}/bundle"),
            format!("/v1/agents/{agent_id}/versions/{version_id}/bundle/file?path=dari.yml"),
            format!("/v1/source-snapshots/{snapshot_id}"),
            format!("/v1/source-snapshots/{snapshot_id}/manifest"),
        ] {
            let response = as_other(Method::GET, path.clone()).send().await.expect("answer");
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path} as another organization");
        }
        let response = as_other(Method::DELETE, format!("/v1/agents/{agent_id}")).send().await.expect("answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        // The same name in another organization is another agent.
        let theirs = control.publish_archive(&other_key, &archive).await;
        assert_ne!(theirs["agent_id"].as_str(), Some(agent_id.as_str()));
        assert_eq!(theirs["created"], true);
        let response = as_other(Method::GET, "/v1/agents".to_owned()).send().await.expect("answer");
        let theirs_listed: Value = response.json().await.expect("JSON");
        assert_eq!(theirs_listed["agents"].as_array().map(Vec::len), Some(1), "{other_org}: {theirs_listed}");

        // Bundle files: text only, inside the bundle only.
        let base = format!("/v1/agents/{agent_id}/versions/{version_id}/bundle/file");
        for (query, status) in [
            ("", StatusCode::BAD_REQUEST),
            ("?path=missing.txt", StatusCode::NOT_FOUND),
            ("?path=../../etc/passwd", StatusCode::NOT_FOUND),
        ] {
            let (got, answer) = control.get(&format!("{base}{query}")).await;
            assert_eq!(got, status, "{query}: {answer}");
        }
        assert!(control.unexpected_warnings(&[]).is_empty(), "{engine:?}: {:?}", control.unexpected_warnings(&[]));
    }
}

#[tokio::test]
async fn finalize_fails_invalid_manifests_and_escaping_archives_with_the_reason() {
    let control = ControlServer::start(Engine::Sqlite).await;
    let invalid = archive_of(&[("dari.yml", b"name: bad\nharness:\n  kind: pi\nllm:\n  model: 5\n")]);
    let mut escaping = Vec::new();
    {
        let mut builder =
            tar::Builder::new(flate2::write::GzEncoder::new(&mut escaping, flate2::Compression::default()));
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.as_gnu_mut().expect("gnu header").name[..9].copy_from_slice(b"../escape");
        header.set_cksum();
        builder.append(&header, &b"bad"[..]).expect("append");
        builder.into_inner().expect("finish tar").finish().expect("finish gzip");
    }
    for (archive, needle) in [(invalid, "dari.yml is invalid"), (escaping, "../escape")] {
        let sha256 = sha256_hex(&archive);
        let (_, reserved) = control
            .post("/v1/source-snapshots", &json!({"format": "tar.gz", "sha256": sha256, "size_bytes": archive.len()}))
            .await;
        let snapshot_id = reserved["source_snapshot_id"].as_str().expect("id");
        let (status, _) =
            control.send(control.http.put(reserved["upload_url"].as_str().expect("url")).body(archive.clone())).await;
        assert_eq!(status, StatusCode::OK);
        let (status, finalized) =
            control.post(&format!("/v1/source-snapshots/{snapshot_id}/finalize"), &json!({})).await;
        assert_eq!((status, &finalized["status"]), (StatusCode::OK, &json!("failed")), "{finalized}");
        assert!(finalized["failure_reason"].as_str().expect("a reason").contains(needle), "{finalized}");
        let (status, manifest) = control.get(&format!("/v1/source-snapshots/{snapshot_id}/manifest")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{manifest}");
        let (status, published) = control.post("/v1/agents", &json!({"source_snapshot_id": snapshot_id})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{published}");
        let (status, _) = control.delete(&format!("/v1/source-snapshots/{snapshot_id}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = control.get(&format!("/v1/source-snapshots/{snapshot_id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
