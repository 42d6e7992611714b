//! The API's front door on every engine: keys, organizations, credentials, and bad requests.
//! Each test starts the real `dari server`.

use dari_tests::control::{ControlServer, Engine};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn requests_without_a_valid_key_are_refused() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let url = format!("{}/v1/organizations", control.url);
        for header in [
            None,
            Some("Bearer "),
            Some("Bearer dari_nope"),
            Some("Basic abc"),
            Some(&*format!("Bearer {}x", control.api_key)),
        ] {
            let mut request = control.http.get(&url);
            if let Some(header) = header {
                request = request.header("authorization", header);
            }
            let response = request.send().await.expect("answer");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{header:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: serde_json::Value = response.json().await.expect("JSON");
            assert_eq!(body, json!({"detail": "Missing or invalid API key"}));
        }
        // The health check and the OpenAPI document need no key.
        assert_eq!(
            control.http.get(format!("{}/healthz", control.url)).send().await.expect("answer").status(),
            StatusCode::NO_CONTENT
        );
        let (status, openapi) = control.send(control.http.get(format!("{}/v1/openapi.json", control.url))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(openapi["openapi"], "3.1.0");
        assert!(control.unexpected_warnings(&[]).is_empty(), "{:?}", control.unexpected_warnings(&[]));
    }
}

#[tokio::test]
async fn keys_are_shown_once_work_until_revoked_and_stay_in_their_organization() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine.clone()).await;
        let org_id = control.org_id().await;
        let (status, created) =
            control.post(&format!("/v1/organizations/{org_id}/api-keys"), &json!({"label": "ci"})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let key = created["api_key"].as_str().expect("the plaintext, once").to_owned();
        let key_id = created["id"].as_str().expect("an id").to_owned();
        assert!(key.starts_with("dari_"));
        let (_, listed) = control.get(&format!("/v1/organizations/{org_id}/api-keys")).await;
        assert!(!listed.to_string().contains(&key), "a list never carries a key");
        assert_eq!(listed["api_keys"].as_array().expect("keys").len(), 2);

        let with_new_key = |method: Method, path: &str| {
            control.http.request(method, format!("{}{path}", control.url)).bearer_auth(&key)
        };
        assert_eq!(
            with_new_key(Method::GET, "/v1/organizations").send().await.expect("answer").status(),
            StatusCode::OK
        );

        // Another organization: its key sees none of ours, and cannot act on ours.
        let (other_org, other_key) = control.create_org("tenant-b").await;
        let as_other = |method: Method, path: String| {
            control.http.request(method, format!("{}{path}", control.url)).bearer_auth(&other_key)
        };
        let response =
            as_other(Method::GET, format!("/v1/organizations/{org_id}/api-keys")).send().await.expect("answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let response = as_other(Method::DELETE, format!("/v1/organizations/{other_org}/api-keys/{key_id}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "revoking another organization's key by id");
        // Only the operator organization creates organizations.
        let response = as_other(Method::POST, "/v1/organizations".to_owned())
            .json(&json!({"name": "c"}))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let (status, _) = control.post("/v1/organizations", &json!({"name": "tenant-b"})).await;
        assert_eq!(status, StatusCode::CONFLICT, "names are unique");

        let (status, revoked) = control.delete(&format!("/v1/organizations/{org_id}/api-keys/{key_id}")).await;
        assert_eq!(status, StatusCode::OK, "{revoked}");
        assert!(revoked["revoked_at"].is_string());
        assert_eq!(
            with_new_key(Method::GET, "/v1/organizations").send().await.expect("answer").status(),
            StatusCode::UNAUTHORIZED
        );
        assert!(control.unexpected_warnings(&[]).is_empty(), "{engine:?}: {:?}", control.unexpected_warnings(&[]));
    }
}

