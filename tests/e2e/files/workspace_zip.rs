//! `GET /v1/sessions/{id}/workspace.zip`: the session's last workspace archive as a zip, whole or
//! by directory, and every error a client can get.

use std::io::{Cursor, Read};

use dari_tests::control::{ControlServer, Engine};
use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::{Method, StatusCode};

/// A tar.gz of /workspace as a sandbox writes it: paths relative to /workspace; `None` contents
/// make a directory.
fn workspace_archive(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (path, contents) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        match contents {
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(bytes.len() as u64);
                builder.append_data(&mut header, path, *bytes).expect("append a file");
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).expect("append a directory");
            }
        }
    }
    builder.into_inner().expect("finish the tar").finish().expect("finish the gzip")
}

/// The zip's (name, contents), in order.
pub(crate) fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    (0..zip.len())
        .map(|index| {
            let mut entry = zip.by_index(index).expect("an entry");
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).expect("read an entry");
            (entry.name().expect("a UTF-8 name").into_owned(), contents)
        })
        .collect()
}

#[tokio::test]
async fn a_session_workspace_downloads_as_a_zip_whole_or_by_directory() {
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let archive = workspace_archive(&[
        ("src", None),
        ("src/main.rs", Some(b"fn main() {}\n")),
        ("src/data.bin", Some(&binary)),
        ("docs", None),
        ("docs/guide.md", Some(b"# guide\n")),
        ("README.md", Some(b"# readme\n")),
    ]);
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let org_id = control.org_id().await;
        let session_id = control.create_session(&org_id).await;
        let path = format!("/v1/sessions/{session_id}/workspace.zip");
        let (status, body) = control.get(&path).await;
        assert_eq!(status, StatusCode::CONFLICT, "no workspace yet: {body}");
        assert!(body["detail"].as_str().expect("a detail").contains("no workspace yet"), "{body}");

        control.put_workspace_archive(&org_id, &session_id, archive.clone()).await;
        let response = control.request(Method::GET, &path).send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/zip");
        assert_eq!(
            response.headers()["content-disposition"],
            format!("attachment; filename=\"workspace-{session_id}.zip\"").as_str()
        );
        let entries = unzip(&response.bytes().await.expect("the zip"));
        let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["src/", "src/main.rs", "src/data.bin", "docs/", "docs/guide.md", "README.md"]);
        assert!(entries[2].1 == binary, "binary contents come back byte-exact");

        for (query, expected) in [
            ("?path=src", &["src/", "src/main.rs", "src/data.bin"][..]),
            ("?path=docs&path=src", &["src/", "src/main.rs", "src/data.bin", "docs/", "docs/guide.md"][..]),
            ("?path=./docs/", &["docs/", "docs/guide.md"][..]),
        ] {
            let response = control.request(Method::GET, &format!("{path}{query}")).send().await.expect("an answer");
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            let entries = unzip(&response.bytes().await.expect("the zip"));
            let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
            assert_eq!(names, expected, "{query}");
        }
        assert!(control.unexpected_warnings(&[]).is_empty(), "{:?}", control.unexpected_warnings(&[]));
    }
}

#[tokio::test]
async fn workspace_zip_errors_name_what_is_wrong() {
    let archive = workspace_archive(&[("src/main.rs", Some(b"fn main() {}\n")), ("README.md", Some(b"# hi\n"))]);
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let org_id = control.org_id().await;
        let session_id = control.create_session(&org_id).await;
        control.put_workspace_archive(&org_id, &session_id, archive.clone()).await;
        let path = format!("/v1/sessions/{session_id}/workspace.zip");
        for (query, needle) in [
            ("?path=/etc", "absolute"),
            ("?path=/workspace/src", "absolute"),
            ("?path=../secrets", "`..`"),
            ("?path=src/../..", "`..`"),
            ("?path=src%00", "NUL"),
            ("?path=", "empty"),
            ("?path=README.md", "not a directory"),
            ("?path=missing", "not a directory"),
            ("?path=src&path=nope", "\"nope\" is not a directory"),
            ("?dir=src", "unknown query parameter"),
        ] {
            let (status, body) = control.get(&format!("{path}{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            let detail = body["detail"].as_str().unwrap_or_else(|| panic!("a detail in {body}"));
            assert!(detail.contains(needle), "{query}: {detail:?} should mention {needle:?}");
        }

        // Unknown sessions and other organizations' sessions are not found.
        let (_, other_key) = control.create_org("tenant-b").await;
        let response = control.http.get(format!("{}{path}", control.url)).bearer_auth(&other_key).send().await;
        assert_eq!(response.expect("an answer").status(), StatusCode::NOT_FOUND);
        for missing in ["sess_01jd6x8k2m9q4r7t0v3w5y8z1a", "not-a-session"] {
            let (status, body) = control.get(&format!("/v1/sessions/{missing}/workspace.zip")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
        }
        let anonymous = control.http.get(format!("{}{path}", control.url)).send().await.expect("an answer");
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        assert!(control.unexpected_warnings(&[]).is_empty(), "{:?}", control.unexpected_warnings(&[]));
    }
}
