//! Compaction, after pi (`core/compaction`): when the context nears the model's window, the
//! start of the conversation is summarised by the same model and the summary takes its place.
//!
//! - **When.** Before a model call, if the context's tokens exceed `window − reserve`: the last
//!   answer's reported usage plus a chars/4 estimate of what came after it (pi's measure). Also
//!   once when the provider says the prompt is too long.
//! - **What.** Walking back from the newest entry before the current message, entries are kept
//!   until `keep_recent` tokens are; the cut falls on a user or assistant entry, never a tool
//!   result. Unlike pi, the message being answered is never split: when it alone is too large,
//!   nothing is compacted and the provider's overflow error fails the message.
//! - **Budgets.** pi's reserve (16,384) and keep-recent (20,000) tokens, scaled down for small
//!   windows to a quarter and a half of the window.
//! - **How.** The summarised entries are serialised to text (`[User]: …`, tool results cut to
//!   2,000 characters) and the model writes pi's sections; a later compaction updates the
//!   previous summary. The files read and modified are listed after the summary.

use std::collections::BTreeSet;

use dari_protocol::tools::ContentBlock;

use super::model::{AssistantBlock, Entry, ModelRequest};
use super::provider;
use super::steps::{self, text_of};
use super::turn::{Held, Turn};
use crate::harness::TurnFailure;
use crate::persistence::TurnError;

const RESERVE_TOKENS: u64 = 16_384;
const KEEP_RECENT_TOKENS: u64 = 20_000;
/// Characters an image counts for, as in pi.
const IMAGE_CHARS: u64 = 4_800;
const TOOL_RESULT_CHARS: usize = 2_000;

const SYSTEM: &str = "You are a context summarization assistant. Your task is to read a conversation between a user and an AI coding assistant, then produce a structured summary following the exact format specified.\n\nDo NOT continue the conversation. Do NOT respond to any questions in the conversation. ONLY output the structured summary.";

const SECTIONS: &str = "Use this EXACT format:\n\n## Goal\n[What is the user trying to accomplish?]\n\n## Constraints & Preferences\n- [Requirements and preferences the user stated]\n\n## Progress\n### Done\n- [x] [Completed work]\n\n### In Progress\n- [ ] [Current work]\n\n### Blocked\n- [Issues, if any]\n\n## Key Decisions\n- **[Decision]**: [Rationale]\n\n## Next Steps\n1. [What should happen next]\n\n## Critical Context\n- [Data, paths, names and references needed to continue]\n\nKeep each section concise. Preserve exact file paths, function names, and error messages.";

/// `(reserve, keep_recent)` tokens for a window.
fn budgets(window: u64) -> (u64, u64) {
    (RESERVE_TOKENS.min(window / 4), KEEP_RECENT_TOKENS.min(window / 2))
}

/// Compacts when the context is over its threshold, or when `overflowed`. True when it did.
pub async fn compact_if_needed(turn: &mut Turn<'_>, overflowed: bool) -> Result<bool, TurnFailure> {
    let window = turn.choice.context_window;
    let (reserve, keep_recent) = budgets(window);
    let tokens = context_tokens(&turn.held, &turn.system);
    if !overflowed && tokens <= window.saturating_sub(reserve) {
        return Ok(false);
    }
    let message_id = turn.message_id().to_owned();
    let current = turn.held.iter().position(|held| held.message_id == message_id).unwrap_or(turn.held.len());
    let Some(cut) = cut_point(&turn.held[..current], keep_recent) else { return Ok(false) };
    let summarized = &turn.held[..cut];
    // The latest summary, wherever it sits (it may follow the cut): the new one updates it.
    let previous = turn.held.iter().rev().find_map(|held| match &held.entry {
        Entry::CompactionSummary { summary, .. } => Some(summary.clone()),
        _ => None,
    });
    let prompt = summary_prompt(summarized, previous.as_deref());
    let entries = [Entry::user_text(prompt)];
    let max_tokens = u32::try_from(reserve * 4 / 5).unwrap_or(u32::MAX).max(256);
    let request =
        ModelRequest { model: &turn.choice.upstream_model, system: SYSTEM, entries: &entries, tools: &[], max_tokens };
    let config = turn.harness.stream_config();
    let answer = match provider::stream_with(&turn.harness.http, &turn.choice.endpoint, &request, &config, &mut |_| {})
        .await
    {
        Ok(answer) => answer,
        Err(error) if overflowed => {
            let mut details = turn.choice.describe();
            details["status"] = serde_json::json!(error.status);
            return Err(TurnFailure::Final(TurnError::new(
                "model_context_overflow",
                format!("the conversation does not fit the model's context window, and summarising it failed: {error}"),
                details,
            )));
        }
        Err(error) => {
            tracing::warn!(message_id, "compaction failed; the model call goes ahead without it: {error}");
            return Ok(false);
        }
    };
    let mut summary = answer.text();
    summary.push_str(&file_lists(summarized, previous.as_deref()));
    let through = turn.held[cut].position - 1;
    let entry = Entry::CompactionSummary { summary, tokens_before: tokens };
    let step = steps::compaction_step(&message_id, &entry, through, tokens, cut);
    turn.commit(step, vec![entry]).await?;
    let newest = turn.held.last().map_or(0, |held| held.position);
    turn.held.retain(|held| {
        held.position > through && (held.position == newest || !matches!(held.entry, Entry::CompactionSummary { .. }))
    });
    tracing::info!(message_id, tokens, entries = cut, "compacted the conversation");
    Ok(true)
}

