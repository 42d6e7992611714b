//! Files, workspaces and TLS against the real `dari server`, on every engine: uploads and their
//! limits, hostile names, downloads, tenancy, `dari files upload`; workspace zips
//! (`files/workspace_zip.rs`); HTTPS (`files/tls.rs`).

mod tls;
pub(crate) mod workspace_zip;

use dari_tests::binaries::dari_with_env;
use dari_tests::control::{ControlServer, Engine, raw_http};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

const PNG_HEADER: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01";

/// Uploads `bytes` as the form field `file`, named `filename` with `content_type`.
async fn upload(control: &ControlServer, filename: &str, content_type: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let part = Part::bytes(bytes).file_name(filename.to_owned()).mime_str(content_type).expect("a content type");
    let form = Form::new().percent_encode_noop().part("file", part);
    control.send(control.request(Method::POST, "/v1/files").multipart(form)).await
}

/// A multipart body written byte by byte, for what a well-behaved client does not send: the
/// part's `Content-Disposition` parameters as given.
fn raw_multipart(disposition: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "dari-test-boundary";
    let mut body =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\nContent-Type: text/plain\r\n\r\n")
            .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

async fn send_raw(control: &ControlServer, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    control.send(control.request(Method::POST, "/v1/files").header("content-type", content_type).body(body)).await
}

/// The body and headers of `GET /v1/files/{id}/content`.
async fn download(control: &ControlServer, file_id: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let response =
        control.request(Method::GET, &format!("/v1/files/{file_id}/content")).send().await.expect("an answer");
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.bytes().await.expect("the body").to_vec())
}

/// The files the blob store holds (and the temporary ones it is writing).
fn stored_blobs(control: &ControlServer) -> (usize, usize) {
    let count = |dir: &str| {
        std::fs::read_dir(control.data_dir.path().join("blobs").join(dir)).map_or(0, |entries| entries.count())
    };
    (count("files"), count(".tmp"))
}

