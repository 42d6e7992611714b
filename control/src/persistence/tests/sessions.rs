//! Sessions, their ledger and messages, on every engine.

use std::collections::BTreeMap;

use dari_protocol::manifest::{self, MemoryFiles};
use serde_json::{Value, json};

use super::stores;
use crate::ids::{new_id, prefix};
use crate::persistence::*;

/// An organization with an agent that has one version: (org id, agent, version).
pub(super) async fn org_with_agent(store: &Store, org_name: &str) -> (String, AgentRecord, VersionRecord) {
    let mut tx = store.begin().await.expect("begin");
    let org = store.create_org(&mut tx, org_name, false).await.expect("org");
    tx.commit().await.expect("commit");
    let yaml = "name: helper\nharness:\n  kind: customRuntimeServer\n  protocol: dari-runtime-v1\n  customRuntimeServer:\n    command: python3 server.py\n    port: 8787\ninstructions:\n  system: prompts/system.md\n";
    let files = MemoryFiles::new().with("dari.yml", yaml).with("prompts/system.md", "Be brief.").with("server.py", "");
    let manifest = manifest::validate(yaml.as_bytes(), &files).manifest.expect("a valid manifest");
    let manifest = serde_json::to_string(&manifest).expect("manifest JSON");
    let snapshot = store
        .reserve_snapshot(&NewSnapshot {
            org_id: &org.id,
            format: "tar.gz",
            sha256: "00",
            size_bytes: 1,
            metadata: "{}",
            upload_token_hash: "hash",
            upload_expires_at: i64::MAX,
        })
        .await
        .expect("reserve");
    store.mark_snapshot_uploaded(&snapshot.id).await.expect("uploaded");
    let check =
        SnapshotCheck::Ready { manifest: manifest.clone(), files: "[]".to_owned(), diagnostics: "[]".to_owned() };
    store.finalize_snapshot(&snapshot.id, &check).await.expect("finalize");
    let source = VersionSource {
        snapshot_id: &snapshot.id,
        archive_sha256: "00",
        size_bytes: 1,
        manifest: &manifest,
        files: "[]",
    };
    let published =
        store.publish_version(&org.id, "helper", PublishTarget::ByName("helper"), &source).await.expect("publish");
    (org.id, published.agent, published.version)
}

pub(super) async fn new_session(
    store: &Store,
    org_id: &str,
    agent: &AgentRecord,
    metadata: &[(&str, &str)],
) -> SessionRecord {
    let metadata: BTreeMap<String, String> = metadata.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let id = new_id(prefix::SESSION);
    store
        .create_session(&NewSession {
            id: &id,
            org_id,
            agent_id: &agent.id,
            version_id: agent.active_version_id.as_deref().expect("a version"),
            name: Some("first"),
            metadata: &metadata,
            llm_id: None,
            internet_access: false,
            storage_binding_id: None,
            sealed_secrets: Some("sealed"),
            sealed_llm_api_key: None,
        })
        .await
        .expect("create session")
}

pub(super) fn text(text: &str) -> Value {
    json!([{"type": "text", "text": text}])
}

pub(super) async fn send(
    store: &Store,
    org_id: &str,
    session_id: &str,
    content: &Value,
    idempotency: Option<Idempotency<'_>>,
) -> Result<Appended, LedgerError> {
    let actor = Actor::user(org_id);
    store
        .send_user_message(
            org_id,
            session_id,
            &NewUserMessage { content, metadata: &json!({}), actor: &actor, idempotency },
        )
        .await
}

fn tool_result<'a>(
    message_id: &'a str,
    tool_call_id: &'a str,
    result: &'a Value,
    actor: &'a Actor,
) -> NewToolResult<'a> {
    NewToolResult { message_id, tool_call_id, result, is_error: false, actor, idempotency: None }
}

fn types(events: &[EventRecord]) -> Vec<&str> {
    events.iter().map(|event| event.event_type.as_str()).collect()
}