/// pi's measure of the context: the last answer's usage and an estimate of what followed.
fn context_tokens(held: &[Held], system: &str) -> u64 {
    let last_usage = held.iter().rposition(|held| match &held.entry {
        Entry::Assistant(answer) => answer.usage.total_tokens() > 0,
        _ => false,
    });
    match last_usage {
        Some(index) => {
            let Entry::Assistant(answer) = &held[index].entry else { return 0 };
            answer.usage.total_tokens() + held[index + 1..].iter().map(|held| estimate(&held.entry)).sum::<u64>()
        }
        None => chars(system) / 4 + held.iter().map(|held| estimate(&held.entry)).sum::<u64>(),
    }
}

/// The index of the first entry kept, or `None` when nothing before it would be summarised.
fn cut_point(candidates: &[Held], keep_recent: u64) -> Option<usize> {
    let mut kept = 0;
    let mut cut = candidates.len();
    while cut > 0 && kept < keep_recent {
        cut -= 1;
        kept += estimate(&candidates[cut].entry);
    }
    while cut < candidates.len() && !matches!(candidates[cut].entry, Entry::User { .. } | Entry::Assistant(_)) {
        cut += 1;
    }
    // At the end, everything before the current message is summarised.
    (cut > 0).then_some(cut)
}

fn estimate(entry: &Entry) -> u64 {
    let blocks = |content: &[ContentBlock]| {
        content
            .iter()
            .map(|block| match block {
                ContentBlock::Text { text } => chars(text),
                ContentBlock::Image { .. } => IMAGE_CHARS,
            })
            .sum::<u64>()
    };
    let characters = match entry {
        Entry::User { content } => blocks(content),
        Entry::ToolResult(result) => blocks(&result.content),
        Entry::CompactionSummary { summary, .. } => chars(summary),
        Entry::Assistant(answer) => answer
            .content
            .iter()
            .map(|block| match block {
                AssistantBlock::Text { text } => chars(text),
                AssistantBlock::Thinking { thinking, .. } => chars(thinking),
                AssistantBlock::ToolCall { name, arguments, .. } => chars(name) + chars(&arguments.to_string()),
            })
            .sum(),
    };
    characters.div_ceil(4)
}

fn chars(text: &str) -> u64 {
    u64::try_from(text.chars().count()).unwrap_or(u64::MAX)
}

fn summary_prompt(summarized: &[Held], previous: Option<&str>) -> String {
    let mut conversation = String::new();
    for held in summarized {
        match &held.entry {
            Entry::User { content } => conversation.push_str(&format!("[User]: {}\n\n", text_of(content))),
            Entry::Assistant(answer) => {
                for block in &answer.content {
                    match block {
                        AssistantBlock::Text { text } => conversation.push_str(&format!("[Assistant]: {text}\n\n")),
                        AssistantBlock::Thinking { thinking, .. } => {
                            conversation.push_str(&format!("[Assistant thinking]: {thinking}\n\n"));
                        }
                        AssistantBlock::ToolCall { name, arguments, .. } => {
                            conversation.push_str(&format!("[Assistant tool calls]: {name}({arguments})\n\n"));
                        }
                    }
                }
            }
            Entry::ToolResult(result) => {
                let text: String = text_of(&result.content).chars().take(TOOL_RESULT_CHARS).collect();
                conversation.push_str(&format!("[Tool result]: {text}\n\n"));
            }
            Entry::CompactionSummary { .. } => {}
        }
    }
    match previous {
        Some(previous) => format!(
            "<conversation>\n{conversation}</conversation>\n\n<previous-summary>\n{previous}\n</previous-summary>\n\nThe messages above are NEW conversation messages to incorporate into the existing summary in <previous-summary>. UPDATE the summary: keep what still holds, add new progress, decisions and context, and move items from In Progress to Done when completed.\n\n{SECTIONS}"
        ),
        None => format!(
            "<conversation>\n{conversation}</conversation>\n\nThe messages above are a conversation to summarize. Create a structured context checkpoint summary that another LLM will use to continue the work.\n\n{SECTIONS}"
        ),
    }
}

