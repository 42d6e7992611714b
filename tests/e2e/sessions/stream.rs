//! `GET /v1/sessions/{id}/stream`: replay, live follow, resume with `Last-Event-ID`, limits and
//! shutdown. Events are awaited on the stream itself, never slept for.

use std::time::Duration;

use dari_tests::control::{ControlServer, Engine, deploy_echo_agent, pack_project};
use dari_tests::sse::{SseMessage, SseReader};
use dari_tests::workspace_root;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{create_session, send_text};

async fn open(control: &ControlServer, session_id: &str, last_event_id: Option<&str>) -> SseReader {
    let mut request = control.request(Method::GET, &format!("/v1/sessions/{session_id}/stream"));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.expect("open the stream");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    SseReader::new(response)
}

async fn next(reader: &mut SseReader) -> SseMessage {
    reader.next_event().await.expect("the stream stays open")
}

fn sequence(message: &SseMessage) -> i64 {
    message.json()["sequence_number"].as_i64().expect("a sequence number")
}

#[tokio::test]
async fn the_stream_replays_follows_and_resumes_without_loss_or_duplicates() {
    for engine in Engine::available() {
        let control = ControlServer::builder(engine).args(["--stream-keepalive", "200ms"]).start().await;
        let agent = deploy_echo_agent(&control).await;
        let session = create_session(&control, &agent, &json!({})).await;
        let session_id = session["id"].as_str().expect("id").to_owned();
        send_text(&control, &session_id, "one").await;
        send_text(&control, &session_id, "two").await;

        // Replay from the start: SSE id and event name mirror the event object.
        let mut reader = open(&control, &session_id, None).await;
        let first = next(&mut reader).await;
        assert_eq!(first.id.as_deref(), Some(format!("{session_id}:evt_1").as_str()));
        assert_eq!(first.event.as_deref(), Some("user.message"));
        let event = first.json();
        assert_eq!(event["id"], format!("{session_id}:evt_1"));
        assert_eq!(event["type"], "user.message");
        assert_eq!(event["data"]["content"][0]["text"], "one");
        assert_eq!(sequence(&next(&mut reader).await), 2);
        assert_eq!(sequence(&next(&mut reader).await), 3);
        drop(reader);

        // Written while no one listens; then resumed after event 3.
        send_text(&control, &session_id, "three").await;
        send_text(&control, &session_id, "four").await;
        let mut reader = open(&control, &session_id, Some(&format!("{session_id}:evt_3"))).await;
        let mut numbers = Vec::new();
        for _ in 0..6 {
            numbers.push(sequence(&next(&mut reader).await));
        }
        assert_eq!(numbers, [4, 5, 6, 7, 8, 9]);

        // Caught up: an idle stream sends keep-alive comments.
        let keepalive = reader.next_message().await.expect("open");
        assert_eq!(keepalive.comments, ["keepalive"], "{keepalive:?}");

        // Live: writers in parallel while the stream follows. Each message on a running session
        // is two events, so the stream must show exactly 10..=49, once each, in order.
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let control = &control;
                let session_id = &session_id;
                async move {
                    for index in 0..5 {
                        send_text(control, session_id, &format!("writer {writer} message {index}")).await;
                    }
                }
            })
            .collect();
        let reading = async {
            let mut numbers = Vec::new();
            while numbers.len() < 40 {
                numbers.push(sequence(&next(&mut reader).await));
            }
            numbers
        };
        let (_, numbers) = tokio::join!(futures_util::future::join_all(writers), reading);
        assert_eq!(numbers, (10..50).collect::<Vec<_>>());

        // `?after=` works as Last-Event-ID does, and the header wins over it.
        let response = control
            .request(Method::GET, &format!("/v1/sessions/{session_id}/stream?after=47"))
            .send()
            .await
            .expect("open");
        let mut from_query = SseReader::new(response);
        assert_eq!(sequence(&next(&mut from_query).await), 48);
        let response = control
            .request(Method::GET, &format!("/v1/sessions/{session_id}/stream?after=1"))
            .header("Last-Event-ID", format!("{session_id}:evt_48"))
            .send()
            .await
            .expect("open");
        let mut both = SseReader::new(response);
        assert_eq!(sequence(&next(&mut both).await), 49);
        let (status, body) = control.get(&format!("/v1/sessions/{session_id}/stream?after=sess_x:evt_2")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let warnings = control.unexpected_warnings(&[]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

#[tokio::test]
async fn streams_are_bounded_per_organization_and_end_when_the_server_stops() {
    let mut control = ControlServer::builder(Engine::Sqlite)
        .args(["--max-streams-per-org", "2", "--max-streams", "3", "--stream-keepalive", "100ms"])
        .start()
        .await;
    let agent = deploy_echo_agent(&control).await;
    let session = create_session(&control, &agent, &json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/sessions/{session_id}/stream");
    let first = open(&control, &session_id, None).await;
    let mut second = open(&control, &session_id, None).await;
    let (status, body) = control.get(&path).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body["detail"].as_str().expect("detail").contains("2 event streams open"), "{body}");

    // Another organization has its own share, within the server's total of three.
    let (_, other_key) = control.create_org("tenant-b").await;
    let echo = workspace_root().join("examples").join("echo-runtime");
    let published = control.publish_archive(&other_key, &pack_project(&echo)).await;
    let as_other = |method: Method, path: &str| {
        control.http.request(method, format!("{}{path}", control.url)).bearer_auth(&other_key)
    };
    let (status, theirs) = control
        .send(as_other(Method::POST, &format!("/v1/agents/{}/sessions", published["agent_id"].as_str().expect("id"))))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    let their_path = format!("/v1/sessions/{}/stream", theirs["id"].as_str().expect("id"));
    let their_stream = as_other(Method::GET, &their_path).send().await.expect("answer");
    assert_eq!(their_stream.status(), StatusCode::OK);
    let (status, body) = control.send(as_other(Method::GET, &their_path)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["detail"].as_str().expect("detail").contains("the server has 3 event streams open"), "{body}");
    drop(their_stream);

    // A closed stream frees its place once the server notices (at its next keep-alive, or the
    // one after: the first write to a closed socket can still succeed). The deadline allows for
    // a 2-core machine running the whole suite at once.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let third = loop {
        let response = control.request(Method::GET, &path).send().await.expect("answer");
        if response.status() == StatusCode::OK {
            break SseReader::new(response);
        }
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(tokio::time::Instant::now() < deadline, "the closed stream's place was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // SIGTERM ends open streams, so that the server stops at once and cleanly.
    assert_eq!(control.terminate().await, Some(0));
    while second.next_message().await.is_some() {}
    drop(third);
    let warnings = control.unexpected_warnings(&[]);
    assert!(warnings.is_empty(), "{warnings:?}");
}