#[tokio::test]
async fn a_message_is_queued_in_one_write_and_the_ledger_records_each_step() {
    for (store, _dir) in stores().await {
        let (org_id, agent, version) = org_with_agent(&store, "a").await;
        let session = new_session(&store, &org_id, &agent, &[]).await;
        assert_eq!(session.status, SessionStatus::Idle);
        assert_eq!(session.version_id, version.id);

        let first = send(&store, &org_id, &session.id, &text("hello"), None).await.expect("send");
        assert_eq!(first.event.sequence_number, 1);
        assert_eq!(first.event.public_id(), format!("{}:evt_1", session.id));
        assert_eq!(first.event.event_type, "user.message");
        assert_eq!(first.event.data, json!({"content": text("hello"), "metadata": {}, "message_id": first.message.id}));
        assert_eq!(first.event.actor, json!({"type": "user", "id": org_id}));
        assert_eq!(first.message.sequence_number, 1);
        assert_eq!(first.message.status, MessageStatus::Queued);
        assert_eq!(first.session.status, SessionStatus::Running);
        assert_eq!(first.session.last_message_id.as_deref(), Some(first.message.id.as_str()));
        assert_eq!(first.session.last_message_status, Some(MessageStatus::Queued));

        // A second message while the first is pending: no session status change.
        let second = send(&store, &org_id, &session.id, &text("again"), None).await.expect("send");
        assert_eq!(second.message.sequence_number, 2);
        let events = store.list_events(&org_id, &session.id, 0, 100).await.expect("events");
        assert!(!events.has_more);
        assert_eq!(
            types(&events.items),
            [
                "user.message",
                "message.status_changed",
                "session.status_changed",
                "user.message",
                "message.status_changed"
            ]
        );
        assert_eq!(events.items[2].data, json!({"status": "running", "previous_status": "idle"}));
        let numbers: Vec<i64> = events.items.iter().map(|event| event.sequence_number).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);

        // Pages: after 2, two at a time.
        let page = store.list_events(&org_id, &session.id, 2, 2).await.expect("page");
        assert_eq!(page.items.iter().map(|event| event.sequence_number).collect::<Vec<_>>(), [3, 4]);
        assert!(page.has_more);

        // The harness finishes both: the session is idle again, and says so once.
        store.set_message_status(&org_id, &first.message.id, MessageStatus::Running, None).await.expect("run");
        store.set_message_status(&org_id, &first.message.id, MessageStatus::Completed, None).await.expect("complete");
        let (failed, session_after) = store
            .set_message_status(&org_id, &second.message.id, MessageStatus::Failed, Some("model unavailable"))
            .await
            .expect("fail");
        assert_eq!(failed.output["error"], "model unavailable");
        assert!(failed.completed_at.is_some());
        assert_eq!(session_after.status, SessionStatus::Idle);
        assert_eq!(session_after.last_message_status, Some(MessageStatus::Failed));
        let error =
            store.set_message_status(&org_id, &failed.id, MessageStatus::Running, None).await.expect_err("ended");
        assert!(matches!(error, LedgerError::InvalidTransition { .. }), "{error}");
        let events = store.list_events(&org_id, &session.id, 5, 100).await.expect("events");
        assert_eq!(
            types(&events.items),
            ["message.status_changed", "message.status_changed", "message.status_changed", "session.status_changed"]
        );
        assert_eq!(events.items[2].data["error"], "model unavailable");
        let messages = store.list_messages(&org_id, &session.id, 0, 10).await.expect("messages");
        assert_eq!(
            messages.items.iter().map(|message| message.status).collect::<Vec<_>>(),
            [MessageStatus::Completed, MessageStatus::Failed]
        );
        let stored = store.session(&org_id, &session.id).await.expect("read").expect("found");
        assert_eq!(stored, session_after);
    }
}

#[tokio::test]
async fn an_idempotency_key_repeats_the_first_write_and_refuses_another_request() {
    for (store, _dir) in stores().await {
        let (org_id, agent, _) = org_with_agent(&store, "a").await;
        let session = new_session(&store, &org_id, &agent, &[]).await;
        let key = Idempotency { key: "retry-1", request_sha256: "aaa" };
        let first = send(&store, &org_id, &session.id, &text("once"), Some(key)).await.expect("send");
        let again = send(&store, &org_id, &session.id, &text("once"), Some(key)).await.expect("repeat");
        assert!(again.replayed && !first.replayed);
        assert_eq!(again.event, first.event);
        assert_eq!(again.message.id, first.message.id);
        let other = Idempotency { key: "retry-1", request_sha256: "bbb" };
        let error = send(&store, &org_id, &session.id, &text("other"), Some(other)).await.expect_err("conflict");
        assert!(matches!(error, LedgerError::IdempotencyConflict { .. }), "{error}");
        assert_eq!(store.list_messages(&org_id, &session.id, 0, 10).await.expect("list").items.len(), 1);
        // The same key on another session is another key.
        let session_b = new_session(&store, &org_id, &agent, &[]).await;
        let elsewhere = send(&store, &org_id, &session_b.id, &text("once"), Some(key)).await.expect("send");
        assert!(!elsewhere.replayed);
    }
}

