//! The conversation as the next model call sends it: the latest compaction summary first, then
//! every entry after it in order, with each answer's tool results in the order of its calls and
//! a result for every call (a message that failed mid-call leaves some without one; providers
//! refuse such a history, so those get pi's "No result provided" error).

use std::collections::HashMap;

use dari_protocol::tools::ContentBlock;

use super::model::{Entry, ToolResultEntry};
use super::turn::Held;

pub fn request_entries(held: &[Held]) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(held.len() + 1);
    if let Some(summary) = held.iter().rev().find(|held| matches!(held.entry, Entry::CompactionSummary { .. })) {
        entries.push(summary.entry.clone());
    }
    let rest: Vec<&Entry> =
        held.iter().map(|held| &held.entry).filter(|entry| !matches!(entry, Entry::CompactionSummary { .. })).collect();
    let mut index = 0;
    while index < rest.len() {
        let entry = rest[index];
        index += 1;
        let Entry::Assistant(answer) = entry else {
            if !matches!(entry, Entry::ToolResult(_)) {
                entries.push(entry.clone());
            }
            continue;
        };
        entries.push(entry.clone());
        let mut results: HashMap<&str, &ToolResultEntry> = HashMap::new();
        while let Some(Entry::ToolResult(result)) = rest.get(index) {
            results.insert(result.tool_call_id.as_str(), result);
            index += 1;
        }
        for call in answer.tool_calls() {
            let result = results.get(call.id).map_or_else(
                || ToolResultEntry {
                    tool_call_id: call.id.to_owned(),
                    tool_name: call.name.to_owned(),
                    content: vec![ContentBlock::Text { text: "No result provided".to_owned() }],
                    is_error: true,
                },
                |result| (*result).clone(),
            );
            entries.push(Entry::ToolResult(result));
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::harness::pi::model::{AssistantBlock, AssistantTurn, StopReason, Usage};

    fn held(position: i64, entry: Entry) -> Held {
        Held { position, message_id: "msg_1".to_owned(), entry, created_at: 0 }
    }

    fn answer(calls: &[&str]) -> Entry {
        Entry::Assistant(AssistantTurn {
            content: calls
                .iter()
                .map(|id| AssistantBlock::ToolCall {
                    id: (*id).to_owned(),
                    name: "ls".to_owned(),
                    arguments: json!({}),
                })
                .collect(),
            stop_reason: StopReason::ToolUse,
            usage: Usage::default(),
            model: "m".to_owned(),
        })
    }

    fn result(id: &str, text: &str) -> Entry {
        Entry::ToolResult(ToolResultEntry {
            tool_call_id: id.to_owned(),
            tool_name: "ls".to_owned(),
            content: vec![ContentBlock::Text { text: text.to_owned() }],
            is_error: false,
        })
    }

    #[test]
    fn the_summary_leads_results_follow_call_order_and_missing_results_are_errors() {
        let held = vec![
            held(3, Entry::user_text("again")),
            held(4, answer(&["a", "b", "c"])),
            held(5, result("c", "third")),
            held(6, result("a", "first")),
            held(7, Entry::CompactionSummary { summary: "earlier".to_owned(), tokens_before: 10 }),
        ];
        let entries = request_entries(&held);
        assert!(matches!(&entries[0], Entry::CompactionSummary { summary, .. } if summary == "earlier"));
        assert_eq!(entries[1], Entry::user_text("again"));
        let ids: Vec<(String, bool)> = entries[3..]
            .iter()
            .map(|entry| match entry {
                Entry::ToolResult(result) => (result.tool_call_id.clone(), result.is_error),
                other => panic!("expected a tool result, got {other:?}"),
            })
            .collect();
        assert_eq!(ids, [("a".to_owned(), false), ("b".to_owned(), true), ("c".to_owned(), false)]);
    }
}
