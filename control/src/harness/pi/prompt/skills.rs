//! Skills as pi offers them (pi-harness §4.3): listed in the system prompt for the model to load
//! with `read` when a task matches, and expanded in place when the user writes `/skill:<name>`.
//!
//! An unknown `/skill:` name is an error rather than text passed through to the model (pi's
//! choice): the loop should fail the message with that error, so that the client learns of the
//! typo instead of the model improvising on a command it cannot run.

use dari_protocol::manifest::Skill;

/// The three lines that introduce the skills block (pi's `formatSkillsForPrompt`).
const SKILLS_PREAMBLE: &str = "The following skills provide specialized instructions for specific tasks.\n\
Use the read tool to load a skill's file when the task matches its description.\n\
When a skill file references a relative path, resolve it against the skill directory (parent of SKILL.md / dirname of the path) and use that absolute path in tool commands.";

const COMMAND_PREFIX: &str = "/skill:";

/// A skill with its playbook, as the session sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkillDoc {
    pub name: String,
    pub description: String,
    /// Where SKILL.md is in the sandbox: the path the model passes to `read`.
    pub location: String,
    /// The skill's directory in the sandbox, which the playbook's relative paths resolve against.
    pub base_dir: String,
    /// Only the user may invoke the skill (`/skill:<name>`); the model is not told of it.
    pub disable_model_invocation: bool,
    /// SKILL.md after its frontmatter, with LF line endings, trimmed.
    pub body: String,
}

impl SkillDoc {
    /// `skill_md` is the text of `<skill.path>/SKILL.md`; `location_root` is where the source
    /// bundle is in the sandbox (e.g. `/workspace/.dari/bundle`), so that the skill's directory
    /// is `<location_root>/<skill.path>`.
    pub fn from_skill(skill: &Skill, skill_md: &str, location_root: &str) -> SkillDoc {
        let base_dir = join_path(location_root, &skill.path);
        SkillDoc {
            name: skill.name.clone(),
            description: skill.description.clone(),
            location: join_path(&base_dir, "SKILL.md"),
            base_dir,
            disable_model_invocation: skill.disable_model_invocation,
            body: strip_frontmatter(skill_md),
        }
    }
}

/// The skills block of the system prompt: the three lines of instructions, then
/// `<available_skills>` with each skill the model may invoke, XML-escaped. `None` when there is
/// no such skill.
pub fn skills_block(skills: &[SkillDoc]) -> Option<String> {
    let visible: Vec<String> = skills
        .iter()
        .filter(|skill| !skill.disable_model_invocation)
        .map(|skill| {
            format!(
                "  <skill>\n    <name>{}</name>\n    <description>{}</description>\n    <location>{}</location>\n  </skill>",
                escape_xml(&skill.name),
                escape_xml(&skill.description),
                escape_xml(&skill.location)
            )
        })
        .collect();
    if visible.is_empty() {
        return None;
    }
    Some(format!("{SKILLS_PREAMBLE}\n\n<available_skills>\n{}\n</available_skills>", visible.join("\n")))
}

/// Expands a user message that starts with `/skill:<name>` (then optional arguments after
/// whitespace) into the skill's playbook, as pi does:
///
/// ```text
/// <skill name="{name}" location="{location}">
/// References are relative to {base_dir}.
///
/// {body}
/// </skill>
///
/// {arguments, when given}
/// ```
///
/// `Ok(None)` for any other message. Skills hidden from the model can be invoked this way. An
/// unknown or missing name is an error naming the skills there are.
pub fn expand_skill_command(text: &str, skills: &[SkillDoc]) -> Result<Option<String>, String> {
    let Some(command) = text.strip_prefix(COMMAND_PREFIX) else { return Ok(None) };
    let (name, arguments) = match command.find(char::is_whitespace) {
        Some(end) => (&command[..end], command[end..].trim()),
        None => (command, ""),
    };
    let Some(skill) = skills.iter().find(|skill| skill.name == name) else {
        return Err(unknown_skill(name, skills));
    };
    let block = format!(
        "<skill name=\"{}\" location=\"{}\">\nReferences are relative to {}.\n\n{}\n</skill>",
        escape_xml(&skill.name),
        escape_xml(&skill.location),
        skill.base_dir,
        skill.body
    );
    Ok(Some(if arguments.is_empty() { block } else { format!("{block}\n\n{arguments}") }))
}

fn unknown_skill(name: &str, skills: &[SkillDoc]) -> String {
    let known = if skills.is_empty() {
        "the agent has no skills".to_owned()
    } else {
        let names: Vec<&str> = skills.iter().map(|skill| skill.name.as_str()).collect();
        format!("the agent's skills are {}", names.join(", "))
    };
    if name.is_empty() {
        format!("name a skill after {COMMAND_PREFIX}: {known}")
    } else {
        format!("unknown skill `{name}` in {COMMAND_PREFIX}{name}: {known}")
    }
}

/// The text after a frontmatter block (a first line `---` up to the next line `---`), with a BOM
/// dropped, CRLF turned into LF and surrounding whitespace trimmed. Text whose block never closes
/// is all body, as in pi.
fn strip_frontmatter(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).replace("\r\n", "\n");
    let mut lines = text.split_inclusive('\n');
    let mut body_start = 0;
    if let Some(first) = lines.next()
        && first.trim_end() == "---"
    {
        let mut offset = first.len();
        for line in lines {
            offset += line.len();
            if line.trim_end() == "---" {
                body_start = offset;
                break;
            }
        }
    }
    text[body_start..].trim().to_owned()
}

/// `root/path`, with one `/` between them; `path` alone when `root` is empty.
fn join_path(root: &str, path: &str) -> String {
    let path = path.trim_start_matches("./").trim_matches('/');
    match root.trim_end_matches('/') {
        "" if root.is_empty() => path.to_owned(),
        trimmed => format!("{trimmed}/{path}"),
    }
}

fn escape_xml(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            _ => escaped.push(c),
        }
    }
    escaped
}