#[tokio::test]
async fn a_tool_result_must_answer_a_requested_open_tool_call() {
    for (store, _dir) in stores().await {
        let (org_id, agent, _) = org_with_agent(&store, "a").await;
        let session = new_session(&store, &org_id, &agent, &[]).await;
        let sent = send(&store, &org_id, &session.id, &text("look it up"), None).await.expect("send");
        let actor = Actor::user(&org_id);
        let result = json!({"matches": ["a.md"]});
        let submit = |message_id, tool_call_id| tool_result(message_id, tool_call_id, &result, &actor);
        let message_id = sent.message.id.as_str();
        // Nothing requested yet.
        let error = store
            .submit_tool_result(&org_id, &session.id, &submit(message_id, "call_1"))
            .await
            .expect_err("no request");
        assert!(error.to_string().contains("no tool.call_requested event for tool call call_1"), "{error}");

        let requested = store
            .request_tool_call(&org_id, message_id, "call_1", "search", &json!({"q": "x"}))
            .await
            .expect("request");
        assert_eq!(requested.event_type, "tool.call_requested");
        store.request_tool_call(&org_id, message_id, "call_2", "search", &json!({"q": "y"})).await.expect("request");
        let message = store.message(&org_id, message_id).await.expect("read").expect("found");
        assert_eq!(message.status, MessageStatus::WaitingForTool);

        // The wrong message, an unknown message, then the right one, then a second answer.
        let other = send(&store, &org_id, &session.id, &text("other"), None).await.expect("send");
        let error = store
            .submit_tool_result(&org_id, &session.id, &submit(&other.message.id, "call_1"))
            .await
            .expect_err("wrong message");
        assert!(error.to_string().contains(&format!("requested by message {message_id}")), "{error}");
        let error =
            store.submit_tool_result(&org_id, &session.id, &submit("msg_nope", "call_1")).await.expect_err("unknown");
        assert!(error.to_string().contains("has no message msg_nope"), "{error}");
        let answered =
            store.submit_tool_result(&org_id, &session.id, &submit(message_id, "call_1")).await.expect("submit");
        assert_eq!(
            answered.event.data,
            json!({"message_id": message_id, "tool_call_id": "call_1", "result": result, "is_error": false})
        );
        assert_eq!(answered.message.status, MessageStatus::WaitingForTool, "call_2 is still open");
        let error =
            store.submit_tool_result(&org_id, &session.id, &submit(message_id, "call_1")).await.expect_err("twice");
        assert!(error.to_string().contains("already has a result"), "{error}");
        let last = store.submit_tool_result(&org_id, &session.id, &submit(message_id, "call_2")).await.expect("submit");
        assert_eq!(last.message.status, MessageStatus::Queued, "queued again for the harness");
        let events = store.list_events(&org_id, &session.id, last.event.sequence_number - 1, 10).await.expect("events");
        assert_eq!(types(&events.items), ["tool.result_submitted", "message.status_changed"]);
    }
}

