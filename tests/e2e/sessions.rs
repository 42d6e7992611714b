//! Sessions, their ledger, messages, streams and transcript, through the real `dari server` on
//! every engine; and the `dari session` commands.

use dari_tests::binaries::dari_with_stdin;
use dari_tests::control::{ControlServer, DeployedAgent, Engine, deploy_echo_agent, deploy_project};
use dari_tests::write_tree;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod stream;

/// An agent with two llm options and a declared secret, beside the echo example.
const CHOOSER_MANIFEST: &str = "name: chooser
harness:
  kind: customRuntimeServer
  protocol: dari-runtime-v1
  customRuntimeServer:
    command: python3 server.py
    port: 8787
instructions:
  system: prompts/system.md
llm:
  default: fast
  options:
    fast:
      model: openai/gpt-4.1-mini
    careful:
      model: anthropic/claude-sonnet-4.6
sandbox:
  internet_access: true
  secrets: [GREETING]
built_in_tools: []
";

pub(crate) fn text(text: &str) -> Value {
    json!({"type": "user.message", "content": [{"type": "text", "text": text}]})
}

pub(crate) async fn create_session(control: &ControlServer, agent: &DeployedAgent, body: &Value) -> Value {
    let (status, session) = control.post(&format!("/v1/agents/{}/sessions", agent.agent_id), body).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    session
}