/// `<read-files>` and `<modified-files>`, from the summarised tool calls and the previous lists.
fn file_lists(summarized: &[Held], previous: Option<&str>) -> String {
    let mut read = BTreeSet::new();
    let mut modified = BTreeSet::new();
    if let Some(previous) = previous {
        read.extend(listed(previous, "read-files"));
        modified.extend(listed(previous, "modified-files"));
    }
    for held in summarized {
        let Entry::Assistant(answer) = &held.entry else { continue };
        for call in answer.tool_calls() {
            let Some(path) = call.arguments.get("path").and_then(serde_json::Value::as_str) else { continue };
            match call.name {
                "read" => read.insert(path.to_owned()),
                "write" | "edit" => modified.insert(path.to_owned()),
                _ => false,
            };
        }
    }
    let mut lists = String::new();
    for (tag, paths) in [("read-files", read), ("modified-files", modified)] {
        if !paths.is_empty() {
            let joined: Vec<String> = paths.into_iter().collect();
            lists.push_str(&format!("\n\n<{tag}>\n{}\n</{tag}>", joined.join("\n")));
        }
    }
    lists
}

fn listed(summary: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let Some(start) = summary.find(&open) else { return Vec::new() };
    let rest = &summary[start + open.len()..];
    let end = rest.find(&close).unwrap_or(rest.len());
    rest[..end].lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::harness::pi::model::{AssistantTurn, StopReason, ToolResultEntry, Usage};

    fn held(position: i64, entry: Entry) -> Held {
        Held { position, message_id: format!("msg_{}", position / 10), entry, created_at: 0 }
    }

    fn answer(text: &str, calls: &[(&str, &str)], total: u64) -> Entry {
        let mut content = vec![AssistantBlock::Text { text: text.to_owned() }];
        content.extend(calls.iter().map(|(name, path)| AssistantBlock::ToolCall {
            id: format!("call_{name}"),
            name: (*name).to_owned(),
            arguments: json!({"path": path}),
        }));
        Entry::Assistant(AssistantTurn {
            content,
            stop_reason: StopReason::Stop,
            usage: Usage { input_tokens: total, ..Usage::default() },
            model: "m".to_owned(),
        })
    }

    fn result(text: &str) -> Entry {
        Entry::ToolResult(ToolResultEntry {
            tool_call_id: "call_read".to_owned(),
            tool_name: "read".to_owned(),
            content: vec![ContentBlock::Text { text: text.to_owned() }],
            is_error: false,
        })
    }

    #[test]
    fn the_context_is_the_last_usage_plus_an_estimate_of_what_followed() {
        let held = vec![
            held(1, Entry::user_text("x".repeat(400))),
            held(2, answer("ok", &[], 900)),
            held(3, Entry::user_text("y".repeat(40))),
        ];
        assert_eq!(context_tokens(&held, "system"), 900 + 10);
        assert_eq!(context_tokens(&held[..1], &"s".repeat(40)), 10 + 100);
    }

    #[test]
    fn the_cut_keeps_recent_tokens_and_never_falls_on_a_tool_result() {
        let held = vec![
            held(1, Entry::user_text("a".repeat(400))),
            held(2, answer("reading", &[("read", "a.txt")], 0)),
            held(3, result(&"r".repeat(400))),
            held(4, answer("done", &[], 0)),
            held(5, Entry::user_text("b".repeat(400))),
        ];
        // 100 tokens kept: the last user entry alone.
        assert_eq!(cut_point(&held, 100), Some(4));
        // 150 reaches back into the tool result, which cannot start the kept part: the cut moves
        // forward to the answer after it.
        assert_eq!(cut_point(&held, 150), Some(3));
        assert_eq!(cut_point(&held, 10_000), None, "everything fits: nothing to summarise");
    }

    #[test]
    fn file_lists_accumulate_across_compactions() {
        let held = vec![held(1, answer("", &[("read", "src/a.rs"), ("edit", "src/b.rs")], 0))];
        let lists = file_lists(&held, Some("old\n\n<read-files>\nREADME.md\n</read-files>"));
        assert!(lists.contains("<read-files>\nREADME.md\nsrc/a.rs\n</read-files>"), "{lists}");
        assert!(lists.contains("<modified-files>\nsrc/b.rs\n</modified-files>"), "{lists}");
    }
}
