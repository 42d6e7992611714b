//! No accepted message is lost: the server is killed with SIGKILL at random moments while many
//! turns run, and restarted on the same address and data; every message accepted with 202
//! completes exactly once, in order, and the runtime saw each advance once.

use std::collections::BTreeMap;
use std::time::Duration;

use dari_tests::control::{ControlServer, Engine, deploy_project};
use reqwest::StatusCode;
use serde_json::Value;

use crate::execution::{new_session, send};

const SESSIONS: usize = 4;
const MESSAGES_PER_SESSION: usize = 12;
const KILLS: usize = 6;
/// How long each turn takes in the runtime, so that the kills land among running turns.
const NAP_MILLIS: u64 = 40;

#[tokio::test]
async fn sigkill_during_many_turns_loses_nothing_and_runs_nothing_twice() {
    for engine in Engine::available() {
        sigkill_during_many_turns(engine).await;
    }
}

async fn sigkill_during_many_turns(engine: Engine) {
    let builder = || {
        ControlServer::builder(engine.clone()).workers(16).args([
            "--message-lease",
            "1s",
            "--sandbox-lost-grace",
            "20s",
        ])
    };
    let mut control = builder().start().await;
    let agent = deploy_project(&control, &dari_tests::workspace_root().join("tests/fixtures/test-runtime")).await;
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(new_session(&control, &agent).await);
    }
    // Every message is accepted before the first kill, so that each kill lands among running
    // turns; the messages of a session run one after the other.
    let mut accepted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for turn in 1..=MESSAGES_PER_SESSION {
        for session_id in &sessions {
            let message_id = send(&control, session_id, &format!("nap {NAP_MILLIS} turn {turn}")).await;
            accepted.entry(session_id.clone()).or_default().push(message_id);
        }
    }
    let address = control.url.trim_start_matches("http://").to_owned();
    let mut interrupted = 0;
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(spread_millis(kill))).await;
        let pending = pending_messages(&control, &sessions).await;
        let (data_dir, database_url) = control.kill().await;
        if pending > 0 {
            interrupted += 1;
        }
        control = builder().listen(&address).restart(data_dir, database_url).await;
    }
    assert!(interrupted >= KILLS / 2, "only {interrupted} of {KILLS} kills landed while messages were pending");

    // Every message ends, completed, with the turn number that proves it ran once and in order.
    for (session_id, messages) in &accepted {
        for (index, message_id) in messages.iter().enumerate() {
            let message = crate::execution::finished(&control, session_id, message_id).await;
            assert_eq!(message["status"], "completed", "{message}");
            let expected = format!("echo: nap {NAP_MILLIS} turn {} (turn {})", index + 1, index + 1);
            assert_eq!(message["output"]["parts"][0]["text"], expected.as_str(), "{message}");
        }
        let (status, page) = control.get(&format!("/v1/sessions/{session_id}/events?limit=1000")).await;
        assert_eq!(status, StatusCode::OK);
        let answers: Vec<&Value> = page["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|event| event["type"] == "assistant.message_completed")
            .collect();
        assert_eq!(answers.len(), messages.len(), "one answer per message in the ledger");

        // The runtime's own log of advances: each message's key once (the same daemon answered a
        // repeated request from its record), or, where a sandbox was lost, once per attempt.
        let log = std::fs::read_to_string(
            control.data_dir.path().join("sandboxes/sessions").join(session_id).join("workspace/advances.log"),
        )
        .expect("the runtime's advance log");
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for line in log.lines() {
            let key = line.split(' ').next().unwrap_or_default();
            *seen.entry(key).or_default() += 1;
        }
        for message_id in messages {
            let key = format!("{message_id}:1");
            assert_eq!(seen.get(key.as_str()), Some(&1), "advance {key} was delivered once: {log}");
        }
    }
}

/// How many of the sessions' messages are queued or running.
async fn pending_messages(control: &ControlServer, sessions: &[String]) -> usize {
    let mut pending = 0;
    for session_id in sessions {
        let (_, page) = control.get(&format!("/v1/sessions/{session_id}/messages?limit=100")).await;
        pending += page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|message| matches!(message["status"].as_str(), Some("queued" | "running")))
            .count();
    }
    pending
}

/// A spread of delays between kills, different per round, without a random number crate: the
/// rounds land at different points of the turns.
fn spread_millis(round: usize) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    100 + u64::from(nanos % 400) + 37 * round as u64
}