pub(crate) async fn send_text(control: &ControlServer, session_id: &str, message: &str) -> Value {
    let (status, accepted) = control.post(&format!("/v1/sessions/{session_id}/events"), &text(message)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    accepted
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list[field].as_array().expect("a list").iter().map(|item| item["id"].as_str().expect("an id").to_owned()).collect()
}

fn assert_quiet(control: &ControlServer) {
    let warnings = control.unexpected_warnings(&[]);
    assert!(warnings.is_empty(), "{:?}: {warnings:?}", control.engine);
}

async fn deploy_chooser(control: &ControlServer) -> DeployedAgent {
    let dir = tempfile::tempdir().expect("a project directory");
    write_tree(
        dir.path(),
        [
            ("dari.yml", CHOOSER_MANIFEST.as_bytes()),
            ("prompts/system.md", b"Choose.\n".as_slice()),
            ("server.py", b"print('hi')\n".as_slice()),
        ],
    );
    let org_id = control.org_id().await;
    let (status, _) =
        control.put(&format!("/v1/organizations/{org_id}/credentials/GREETING"), &json!({"value": "stored"})).await;
    assert!(status.is_success());
    deploy_project(control, dir.path()).await
}

#[tokio::test]
async fn sessions_pin_the_active_version_keep_secrets_sealed_and_list_newest_first() {
    const SECRET: &str = "s3ss10n-secret-value";
    const LLM_KEY: &str = "sk-session-llm-key";
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let agent = deploy_echo_agent(&control).await;
        let session = create_session(
            &control,
            &agent,
            &json!({"name": "triage", "metadata": {"run": "r1", "kind": "eval"}, "secrets": {"GREETING": SECRET, "UNDECLARED": "x"},
                    "llm_api_key": LLM_KEY, "internet_access": true, "storage_binding_id": "bind_1"}),
        )
        .await;
        let session_id = session["id"].as_str().expect("an id").to_owned();
        assert!(session_id.starts_with("sess_"), "{session}");
        assert_eq!(session["agent_id"], agent.agent_id.as_str());
        assert_eq!(session["version_id"], agent.version_id.as_str());
        assert_eq!(session["name"], "triage");
        assert_eq!(session["status"], "idle");
        assert_eq!(session["internet_access"], true);
        assert_eq!(session["storage_binding_id"], "bind_1");
        assert_eq!(session["llm_id"], Value::Null, "echo-runtime declares no llm");
        assert_eq!(session["last_message_id"], Value::Null);
        assert_eq!(session["metadata"], json!({"run": "r1", "kind": "eval"}));
        assert!(session["created_at"].is_string() && session["updated_at"].is_string());
        assert!(!session.to_string().contains(SECRET) && !session.to_string().contains(LLM_KEY));
        let (status, fetched) = control.get(&format!("/v1/sessions/{session_id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fetched, session);

        // No body at all takes every default.
        let response = control
            .request(Method::POST, &format!("/v1/agents/{}/sessions", agent.agent_id))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::CREATED);
        let plain: Value = response.json().await.expect("JSON");
        assert_eq!(plain["internet_access"], false, "the manifest's default");
        assert_eq!(plain["metadata"], json!({}));
        let second = create_session(&control, &agent, &json!({"metadata": {"run": "r1", "kind": "chat"}})).await;

        // Newest first, in pages.
        let base = format!("/v1/agents/{}/sessions", agent.agent_id);
        let (_, all) = control.get(&base).await;
        let expected = vec![
            second["id"].as_str().expect("id").to_owned(),
            plain["id"].as_str().expect("id").to_owned(),
            session_id.clone(),
        ];
        assert_eq!(ids(&all, "sessions"), expected);
        assert_eq!(all["has_more"], false);
        let (_, first_page) = control.get(&format!("{base}?limit=2")).await;
        assert_eq!(ids(&first_page, "sessions"), expected[..2]);
        assert_eq!(first_page["has_more"], true);
        let cursor = first_page["next_cursor"].as_str().expect("a cursor");
        let (_, rest) = control.get(&format!("{base}?limit=2&after={cursor}")).await;
        assert_eq!(ids(&rest, "sessions"), expected[2..]);
        assert_eq!(rest["next_cursor"], Value::Null);

        // Metadata filters are ANDed; agent_id narrows too.
        let (status, by_run) = control.get("/v1/sessions?metadata.run=r1").await;
        assert_eq!(status, StatusCode::OK, "{by_run}");
        assert_eq!(ids(&by_run, "sessions"), [expected[0].clone(), session_id.clone()]);
        let (_, both) =
            control.get(&format!("/v1/sessions?metadata.run=r1&metadata.kind=eval&agent_id={}", agent.agent_id)).await;
        assert_eq!(ids(&both, "sessions"), [session_id.as_str()]);
        let (_, none) = control.get("/v1/sessions?metadata.run=r1&agent_id=agt_00000000000000000000000000").await;
        assert_eq!(ids(&none, "sessions"), Vec::<String>::new());

        let (status, body) = control.post("/v1/agents/agt_00000000000000000000000000/sessions", &json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(body["detail"].as_str().expect("detail").contains("agent agt_00000000000000000000000000 not found"));

        // A deleted agent takes no new session, and its sessions stay readable.
        let (status, _) = control.delete(&format!("/v1/agents/{}", agent.agent_id)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = control.post(&base, &json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = control.post(&format!("/v1/agents/{}/messages", agent.agent_id), &text("hi")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (_, still) = control.get(&base).await;
        assert_eq!(ids(&still, "sessions"), expected);
        send_text(&control, &session_id, "a session outlives its agent's deletion").await;

        // The secret values are nowhere in plain text: not in the log, not in the database file.
        assert!(!control.log().contains(SECRET) && !control.log().contains(LLM_KEY));
        for secret in [SECRET, LLM_KEY] {
            assert_eq!(control.data_files_containing(secret), Vec::<std::path::PathBuf>::new());
        }
        assert_quiet(&control);
    }
}

#[tokio::test]
async fn llm_id_names_an_option_of_the_version() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let chooser = deploy_chooser(&control).await;
        let default = create_session(&control, &chooser, &json!({})).await;
        assert_eq!(default["llm_id"], "fast");
        assert_eq!(default["internet_access"], true, "the manifest's sandbox.internet_access");
        let careful = create_session(&control, &chooser, &json!({"llm_id": "careful", "internet_access": false})).await;
        assert_eq!(careful["llm_id"], "careful");
        assert_eq!(careful["internet_access"], false);
        let (status, body) =
            control.post(&format!("/v1/agents/{}/sessions", chooser.agent_id), &json!({"llm_id": "huge"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.contains("llm_id") && detail.contains("careful, fast"), "{detail}");
        let echo = deploy_echo_agent(&control).await;
        let (status, body) =
            control.post(&format!("/v1/agents/{}/sessions", echo.agent_id), &json!({"llm_id": "fast"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["detail"].as_str().expect("detail").contains("declares no llm"), "{body}");
        assert_quiet(&control);
    }
}

#[tokio::test]
async fn messages_are_queued_and_the_ledger_pages_in_order() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let agent = deploy_echo_agent(&control).await;
        let org_id = control.org_id().await;
        let session = create_session(&control, &agent, &json!({"name": "chat"})).await;
        let session_id = session["id"].as_str().expect("id").to_owned();

        let body = json!({"type": "user.message", "content": [{"type": "text", "text": "hello"}], "metadata": {"ticket_id": "T-1042"}});
        let (status, accepted) = control.post(&format!("/v1/sessions/{session_id}/events"), &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let message_id = accepted["message"]["id"].as_str().expect("a message id").to_owned();
        let event = &accepted["event"];
        assert_eq!(event["id"], format!("{session_id}:evt_1"));
        assert_eq!(event["session_id"], session_id.as_str());
        assert_eq!(event["sequence_number"], 1);
        assert_eq!(event["message_id"], message_id.as_str());
        assert_eq!(event["type"], "user.message");
        assert_eq!(event["source"], "user");
        assert_eq!(event["actor"], json!({"type": "user", "id": org_id}));
        assert_eq!(
            event["data"],
            json!({"content": [{"type": "text", "text": "hello"}], "metadata": {"ticket_id": "T-1042"}, "message_id": message_id})
        );
        assert_eq!(accepted["message"]["status"], "queued");
        assert_eq!(accepted["message"]["sequence_number"], 1);
        assert_eq!(accepted["session"]["status"], "running");
        assert_eq!(accepted["session"]["last_message_id"], message_id.as_str());
        assert_eq!(accepted["session"]["last_message_status"], "queued");

        let second = send_text(&control, &session_id, "and again").await;
        assert_eq!(second["message"]["sequence_number"], 2);
        assert_eq!(
            second["event"]["sequence_number"], 4,
            "user.message, its status, the session's status, then the second"
        );

        // Every event once, in order, over pages of two.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(cursor) => format!("/v1/sessions/{session_id}/events?limit=2&after={cursor}"),
                None => format!("/v1/sessions/{session_id}/events?limit=2"),
            };
            let (status, page) = control.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            for event in page["events"].as_array().expect("events") {
                seen.push((
                    event["sequence_number"].as_i64().expect("n"),
                    event["type"].as_str().expect("type").to_owned(),
                ));
            }
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if page["has_more"] == false {
                break;
            }
        }
        let types: Vec<&str> = seen.iter().map(|(_, kind)| kind.as_str()).collect();
        assert_eq!(
            types,
            [
                "user.message",
                "message.status_changed",
                "session.status_changed",
                "user.message",
                "message.status_changed"
            ]
        );
        assert_eq!(seen.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(cursor.as_deref(), Some(format!("{session_id}:evt_5").as_str()), "the cursor to continue from");
        let (_, after_number) = control.get(&format!("/v1/sessions/{session_id}/events?after=3")).await;
        assert_eq!(after_number["events"][0]["id"], format!("{session_id}:evt_4"));
        let (_, empty) = control.get(&format!("/v1/sessions/{session_id}/events?after={session_id}:evt_5")).await;
        assert_eq!(empty["events"], json!([]));
        assert_eq!(empty["next_cursor"], format!("{session_id}:evt_5"));

        // Files in content blocks: the organization's own uploads, images only in image blocks.
        let upload = |name: &'static str, bytes: &'static [u8]| {
            let form =
                reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name(name));
            control.send(control.request(Method::POST, "/v1/files").multipart(form))
        };
        let (status, notes) = upload("notes.txt", b"remember the milk").await;
        assert_eq!(status, StatusCode::CREATED, "{notes}");
        let notes_id = notes["id"].as_str().expect("a file id");
        let with_file = json!({"type": "user.message", "content": [{"type": "text", "text": "see"}, {"type": "file", "file_id": notes_id}]});
        let (status, accepted) = control.post(&format!("/v1/sessions/{session_id}/events"), &with_file).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        assert_eq!(accepted["message"]["parts"][1], json!({"type": "file", "file_id": notes_id}));
        let as_image = json!({"type": "user.message", "content": [{"type": "image", "file_id": notes_id}]});
        let (status, refused) = control.post(&format!("/v1/sessions/{session_id}/events"), &as_image).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert!(refused["detail"].as_str().expect("detail").contains("content[0].file_id"), "{refused}");
        let (_, other_key) = control.create_org("tenant-b").await;
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(b"theirs".as_slice()).file_name("t.txt"));
        let request = control.http.post(format!("{}/v1/files", control.url)).bearer_auth(&other_key).multipart(form);
        let (_, theirs) = control.send(request).await;
        let their_file = json!({"type": "user.message", "content": [{"type": "file", "file_id": theirs["id"]}]});
        let (status, refused) = control.post(&format!("/v1/sessions/{session_id}/events"), &their_file).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert!(refused["detail"].as_str().expect("detail").contains("not found"), "{refused}");

        // Messages, one by one and listed.
        let (status, listed) = control.get(&format!("/v1/sessions/{session_id}/messages")).await;
        assert_eq!(status, StatusCode::OK);
        let messages = listed["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0]["parts"], json!([{"type": "text", "text": "hello"}]));
        assert_eq!(messages[0]["metadata"], json!({"ticket_id": "T-1042"}));
        assert_eq!(messages[0]["attempt"], 1);
        assert_eq!(messages[0]["output"], json!({"parts": [], "error": null}));
        assert_eq!(messages[0]["completed_at"], Value::Null);
        let (_, page) = control.get(&format!("/v1/sessions/{session_id}/messages?limit=1")).await;
        assert_eq!(page["next_cursor"], message_id.as_str());
        let (_, rest) = control.get(&format!("/v1/sessions/{session_id}/messages?after={message_id}")).await;
        assert_eq!(rest["messages"][0]["id"], second["message"]["id"]);
        assert_eq!(rest["has_more"], false);
        let (status, one) = control.get(&format!("/v1/messages/{message_id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(one, messages[0]);

        // The transcript: per message, the user's turn then the assistant's, still queued.
        let (status, transcript) = control.get(&format!("/v1/sessions/{session_id}/transcript")).await;
        assert_eq!(status, StatusCode::OK, "{transcript}");
        assert_eq!(transcript["agent"]["id"], agent.agent_id.as_str());
        assert_eq!(transcript["agent"]["name"], "echo-runtime");
        assert_eq!(transcript["session"]["id"], session_id.as_str());
        let items = transcript["timeline"]["items"].as_array().expect("items");
        let kinds: Vec<&str> = items.iter().map(|item| item["type"].as_str().expect("type")).collect();
        assert_eq!(
            kinds,
            [
                "user_message",
                "assistant_message",
                "user_message",
                "assistant_message",
                "user_message",
                "assistant_message"
            ]
        );
        assert_eq!(items[0]["content"], json!([{"type": "text", "text": "hello"}]));
        assert_eq!(items[0]["id"], format!("{session_id}:evt_1"));
        assert_eq!(items[1]["status"], "queued");
        assert_eq!(items[1]["content"], json!([]));
        assert_eq!(items[1]["message_id"], message_id.as_str());
        assert_quiet(&control);
    }
}

#[tokio::test]
async fn one_call_creates_a_session_and_sends_its_first_message() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let chooser = deploy_chooser(&control).await;
        let body = json!({"type": "user.message", "content": [{"type": "text", "text": "start"}], "metadata": {"ticket_id": "T-1"},
                          "session": {"name": "first", "llm_id": "careful", "secrets": {"GREETING": "hi"}, "internet_access": false}});
        let (status, accepted) = control.post(&format!("/v1/agents/{}/messages", chooser.agent_id), &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let session_id = accepted["session"]["id"].as_str().expect("a session id");
        assert_eq!(accepted["event"]["id"], format!("{session_id}:evt_1"));
        assert_eq!(accepted["event"]["type"], "user.message");
        assert_eq!(accepted["message"]["status"], "queued");
        assert_eq!(accepted["session"]["name"], "first");
        assert_eq!(accepted["session"]["llm_id"], "careful");
        assert_eq!(accepted["session"]["internet_access"], false);
        assert_eq!(accepted["session"]["status"], "running");
        assert_eq!(accepted["session"]["version_id"], chooser.version_id.as_str());
        // Without a session object, the defaults.
        let (status, plain) = control.post(&format!("/v1/agents/{}/messages", chooser.agent_id), &text("hi")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{plain}");
        assert_ne!(plain["session"]["id"], accepted["session"]["id"]);
        assert_eq!(plain["session"]["llm_id"], "fast");
        // A bad session option writes nothing.
        let bad =
            json!({"type": "user.message", "content": [{"type": "text", "text": "x"}], "session": {"llm_id": "nope"}});
        let (status, _) = control.post(&format!("/v1/agents/{}/messages", chooser.agent_id), &bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (_, listed) = control.get(&format!("/v1/agents/{}/sessions", chooser.agent_id)).await;
        assert_eq!(listed["sessions"].as_array().expect("sessions").len(), 2);
        assert_quiet(&control);
    }
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_write_and_refuses_a_different_body() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let agent = deploy_echo_agent(&control).await;
        let session = create_session(&control, &agent, &json!({})).await;
        let path = format!("/v1/sessions/{}/events", session["id"].as_str().expect("id"));
        let with_key =
            |key: &str, body: &Value| control.request(Method::POST, &path).header("Idempotency-Key", key).json(body);

        let (status, first) = control.send(with_key("order-1", &text("buy"))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{first}");
        let response = with_key("order-1", &text("buy")).send().await.expect("answer");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()["idempotent-replayed"], "true");
        let again: Value = response.json().await.expect("JSON");
        assert_eq!(again["event"], first["event"]);
        assert_eq!(again["message"]["id"], first["message"]["id"]);
        let (status, conflict) = control.send(with_key("order-1", &text("sell"))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
        assert!(conflict["detail"].as_str().expect("detail").contains("Idempotency-Key"), "{conflict}");
        let (_, messages) =
            control.get(&format!("/v1/sessions/{}/messages", session["id"].as_str().expect("id"))).await;
        assert_eq!(messages["messages"].as_array().expect("messages").len(), 1, "no second message");
        let (status, _) = control.send(with_key("order-2", &text("buy"))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "a new key is a new message");
        let (status, bad) = control.send(with_key("", &text("buy"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_quiet(&control);
    }
}

#[tokio::test]
async fn another_organization_gets_404_everywhere() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let agent = deploy_echo_agent(&control).await;
        let session = create_session(&control, &agent, &json!({"metadata": {"run": "r1"}})).await;
        let session_id = session["id"].as_str().expect("id");
        let accepted = send_text(&control, session_id, "mine").await;
        let message_id = accepted["message"]["id"].as_str().expect("id");
        let (_, other_key) = control.create_org("tenant-b").await;
        let as_other = |method: Method, path: &str| {
            control.http.request(method, format!("{}{path}", control.url)).bearer_auth(&other_key)
        };
        let agent_id = &agent.agent_id;
        let requests = [
            (Method::POST, format!("/v1/agents/{agent_id}/sessions"), Some(json!({}))),
            (Method::GET, format!("/v1/agents/{agent_id}/sessions"), None),
            (Method::POST, format!("/v1/agents/{agent_id}/messages"), Some(text("theirs"))),
            (Method::GET, format!("/v1/sessions/{session_id}"), None),
            (Method::POST, format!("/v1/sessions/{session_id}/events"), Some(text("theirs"))),
            (Method::GET, format!("/v1/sessions/{session_id}/events"), None),
            (Method::GET, format!("/v1/sessions/{session_id}/stream"), None),
            (Method::GET, format!("/v1/sessions/{session_id}/messages"), None),
            (Method::GET, format!("/v1/sessions/{session_id}/transcript"), None),
            (Method::GET, format!("/v1/messages/{message_id}"), None),
        ];
        for (method, path, body) in requests {
            let mut request = as_other(method.clone(), &path);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let (status, answer) = control.send(request).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
            assert!(answer["detail"].is_string(), "{answer}");
        }
        let (status, listed) = control.send(as_other(Method::GET, "/v1/sessions?metadata.run=r1")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed["sessions"], json!([]));
        let (_, events) = control.get(&format!("/v1/sessions/{session_id}/events")).await;
        assert_eq!(events["events"].as_array().expect("events").len(), 3, "nothing written by the other organization");
        assert_quiet(&control);
    }
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_that_names_the_field() {
    for engine in Engine::available() {
        let control = ControlServer::start(engine).await;
        let agent = deploy_echo_agent(&control).await;
        let session = create_session(&control, &agent, &json!({})).await;
        let session_id = session["id"].as_str().expect("id");
        let message = send_text(&control, session_id, "first").await;
        let message_id = message["message"]["id"].as_str().expect("id");
        let events = format!("/v1/sessions/{session_id}/events");
        let sessions = format!("/v1/agents/{}/sessions", agent.agent_id);
        let long_key = "k".repeat(129);
        let many: serde_json::Map<String, Value> = (0..65).map(|index| (format!("k{index}"), json!("v"))).collect();
        let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
            (
                &events,
                json!({"type": "user.mesage", "content": []}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "user.message, tool.result_submitted",
            ),
            (
                &events,
                json!({"content": [{"type": "text", "text": "x"}]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing field `type`",
            ),
            (&events, json!({"type": "user.message"}), StatusCode::UNPROCESSABLE_ENTITY, "content"),
            (&events, json!({"type": "user.message", "content": []}), StatusCode::UNPROCESSABLE_ENTITY, "content"),
            (&events, json!({"type": "user.message", "content": "hi"}), StatusCode::UNPROCESSABLE_ENTITY, "content"),
            (
                &events,
                json!({"type": "user.message", "content": [{"type": "video", "url": "x"}]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "content[0]",
            ),
            (
                &events,
                json!({"type": "user.message", "content": [{"type": "text", "text": 5}]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "content[0]",
            ),
            (
                &events,
                json!({"type": "user.message", "content": [{"type": "text", "text": ""}]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "content[0].text",
            ),
            (
                &events,
                json!({"type": "user.message", "content": [{"type": "file", "file_id": "file_01jd6x8k2m9q4r7t0v3w5y8z1a"}]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "content[0].file_id",
            ),
            (
                &events,
                json!({"type": "user.message", "content": [{"type": "image", "file_id": "../etc"}]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "content[0].file_id",
            ),
            (
                &events,
                json!({"type": "user.message", "content": [{"type": "text", "text": "x"}], "metadata": "m"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "metadata",
            ),
            (
                &events,
                json!({"type": "user.message", "content": [{"type": "text", "text": "x"}], "tool_call_id": "c"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "tool_call_id",
            ),
            (
                &events,
                json!({"type": "user.message", "content": [{"type": "text", "text": "x"}], "colour": "red"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown field `colour`",
            ),
            (
                &events,
                json!({"type": "tool.result_submitted", "tool_call_id": "c", "result": 1}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "message_id",
            ),
            (
                &events,
                json!({"type": "tool.result_submitted", "message_id": message_id, "result": 1}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "tool_call_id",
            ),
            (
                &events,
                json!({"type": "tool.result_submitted", "message_id": message_id, "tool_call_id": "c"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "result",
            ),
            (
                &events,
                json!({"type": "tool.result_submitted", "message_id": message_id, "tool_call_id": "c", "is_error": "yes"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "is_error",
            ),
            (
                &events,
                json!({"type": "tool.result_submitted", "message_id": message_id, "tool_call_id": "call_1", "result": {"ok": true}}),
                StatusCode::CONFLICT,
                "no tool.call_requested event for tool call call_1",
            ),
            (
                &events,
                json!({"type": "tool.result_submitted", "message_id": "msg_nope", "tool_call_id": "call_1", "is_error": true}),
                StatusCode::CONFLICT,
                "message_id",
            ),
            (&sessions, json!({"metadata": many}), StatusCode::UNPROCESSABLE_ENTITY, "metadata"),
            (&sessions, json!({"metadata": {long_key.clone(): "v"}}), StatusCode::UNPROCESSABLE_ENTITY, "metadata"),
            (&sessions, json!({"metadata": {"k": "v".repeat(1025)}}), StatusCode::UNPROCESSABLE_ENTITY, "metadata.k"),
            (&sessions, json!({"metadata": {"k": 1}}), StatusCode::UNPROCESSABLE_ENTITY, "metadata.k"),
            (&sessions, json!({"secrets": {"lower": "x"}}), StatusCode::UNPROCESSABLE_ENTITY, "^[A-Z_][A-Z0-9_]*$"),
            (&sessions, json!({"secrets": {"TOKEN": ""}}), StatusCode::UNPROCESSABLE_ENTITY, "secrets.TOKEN"),
            (&sessions, json!({"internet_access": "yes"}), StatusCode::UNPROCESSABLE_ENTITY, "internet_access"),
            (&sessions, json!({"llm_api_key": ""}), StatusCode::UNPROCESSABLE_ENTITY, "llm_api_key"),
            (&sessions, json!({"nmae": "x"}), StatusCode::UNPROCESSABLE_ENTITY, "unknown field `nmae`"),
            (&sessions, json!([]), StatusCode::UNPROCESSABLE_ENTITY, "invalid type"),
        ];
        for (path, body, status, needle) in cases {
            let (got, answer) = control.post(path, &body).await;
            assert_eq!(got, status, "{body}: {answer}");
            let detail = answer["detail"].as_str().unwrap_or_else(|| panic!("a detail in {answer}"));
            assert!(detail.contains(needle), "{body}: {detail:?} should mention {needle:?}");
        }
        let gets = [
            (format!("/v1/sessions/{session_id}/events?limit=5000"), "limit"),
            (format!("/v1/sessions/{session_id}/events?limit=-1"), "limit"),
            (format!("/v1/sessions/{session_id}/events?after=sess_other:evt_1"), "after"),
            (format!("/v1/sessions/{session_id}/events?after=x"), "after"),
            (format!("/v1/sessions/{session_id}/events?colour=red"), "colour"),
            (format!("/v1/sessions/{session_id}/messages?after=msg_nope"), "after"),
            ("/v1/sessions?owner=me".to_owned(), "owner"),
            ("/v1/sessions?limit=x".to_owned(), "limit"),
            ("/v1/sessions?after=agt_x".to_owned(), "after"),
        ];
        for (path, needle) in gets {
            let (status, answer) = control.get(&path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
            assert!(answer["detail"].as_str().expect("detail").contains(needle), "{path}: {answer}");
        }
        let (status, answer) = control.get("/v1/sessions/sess_nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        let (status, answer) = control.get("/v1/messages/msg_nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        // A body without a JSON content type.
        let (status, answer) = control.send(control.request(Method::POST, &events).body("{}")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
        let (status, answer) = control.send(control.request(Method::POST, &sessions).body("{}")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
        assert_quiet(&control);
    }
}

/// Runs `dari` against `control`, and returns its exit code, stdout as JSON (or null) and stderr.
pub(crate) async fn cli(control: &ControlServer, args: &[&str], stdin: &str) -> (Option<i32>, Value, String) {
    let env = control.cli_env();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let stdin = stdin.as_bytes().to_vec();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dari_with_stdin(&args, &env, &stdin)
    })
    .await
    .expect("run dari");
    let stdout = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), stdout, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn the_session_commands_create_send_and_read_by_id_or_name() {
    let control = ControlServer::start(Engine::Sqlite).await;
    let agent = deploy_echo_agent(&control).await;
    let chooser = deploy_chooser(&control).await;
    let create =
        ["session", "create", "--agent", "echo-runtime", "--name", "work", "--secret", "A_B=c", "--no-internet-access"];
    let (code, created, stderr) = cli(&control, &create, "").await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(created["agent_id"], agent.agent_id.as_str());
    assert_eq!(created["name"], "work");
    let session_id = created["id"].as_str().expect("id").to_owned();

    let (code, fetched, stderr) = cli(&control, &["session", "get", "work", "--agent", &agent.agent_id], "").await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fetched["id"], session_id.as_str());
    let (code, sent, stderr) = cli(&control, &["session", "send", "work", "hello there", "--no-wait"], "").await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(sent["event"]["data"]["content"][0]["text"], "hello there");
    let (code, sent, stderr) =
        cli(&control, &["session", "send", &session_id, "--stdin", "--no-wait"], "from stdin\n").await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(sent["message"]["sequence_number"], 2);
    let (code, events, stderr) =
        cli(&control, &["session", "events", "work", "--agent", "echo-runtime", "--limit", "2"], "").await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(events["events"].as_array().expect("events").len(), 2);
    assert_eq!(events["has_more"], true);

    // Send to a new session of an agent, with session options.
    let (code, started, stderr) = cli(
        &control,
        &["session", "send", "--agent", "chooser", "--llm", "careful", "--name", "new", "begin", "--no-wait"],
        "",
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(started["session"]["agent_id"], chooser.agent_id.as_str());
    assert_eq!(started["session"]["llm_id"], "careful");
    assert_eq!(started["session"]["name"], "new");
    let (code, listed, stderr) = cli(&control, &["session", "list", "--agent", &chooser.agent_id], "").await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(listed["sessions"][0]["id"], started["session"]["id"]);

    // Failures: exit 2, a message on stderr, nothing on stdout.
    let (code, _, _) = cli(&control, &["session", "create", "--agent", "chooser", "--name", "new"], "").await;
    assert_eq!(code, Some(0));
    let failures: [(&[&str], &str); 5] = [
        (&["session", "get", "new"], "several sessions are named \"new\""),
        (&["session", "create", "--agent", "nobody"], "no agent is named \"nobody\""),
        (&["session", "send", &session_id, "x", "--llm", "fast"], "apply only when `send` creates a session"),
        (&["session", "create", "--agent", "chooser", "--llm", "huge"], "careful, fast"),
        (&["session", "create", "--agent", "chooser", "--secret-env", "DARI_TEST_SURELY_UNSET"], "not set"),
    ];
    for (args, needle) in failures {
        let (code, stdout, stderr) = cli(&control, args, "").await;
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stdout, Value::Null, "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let (code, _, stderr) =
        cli(&control, &["session", "create", "--agent", "chooser", "--internet-access", "--no-internet-access"], "")
            .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert_quiet(&control);
}
