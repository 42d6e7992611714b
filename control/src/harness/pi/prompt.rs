//! The system prompt of a pi agent, after pi's `buildSystemPrompt` (pi-harness §1.9), and its
//! skills (§4.3, in [`skills`]).
//!
//! The agent's own instructions (the file `instructions.system` names) replace pi's base
//! identity prompt, as `.pi/SYSTEM.md` does; what pi appends after the base prompt still
//! follows. The layout, sections separated by a blank line and no trailing newline:
//!
//! ```text
//! {instructions, trailing whitespace trimmed; left out when blank}
//!
//! Available tools:
//! - {name}: {snippet}            one line per active tool, catalog order; "(none)" for none
//!
//! Guidelines:
//! - {guideline}                  those the tool set calls for, then "Be concise…", "Show file paths…"
//!
//! The following skills provide specialized instructions for specific tasks.
//! Use the read tool to load a skill's file when the task matches its description.
//! When a skill file references a relative path, resolve it against the skill directory …
//!
//! <available_skills>             only when `read` is active and a skill is visible to the model
//!   <skill>
//!     <name>…</name>
//!     <description>…</description>
//!     <location>…</location>
//!   </skill>
//! </available_skills>
//!
//! Current date: YYYY-MM-DD
//! Current working directory: {cwd}
//! ```
//!
//! pi's pointers to its own documentation are left out (the agent has no pi install to read),
//! and so are project context files (`AGENTS.md`): the agent's instructions are its context.
//! The prompt depends only on its inputs, the date included, so a session's prompt can be
//! rebuilt byte for byte.

mod skills;

use std::time::SystemTime;

use dari_protocol::manifest::BuiltInTool;

pub use self::skills::{SkillDoc, expand_skill_command, skills_block};
use super::tools::ToolCatalog;

/// What the system prompt is built from.
#[derive(Clone, Copy, Debug)]
pub struct PromptInputs<'a> {
    /// The agent's instructions: the contents of the file `instructions.system` names.
    pub instructions: &'a str,
    pub tools: &'a ToolCatalog,
    /// Every skill of the agent; those with `disable_model_invocation` are left out of the prompt.
    pub skills: &'a [SkillDoc],
    /// The session's date, `YYYY-MM-DD` (see [`utc_date`]).
    pub date: &'a str,
    /// The directory tools run in, e.g. `/workspace`.
    pub cwd: &'a str,
}

/// The system prompt, laid out as the module doc shows.
pub fn system_prompt(inputs: &PromptInputs<'_>) -> String {
    let mut sections = Vec::new();
    let instructions = inputs.instructions.trim_end();
    if !instructions.trim_start().is_empty() {
        sections.push(instructions.to_owned());
    }
    sections.push(tool_list(inputs.tools));
    sections.push(format!("Guidelines:\n{}", bullets(&guidelines(inputs.tools))));
    if inputs.tools.has_built_in(BuiltInTool::Read)
        && let Some(block) = skills_block(inputs.skills)
    {
        sections.push(block);
    }
    sections.push(format!("Current date: {}\nCurrent working directory: {}", inputs.date, inputs.cwd));
    sections.join("\n\n")
}

/// `time`'s date in UTC, `YYYY-MM-DD`.
pub fn utc_date(time: SystemTime) -> String {
    let timestamp = humantime::format_rfc3339_seconds(time).to_string();
    timestamp.get(..10).unwrap_or(&timestamp).to_owned()
}

fn tool_list(tools: &ToolCatalog) -> String {
    let lines: Vec<String> =
        tools.tools().iter().map(|tool| format!("- {}: {}", tool.spec.name, tool.prompt_snippet)).collect();
    if lines.is_empty() {
        "Available tools:\n(none)".to_owned()
    } else {
        format!("Available tools:\n{}", lines.join("\n"))
    }
}

/// pi's guidelines for the active built-in tools, with the newer `edit` guidance for `edits[]`.
fn guidelines(tools: &ToolCatalog) -> Vec<&'static str> {
    let has = |tool| tools.has_built_in(tool);
    let (read, bash, edit, write) =
        (has(BuiltInTool::Read), has(BuiltInTool::Bash), has(BuiltInTool::Edit), has(BuiltInTool::Write));
    let explorers = has(BuiltInTool::Grep) || has(BuiltInTool::Find) || has(BuiltInTool::Ls);
    let mut guidelines = Vec::new();
    if bash && !explorers {
        guidelines.push("Use bash for file operations like ls, rg, find");
    } else if bash && explorers {
        guidelines.push("Prefer grep/find/ls tools over bash for file exploration (faster, respects .gitignore)");
    }
    if read && edit {
        guidelines.push("Use read to examine files before editing. You must use this tool instead of cat or sed.");
    }
    if edit {
        guidelines.push("Use edit for precise changes (edits[].oldText must match exactly)");
        guidelines.push(
            "When changing multiple separate locations in one file, use one edit call with multiple entries in \
             edits[] instead of multiple edit calls",
        );
    }
    if write {
        guidelines.push("Use write only for new files or complete rewrites");
    }
    if edit || write {
        guidelines.push(
            "When summarizing your actions, output plain text directly - do NOT use cat or bash to display what you did",
        );
    }
    guidelines.push("Be concise in your responses");
    guidelines.push("Show file paths clearly when working with files");
    guidelines
}

fn bullets(lines: &[&str]) -> String {
    lines.iter().map(|line| format!("- {line}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests;
