//! The work queue on every engine: claims in order, one message at a time per session, leases
//! that expire and are taken over, outcomes recorded only by the lease's holder.

use std::time::Duration;

use serde_json::json;

use super::sessions::{new_session, org_with_agent, send, text};
use super::stores;
use crate::persistence::*;

#[tokio::test]
async fn a_session_runs_its_messages_one_at_a_time_in_order() {
    for (store, _dir) in stores().await {
        let (org_id, agent, _) = org_with_agent(&store, "queue").await;
        let first_session = new_session(&store, &org_id, &agent, &[]).await;
        let other_session = new_session(&store, &org_id, &agent, &[]).await;
        let first = send(&store, &org_id, &first_session.id, &text("one"), None).await.expect("send");
        let second = send(&store, &org_id, &first_session.id, &text("two"), None).await.expect("send");
        let other = send(&store, &org_id, &other_session.id, &text("else"), None).await.expect("send");

        let claimed = store.claim_messages("worker-a", 30_000, 10).await.expect("claim");
        let ids: Vec<&str> = claimed.iter().map(|claimed| claimed.message.id.as_str()).collect();
        assert_eq!(ids, [first.message.id.as_str(), other.message.id.as_str()], "the second waits for the first");
        assert!(claimed.iter().all(|claimed| claimed.message.status == MessageStatus::Running && !claimed.taken_over));
        assert_eq!(claimed[0].runtime_state, None, "no state before the first turn");
        assert!(store.claim_messages("worker-b", 30_000, 10).await.expect("claim").is_empty(), "all leased");

        let outcome = TurnOutcome {
            text: Some("done".to_owned()),
            state: StateChange::Set(json!({"turns": 1})),
            events: vec![("runtime.note".to_owned(), json!({"n": 1}))],
            complete_session: false,
            usage: None,
        };
        let error = store.complete_turn("worker-b", &org_id, &first.message.id, &outcome).await.expect_err("not b's");
        assert!(matches!(error, LedgerError::LeaseLost(_)), "{error}");
        let turn = store.complete_turn("worker-a", &org_id, &first.message.id, &outcome).await.expect("complete");
        assert_eq!(turn.message.status, MessageStatus::Completed);
        assert_eq!(turn.message.output, json!({"parts": [{"type": "text", "text": "done"}], "error": null}));
        assert_eq!(store.runtime_state(&first_session.id).await.expect("state"), Some(json!({"turns": 1})));
        let again = store.complete_turn("worker-a", &org_id, &first.message.id, &outcome).await;
        assert!(matches!(again, Err(LedgerError::LeaseLost(_))), "an outcome is recorded once");

        // Now the second message is claimable, with the state the first left.
        let claimed = store.claim_messages("worker-b", 30_000, 10).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].message.id, second.message.id);
        assert_eq!(claimed[0].runtime_state, Some(json!({"turns": 1})));
        let failure = TurnError::new("runtime_http_error", "HTTP 500", json!({"status": 500}));
        let failed = store.fail_turn("worker-b", &org_id, &second.message.id, &failure).await.expect("fail");
        assert_eq!(failed.message.status, MessageStatus::Failed);
        assert_eq!(failed.message.output["error"], failure.to_json());
        assert_eq!(failed.session.status, SessionStatus::Idle);
        let keep = TurnOutcome {
            text: None,
            state: StateChange::Clear,
            events: Vec::new(),
            complete_session: true,
            usage: None,
        };
        store.complete_turn("worker-a", &org_id, &other.message.id, &keep).await.expect("complete");
        assert_eq!(store.runtime_state(&other_session.id).await.expect("state"), None);
        let ended = store.session(&org_id, &other_session.id).await.expect("read").expect("session");
        assert_eq!(ended.status, SessionStatus::Completed);
        let refused = send(&store, &org_id, &other_session.id, &text("more"), None).await.expect_err("completed");
        assert!(matches!(refused, LedgerError::SessionCompleted(_)), "{refused}");

        let events = store.list_events(&org_id, &first_session.id, 0, 100).await.expect("events").items;
        let kinds: Vec<&str> = events.iter().map(|event| event.event_type.as_str()).collect();
        let note = kinds.iter().position(|kind| *kind == "runtime.note").expect("the runtime's event");
        assert_eq!(kinds[note + 1], "assistant.message_completed", "{kinds:?}");
        assert_eq!(events[note].source, "agent");
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_the_old_holder_records_nothing() {
    for (store, _dir) in stores().await {
        let (org_id, agent, _) = org_with_agent(&store, "leases").await;
        let session = new_session(&store, &org_id, &agent, &[]).await;
        let sent = send(&store, &org_id, &session.id, &text("one"), None).await.expect("send");
        let claimed = store.claim_messages("crashed", 1, 10).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        tokio::time::sleep(Duration::from_millis(5)).await; // Past the 1 ms lease.
        assert!(!store.renew_lease("nobody", &sent.message.id, 30_000).await.expect("renew"), "not its lease");

        let taken = store.claim_messages("successor", 30_000, 10).await.expect("claim");
        assert_eq!(taken.len(), 1);
        assert!(taken[0].taken_over, "the message was running under an expired lease");
        assert_eq!(taken[0].message.attempt, 1, "a takeover is the same attempt");
        assert!(!store.renew_lease("crashed", &sent.message.id, 30_000).await.expect("renew"), "the lease moved");
        assert!(store.renew_lease("successor", &sent.message.id, 30_000).await.expect("renew"));
        assert_eq!(store.next_attempt("successor", &org_id, &sent.message.id).await.expect("attempt"), 2);

        let outcome = TurnOutcome {
            text: Some("x".into()),
            state: StateChange::Keep,
            events: vec![],
            complete_session: false,
            usage: None,
        };
        let stale = store.complete_turn("crashed", &org_id, &sent.message.id, &outcome).await;
        assert!(matches!(stale, Err(LedgerError::LeaseLost(_))));
        store.release_lease("successor", &sent.message.id).await.expect("release");
        let again = store.claim_messages("third", 30_000, 10).await.expect("claim");
        assert_eq!(again.len(), 1, "a released lease is claimable at once");
        store.complete_turn("third", &org_id, &sent.message.id, &outcome).await.expect("complete");
        let completed = store.message(&org_id, &sent.message.id).await.expect("read").expect("message");
        assert_eq!(completed.status, MessageStatus::Completed);
        assert_eq!(completed.attempt, 2);
        let events = store.list_events(&org_id, &session.id, 0, 100).await.expect("events").items;
        let running = events
            .iter()
            .filter(|event| event.event_type == "message.status_changed" && event.data["status"] == "running")
            .count();
        assert_eq!(running, 1, "taking over does not announce `running` again");
    }
}