#[tokio::test]
async fn uploads_come_back_byte_exact_and_go_when_deleted() {
    let binary: Vec<u8> = (0..100_000u32).map(|index| (index % 256) as u8).collect();
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let (status, uploaded) = upload(&control, "data.bin", "application/octet-stream", binary.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{uploaded}");
        let file_id = uploaded["id"].as_str().expect("an id").to_owned();
        assert!(file_id.starts_with("file_"), "{file_id}");
        assert_eq!(uploaded["filename"], "data.bin");
        assert_eq!(uploaded["size_bytes"], binary.len());
        assert_eq!(uploaded["content_type"], "application/octet-stream");
        assert_eq!(uploaded["sha256"], hex::encode(Sha256::digest(&binary)));
        assert!(uploaded["created_at"].as_str().expect("a time").ends_with('Z'), "{uploaded}");

        let (status, metadata) = control.get(&format!("/v1/files/{file_id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(metadata, uploaded);
        let (status, headers, bytes) = download(&control, &file_id).await;
        assert_eq!(status, StatusCode::OK);
        assert!(bytes == binary, "the download differs from the upload");
        assert_eq!(headers["content-type"], "application/octet-stream");
        assert_eq!(headers["content-disposition"], r#"attachment; filename="data.bin""#);
        assert_eq!(headers["x-content-type-options"], "nosniff");

        // Text keeps its declared type; an image's type is read from its bytes.
        let (_, text) = upload(&control, "notes.md", "text/markdown; charset=utf-8", b"# hi\n".to_vec()).await;
        assert_eq!(text["content_type"], "text/markdown; charset=utf-8");
        let (_, image) = upload(&control, "pixel.png", "text/plain", PNG_HEADER.to_vec()).await;
        assert_eq!(image["content_type"], "image/png");
        let (_, liar) = upload(&control, "fake.png", "image/png", b"not a png".to_vec()).await;
        assert_eq!(liar["content_type"], "application/octet-stream");
        let (status, empty) = upload(&control, "empty.txt", "text/plain", Vec::new()).await;
        assert_eq!((status, &empty["size_bytes"]), (StatusCode::CREATED, &Value::from(0)));

        let (status, _) = control.delete(&format!("/v1/files/{file_id}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        for path in [format!("/v1/files/{file_id}"), format!("/v1/files/{file_id}/content")] {
            let (status, body) = control.get(&path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert_eq!(body["detail"], format!("file {file_id} not found"));
        }
        let (status, _) = control.delete(&format!("/v1/files/{file_id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(stored_blobs(&control), (4, 0), "the deleted file's bytes are gone, and nothing half-written");
        for missing in ["file_01jd6x8k2m9q4r7t0v3w5y8z1a", "nope", "file_..%2F..%2Fetc"] {
            let (status, _) = control.get(&format!("/v1/files/{missing}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        }
        assert!(control.unexpected_warnings(&[]).is_empty(), "{:?}", control.unexpected_warnings(&[]));
    }
}

#[tokio::test]
async fn another_organization_cannot_see_read_or_delete_a_file() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let (_, uploaded) = upload(&control, "secret.txt", "text/plain", b"ours".to_vec()).await;
        let file_id = uploaded["id"].as_str().expect("an id");
        let (_, other_key) = control.create_org("tenant-b").await;
        let as_other = |method: Method, path: String| {
            control.http.request(method, format!("{}{path}", control.url)).bearer_auth(&other_key)
        };
        for (method, path) in [
            (Method::GET, format!("/v1/files/{file_id}")),
            (Method::GET, format!("/v1/files/{file_id}/content")),
            (Method::DELETE, format!("/v1/files/{file_id}")),
        ] {
            let response = as_other(method.clone(), path.clone()).send().await.expect("an answer");
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        }
        let (status, _) = control.get(&format!("/v1/files/{file_id}")).await;
        assert_eq!(status, StatusCode::OK, "still there for its owner");
        let anonymous = control.http.post(format!("{}/v1/files", control.url)).send().await.expect("an answer");
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_and_leave_nothing_behind() {
    const LIMIT: usize = 1000;
    for engine in Engine::available() {
        let control = ControlServer::builder(engine).args(["--max-file-bytes", &LIMIT.to_string()]).start().await;
        let (status, body) = upload(&control, "exact.bin", "application/octet-stream", vec![7; LIMIT]).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = upload(&control, "over.bin", "application/octet-stream", vec![7; LIMIT + 1]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        let detail = body["detail"].as_str().expect("a detail");
        assert!(detail.contains("limit of 1000 bytes") && detail.contains("--max-file-bytes"), "{detail}");

        // Streamed without a length, in chunks: stopped while streaming.
        let chunks = futures_util::stream::iter((0..3).map(|_| Ok::<_, std::io::Error>(vec![1u8; 600])));
        let part = Part::stream(reqwest::Body::wrap_stream(chunks)).file_name("chunked.bin");
        let form = Form::new().part("file", part);
        let (status, body) = control.send(control.request(Method::POST, "/v1/files").multipart(form)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

        // A declared length over the limit is refused before the body is sent.
        let head = format!(
            "POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n",
            control.api_key,
            1 << 30
        );
        let answer = raw_http(&control.url, head.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("limit of 1000 bytes"), "{answer}");

        assert_eq!(stored_blobs(&control), (1, 0), "only the file within the limit is stored");
        assert!(control.unexpected_warnings(&[]).is_empty(), "{:?}", control.unexpected_warnings(&[]));
    }
}

#[tokio::test]
async fn hostile_file_names_become_a_plain_leaf() {
    let long_name = format!("{}.txt", "n".repeat(10_000));
    let cases: Vec<(String, String)> = vec![
        (r#"filename="../../etc/passwd""#.to_owned(), "passwd".to_owned()),
        (r#"filename="a\b""#.to_owned(), "b".to_owned()),
        (r#"filename="C:\Windows\system32\evil.dll""#.to_owned(), "evil.dll".to_owned()),
        ("filename=\"tab\there\u{85}name\u{202e}gpj.exe\"".to_owned(), "tabherenamegpj.exe".to_owned()),
        (r#"filename="..""#.to_owned(), "upload".to_owned()),
        (r#"filename="""#.to_owned(), "upload".to_owned()),
        (String::new(), "upload".to_owned()),
        (format!(r#"filename="{long_name}""#), format!("{}.txt", "n".repeat(251))),
        (r#"filename="quote\"d.txt""#.to_owned(), r#"quote"d.txt"#.to_owned()),
    ];
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        for (parameter, expected) in &cases {
            let (content_type, body) = raw_multipart(&format!(r#"name="file"; {parameter}"#), b"x");
            let (status, uploaded) = send_raw(&control, &content_type, body).await;
            assert_eq!(status, StatusCode::CREATED, "{parameter}: {uploaded}");
            assert_eq!(uploaded["filename"].as_str(), Some(expected.as_str()), "{parameter}");
            let (_, headers, _) = download(&control, uploaded["id"].as_str().expect("an id")).await;
            let disposition = headers["content-disposition"].to_str().expect("a printable header");
            assert!(disposition.starts_with("attachment; filename=\""), "{disposition}");
        }
        let (_, uploaded) = upload(&control, "../../résumé.txt", "text/plain", b"x".to_vec()).await;
        assert_eq!(uploaded["filename"], "résumé.txt");
        let (_, headers, _) = download(&control, uploaded["id"].as_str().expect("an id")).await;
        assert_eq!(
            headers["content-disposition"],
            r#"attachment; filename="r_sum_.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"#
        );
        assert!(control.unexpected_warnings(&[]).is_empty(), "{:?}", control.unexpected_warnings(&[]));
    }
}

#[tokio::test]
async fn bad_upload_requests_get_a_clear_4xx() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let (content_type, wrong_field) = raw_multipart(r#"name="document"; filename="a.txt""#, b"x");
        let (_, garbage_form) = raw_multipart(r#"name="file""#, b"x");
        let truncated = garbage_form[..garbage_form.len() - 12].to_vec();
        let cases: Vec<(Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
            (Some(&content_type), wrong_field, StatusCode::BAD_REQUEST, "no field named `file`"),
            (Some(&content_type), truncated, StatusCode::BAD_REQUEST, "multipart/form-data"),
            (Some("multipart/form-data"), b"x".to_vec(), StatusCode::BAD_REQUEST, "boundary"),
            (
                Some("application/json"),
                b"{\"file\": \"x\"}".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "multipart/form-data",
            ),
            (None, b"raw bytes".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "multipart/form-data"),
        ];
        for (content_type, body, status, needle) in cases {
            let mut request = control.request(Method::POST, "/v1/files").body(body);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let (got, answer) = control.send(request).await;
            assert_eq!(got, status, "{content_type:?}: {answer}");
            let detail = answer["detail"].as_str().unwrap_or_else(|| panic!("a detail in {answer}"));
            assert!(detail.contains(needle), "{detail:?} should mention {needle:?}");
        }
        assert_eq!(stored_blobs(&control), (0, 0));
        assert!(control.unexpected_warnings(&[]).is_empty(), "{:?}", control.unexpected_warnings(&[]));
    }
}

#[tokio::test]
async fn dari_files_upload_prints_the_stored_file() {
    let control = ControlServer::start(Engine::Sqlite).await;
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("ticket.txt");
    std::fs::write(&path, b"line one\nline two\n").expect("write the file");
    let output = dari_with_env(&["files", "upload", path.to_str().expect("UTF-8 path")], &control.cli_env());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(printed["filename"], "ticket.txt");
    assert_eq!(printed["size_bytes"], 18);
    assert_eq!(printed["content_type"], "text/plain");
    let (_, _, bytes) = download(&control, printed["id"].as_str().expect("an id")).await;
    assert_eq!(bytes, b"line one\nline two\n");

    let missing = dari_with_env(&["files", "upload", "/nonexistent/file"], &control.cli_env());
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("open /nonexistent/file"));
}
