//! Compaction on a small window: once the context nears the model's window, the older messages
//! are summarised by the model and the summary takes their place.

use dari_tests::control::Engine;
use dari_tests::fake_llm::{FakeLlm, Reply, ScriptedUsage};

use super::{deploy, events, manifest, of_type, server};
use crate::execution::{finished, new_session, send};

#[tokio::test]
async fn a_conversation_that_nears_a_small_window_is_summarised_and_goes_on() {
    let fake = FakeLlm::start().await;
    let control = server(Engine::Sqlite, &fake).args(["--model-context-window", "openai/gpt-test=2000"]).start().await;
    let agent = deploy(&control, &manifest(""), &[]).await;
    let session_id = new_session(&control, &agent).await;
    // Each answer says the context held 1,700 tokens: over the threshold (2,000 less a quarter).
    let full = ScriptedUsage { input_tokens: 1_700, ..ScriptedUsage::default() };
    fake.push(Reply::text("first answer").with_usage(full.clone()));
    fake.push(Reply::text("second answer").with_usage(full.clone()));
    fake.push(Reply::text("## Goal\nThe user sent three long texts.").with_usage(ScriptedUsage::default()));
    fake.push(Reply::text("third answer").with_usage(full));

    for (index, marker) in ["ALPHA", "BRAVO", "CHARLIE"].iter().enumerate() {
        // About 1,200 tokens each, by the chars/4 estimate.
        let text = format!("{marker} {}", "lorem ipsum ".repeat(400));
        let message_id = send(&control, &session_id, &text).await;
        let message = finished(&control, &session_id, &message_id).await;
        assert_eq!(message["status"], "completed", "message {}: {message}", index + 1);
    }

    let requests = fake.requests();
    assert_eq!(requests.len(), 4, "three answers and one summary");
    let summary_request = &requests[2];
    let system = summary_request.system_prompt().expect("a system prompt");
    assert!(system.contains("context summarization assistant"), "{system}");
    let asked = summary_request.last_user_text().expect("the conversation to summarise");
    assert!(
        asked.contains("[User]: ALPHA") && !asked.contains("BRAVO"),
        "the first exchange is summarised: {}",
        &asked[..200]
    );

    let third = &requests[3];
    let texts: Vec<String> = third.message_texts().into_iter().map(|(_, text)| text).collect();
    assert!(texts[0].starts_with("The conversation history before this point was compacted"), "{}", &texts[0]);
    assert!(texts[0].contains("The user sent three long texts."));
    assert!(!texts.iter().any(|text| text.contains("ALPHA")), "the summarised message is gone");
    assert!(texts.iter().any(|text| text.contains("BRAVO")) && texts.iter().any(|text| text.contains("CHARLIE")));

    let compacted = of_type(&events(&control, &session_id).await, "session.compacted").len();
    assert_eq!(compacted, 1);
}