#[tokio::test]
async fn credential_values_go_in_and_never_come_out() {
    const SECRET: &str = "sk-live-5up3r-s3cr3t-value";
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let org_id = control.org_id().await;
        let path = format!("/v1/organizations/{org_id}/credentials/OPENAI_API_KEY");
        let (status, body) = control.put(&path, &json!({"value": SECRET})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = control.put(&path, &json!({"value": SECRET})).await;
        assert_eq!(status, StatusCode::OK, "replaced: {body}");
        let (status, listed) = control.get(&format!("/v1/organizations/{org_id}/credentials")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed["credentials"][0]["name"], "OPENAI_API_KEY");

        for (name, status) in
            [("lower", StatusCode::BAD_REQUEST), ("1ABC", StatusCode::BAD_REQUEST), ("A-B", StatusCode::BAD_REQUEST)]
        {
            let (got, body) =
                control.put(&format!("/v1/organizations/{org_id}/credentials/{name}"), &json!({"value": "x"})).await;
            assert_eq!(got, status, "{name}: {body}");
            assert!(body["detail"].as_str().expect("detail").contains("^[A-Z_][A-Z0-9_]*$"), "{body}");
        }
        let (status, body) = control.put(&path, &json!({"value": ""})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

        // Another organization can neither see nor remove it.
        let (_, other_key) = control.create_org("tenant-b").await;
        let response =
            control.http.delete(format!("{}{path}", control.url)).bearer_auth(&other_key).send().await.expect("answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        // The value is nowhere: not in the log, not in the database file in plain text.
        assert!(!control.log().contains(SECRET));
        if let Engine::Sqlite = control.engine {
            for entry in std::fs::read_dir(control.data_dir.path()).expect("data dir") {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    let bytes = std::fs::read(&path).expect("read");
                    assert!(
                        !bytes.windows(SECRET.len()).any(|window| window == SECRET.as_bytes()),
                        "{} holds the secret",
                        path.display()
                    );
                }
            }
        }
        let (status, _) = control.delete(&path).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = control.delete(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn malformed_bodies_get_a_clear_4xx() {
    let control = ControlServer::start(Engine::Sqlite).await;
    let org_id = control.org_id().await;
    let path = format!("/v1/organizations/{org_id}/api-keys");
    let raw = |body: Vec<u8>, content_type: Option<&str>| {
        let mut request = control.request(Method::POST, &path).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        control.send(request)
    };
    let cases: Vec<(Vec<u8>, Option<&str>, StatusCode, &str)> = vec![
        (b"{".to_vec(), Some("application/json"), StatusCode::BAD_REQUEST, "not valid JSON"),
        (b"{\"label\": 5}".to_vec(), Some("application/json"), StatusCode::UNPROCESSABLE_ENTITY, "label"),
        (
            b"{\"lable\": \"x\"}".to_vec(),
            Some("application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `lable`",
        ),
        (b"{}".to_vec(), Some("application/json"), StatusCode::UNPROCESSABLE_ENTITY, "missing field `label`"),
        (b"{\"label\": \"x\"}".to_vec(), None, StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type: application/json"),
        (b"{\"label\": \"\"}".to_vec(), Some("application/json"), StatusCode::UNPROCESSABLE_ENTITY, "label"),
        (vec![0xff, 0xfe, 0x00], Some("application/json"), StatusCode::BAD_REQUEST, "not valid JSON"),
    ];
    for (body, content_type, status, needle) in cases {
        let (got, answer) = raw(body, content_type).await;
        assert_eq!(got, status, "{answer}");
        let detail = answer["detail"].as_str().unwrap_or_else(|| panic!("a detail in {answer}"));
        assert!(detail.contains(needle), "{detail:?} should mention {needle:?}");
    }
    // Over the size limit: refused from the Content-Length, before the body is read.
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        control.api_key,
        2 * 1024 * 1024
    );
    let answer = dari_tests::control::raw_http(&control.url, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than the limit of 1048576 bytes"), "{answer}");
    assert!(control.unexpected_warnings(&[]).is_empty(), "{:?}", control.unexpected_warnings(&[]));
}

#[tokio::test]
async fn the_server_stops_cleanly_on_sigterm_and_keeps_its_data() {
    let mut control = ControlServer::start(Engine::Sqlite).await;
    let org_id = control.org_id().await;
    let (status, _) =
        control.put(&format!("/v1/organizations/{org_id}/credentials/KEPT"), &json!({"value": "v"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(control.terminate().await, Some(0));
    let key = control.api_key.clone();
    let (data_dir, database_url) = control.kill().await;
    let restarted = ControlServer::start_with(Engine::Sqlite, data_dir, database_url).await;
    assert_eq!(restarted.api_key, key, "a restart does not bootstrap again");
    let (_, listed) = restarted.get(&format!("/v1/organizations/{org_id}/credentials")).await;
    assert_eq!(listed["credentials"][0]["name"], "KEPT");
}