#[tokio::test]
async fn sessions_list_newest_first_by_agent_and_metadata_and_stay_in_their_organization() {
    for (store, _dir) in stores().await {
        let (org_id, agent, _) = org_with_agent(&store, "a").await;
        let (org_b, agent_b, _) = org_with_agent(&store, "b").await;
        let first = new_session(&store, &org_id, &agent, &[("run", "r1"), ("kind", "eval")]).await;
        let second = new_session(&store, &org_id, &agent, &[("run", "r1"), ("kind", "chat")]).await;
        let third = new_session(&store, &org_id, &agent, &[("run", "r2")]).await;
        let theirs = new_session(&store, &org_b, &agent_b, &[("run", "r1")]).await;
        let ids = |page: &Page<SessionRecord>| page.items.iter().map(|session| session.id.clone()).collect::<Vec<_>>();

        let all = store.list_sessions(&org_id, &SessionFilter::default(), None, 10).await.expect("list");
        assert_eq!(ids(&all), [third.id.clone(), second.id.clone(), first.id.clone()]);
        let page = store.list_sessions(&org_id, &SessionFilter::default(), None, 2).await.expect("list");
        assert!(page.has_more);
        let rest = store.list_sessions(&org_id, &SessionFilter::default(), Some(&second.id), 2).await.expect("list");
        assert_eq!(ids(&rest), [first.id.as_str()]);
        assert!(!rest.has_more);

        let by_run = SessionFilter { agent_id: None, metadata: vec![("run", "r1")] };
        assert_eq!(
            ids(&store.list_sessions(&org_id, &by_run, None, 10).await.expect("list")),
            [second.id.clone(), first.id.clone()]
        );
        let both = SessionFilter { agent_id: Some(&agent.id), metadata: vec![("run", "r1"), ("kind", "eval")] };
        assert_eq!(ids(&store.list_sessions(&org_id, &both, None, 10).await.expect("list")), [first.id.as_str()]);
        let other_agent = SessionFilter { agent_id: Some(&agent_b.id), metadata: vec![] };
        assert!(store.list_sessions(&org_id, &other_agent, None, 10).await.expect("list").items.is_empty());
        assert_eq!(first.metadata.get("kind").map(String::as_str), Some("eval"));

        // Another organization's session is invisible.
        assert_eq!(store.session(&org_id, &theirs.id).await.expect("read"), None);
        assert!(send(&store, &org_id, &theirs.id, &text("hi"), None).await.is_err());
        assert!(store.list_events(&org_id, &theirs.id, 0, 10).await.expect("events").items.is_empty());
        let sealed = store.sealed_session_secrets(&org_id, &first.id).await.expect("read").expect("found");
        assert_eq!(sealed, (Some("sealed".to_owned()), None));
    }
}

#[tokio::test]
async fn a_session_and_its_first_message_are_created_together() {
    for (store, _dir) in stores().await {
        let (org_id, agent, _) = org_with_agent(&store, "a").await;
        let id = new_id(prefix::SESSION);
        let metadata = BTreeMap::new();
        let actor = Actor::user(&org_id);
        let content = text("start");
        let appended = store
            .create_session_with_message(
                &NewSession {
                    id: &id,
                    org_id: &org_id,
                    agent_id: &agent.id,
                    version_id: agent.active_version_id.as_deref().expect("a version"),
                    name: None,
                    metadata: &metadata,
                    llm_id: None,
                    internet_access: true,
                    storage_binding_id: None,
                    sealed_secrets: None,
                    sealed_llm_api_key: None,
                },
                &NewUserMessage {
                    content: &content,
                    metadata: &json!({"ticket": "T-1"}),
                    actor: &actor,
                    idempotency: None,
                },
            )
            .await
            .expect("create");
        assert_eq!(appended.session.id, id);
        assert_eq!(appended.event.sequence_number, 1);
        assert_eq!(appended.session.status, SessionStatus::Running);
        assert!(appended.session.internet_access);
        assert_eq!(appended.message.metadata, json!({"ticket": "T-1"}));
    }
}

#[tokio::test]
async fn concurrent_writers_to_one_session_leave_no_gap_and_no_duplicate() {
    for (store, _dir) in stores().await {
        let (org_id, agent, _) = org_with_agent(&store, "a").await;
        let session = new_session(&store, &org_id, &agent, &[]).await;
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let (store, org_id, session_id) = (store.clone(), org_id.clone(), session.id.clone());
                tokio::spawn(async move {
                    for index in 0..5 {
                        send(&store, &org_id, &session_id, &text(&format!("{writer}/{index}")), None)
                            .await
                            .expect("send");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer");
        }
        let events = store.list_events(&org_id, &session.id, 0, 1000).await.expect("events");
        // The first message also moved the session to running: one event more.
        assert_eq!(
            events.items.iter().map(|event| event.sequence_number).collect::<Vec<_>>(),
            (1..=81).collect::<Vec<_>>()
        );
        let messages = store.list_messages(&org_id, &session.id, 0, 1000).await.expect("messages");
        assert_eq!(
            messages.items.iter().map(|message| message.sequence_number).collect::<Vec<_>>(),
            (1..=40).collect::<Vec<_>>()
        );
        let stored = store.session(&org_id, &session.id).await.expect("read").expect("found");
        assert_eq!((stored.last_event_sequence, stored.last_message_sequence), (81, 40));
    }
}
