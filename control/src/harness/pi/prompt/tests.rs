//! Tests of the system prompt (layout, tool-set guidelines, skills block) and of skills
//! (locations, frontmatter, `/skill:` expansion, escaping).

use std::time::{Duration, UNIX_EPOCH};

use dari_protocol::manifest::{self, MemoryFiles, Skill};

use super::{PromptInputs, SkillDoc, expand_skill_command, skills_block, system_prompt, utc_date};
use crate::harness::pi::tools::ToolCatalog;

fn tools(tail: &str) -> ToolCatalog {
    let files = MemoryFiles::new()
        .with("prompts/system.md", "")
        .with(
            "tools/lookup/tool.yml",
            "name: lookup\ndescription: \"\\nLook up a customer.\\nBy id or email.\"\ninput_schema: input.json\n",
        )
        .with("tools/lookup/input.json", r#"{"type":"object"}"#);
    let yaml =
        format!("name: a\nharness: pi\ninstructions: {{system: prompts/system.md}}\nllm: {{model: x/y}}\n{tail}");
    let validation = manifest::validate(yaml.as_bytes(), &files);
    let manifest = validation.manifest.unwrap_or_else(|| panic!("invalid test manifest: {:?}", validation.diagnostics));
    ToolCatalog::new(&manifest).expect("tools compile")
}

fn manifest_skill(name: &str, description: &str, hidden: bool) -> Skill {
    Skill {
        name: name.to_owned(),
        path: format!("skills/{name}"),
        description: description.to_owned(),
        disable_model_invocation: hidden,
    }
}

fn skill(name: &str, description: &str, hidden: bool) -> SkillDoc {
    let skill = manifest_skill(name, description, hidden);
    SkillDoc::from_skill(
        &skill,
        &format!("---\nname: {name}\ndescription: x\n---\n\n# {name}\n\nSee scripts/run.sh.\n"),
        "/bundle",
    )
}

fn prompt(instructions: &str, tools: &ToolCatalog, skills: &[SkillDoc]) -> String {
    system_prompt(&PromptInputs { instructions, tools, skills, date: "2026-03-15", cwd: "/workspace" })
}

#[test]
fn the_default_prompt_in_full() {
    let skills = [skill("review", "Review a diff <carefully> & \"well\"", false), skill("deploy", "Ship it.", true)];
    let expected = r#"You are Acme's support agent.

Available tools:
- read: Read file contents
- bash: Execute bash commands (ls, grep, find, etc.)
- edit: Make precise file edits with exact text replacement, including multiple disjoint edits in one call
- write: Create or overwrite files
- lookup: Look up a customer.

Guidelines:
- Use bash for file operations like ls, rg, find
- Use read to examine files before editing. You must use this tool instead of cat or sed.
- Use edit for precise changes (edits[].oldText must match exactly)
- When changing multiple separate locations in one file, use one edit call with multiple entries in edits[] instead of multiple edit calls
- Use write only for new files or complete rewrites
- When summarizing your actions, output plain text directly - do NOT use cat or bash to display what you did
- Be concise in your responses
- Show file paths clearly when working with files

The following skills provide specialized instructions for specific tasks.
Use the read tool to load a skill's file when the task matches its description.
When a skill file references a relative path, resolve it against the skill directory (parent of SKILL.md / dirname of the path) and use that absolute path in tool commands.

<available_skills>
  <skill>
    <name>review</name>
    <description>Review a diff &lt;carefully&gt; &amp; &quot;well&quot;</description>
    <location>/bundle/skills/review/SKILL.md</location>
  </skill>
</available_skills>

Current date: 2026-03-15
Current working directory: /workspace"#;
    let tools = tools("custom_tools:\n  - {name: lookup, path: tools/lookup, kind: external}\n");
    assert_eq!(prompt("You are Acme's support agent.\n\n", &tools, &skills), expected);
}

#[test]
fn guidelines_follow_the_tool_set() {
    let guidelines = |tail: &str| {
        let text = prompt("", &tools(tail), &[]);
        let start = text.find("Guidelines:\n").expect("guidelines") + "Guidelines:\n".len();
        let end = text[start..].find("\n\n").map_or(text.len(), |end| start + end);
        text[start..end].lines().map(|line| line.trim_start_matches("- ").to_owned()).collect::<Vec<_>>()
    };
    let always = ["Be concise in your responses", "Show file paths clearly when working with files"];
    assert_eq!(guidelines("built_in_tools: []\n"), always);
    assert_eq!(guidelines("built_in_tools: [read, grep, find, ls]\n"), always);
    assert_eq!(
        guidelines("built_in_tools: [bash, grep]\n"),
        [&["Prefer grep/find/ls tools over bash for file exploration (faster, respects .gitignore)"][..], &always]
            .concat()
    );
    let editing = guidelines("built_in_tools: [edit]\n");
    assert_eq!(editing[0], "Use edit for precise changes (edits[].oldText must match exactly)");
    assert!(!editing.iter().any(|line| line.starts_with("Use read")), "{editing:?}");
    let writing = guidelines("built_in_tools: [write, bash]\n");
    assert_eq!(
        writing[..2],
        ["Use bash for file operations like ls, rg, find", "Use write only for new files or complete rewrites"]
    );
}

#[test]
fn sections_left_out_when_empty_or_unusable() {
    let skills = [skill("review", "Review a diff.", false)];
    let without_read = prompt("  \n", &tools("built_in_tools: [bash]\n"), &skills);
    assert!(without_read.starts_with("Available tools:\n- bash: "), "{without_read}");
    assert!(!without_read.contains("available_skills"), "{without_read}");
    let none = prompt("Hi.", &tools("built_in_tools: []\n"), &skills);
    assert!(none.starts_with("Hi.\n\nAvailable tools:\n(none)\n\nGuidelines:\n"), "{none}");
    assert!(none.ends_with("\n\nCurrent date: 2026-03-15\nCurrent working directory: /workspace"), "{none}");
    assert_eq!(skills_block(&[skill("deploy", "Ship it.", true)]), None);
    assert_eq!(skills_block(&[]), None);
}

#[test]
fn skill_docs_locate_their_files_under_the_root() {
    let skill = manifest_skill("review", "Review.", false);
    for (root, base_dir) in [
        ("/workspace/.dari/bundle", "/workspace/.dari/bundle/skills/review"),
        ("/workspace/.dari/bundle/", "/workspace/.dari/bundle/skills/review"),
        ("/", "/skills/review"),
        ("", "skills/review"),
    ] {
        let doc = SkillDoc::from_skill(&skill, "Body", root);
        assert_eq!((doc.base_dir.as_str(), doc.location), (base_dir, format!("{base_dir}/SKILL.md")));
    }
}

#[test]
fn frontmatter_is_stripped_from_the_body() {
    let skill = manifest_skill("s", "d", false);
    for (skill_md, body) in [
        ("---\nname: s\ndescription: d\n---\n\n# Steps\n\n1. Go.\n", "# Steps\n\n1. Go."),
        ("---\r\nname: s\r\n---\r\nLine one\r\nLine two\r\n", "Line one\nLine two"),
        ("\u{feff}---\nname: s\n---  \nBody", "Body"),
        ("No frontmatter\n---\nstill body", "No frontmatter\n---\nstill body"),
        ("---\nname: s\nnever closed", "---\nname: s\nnever closed"),
        ("---\nname: s\n---", ""),
    ] {
        assert_eq!(SkillDoc::from_skill(&skill, skill_md, "/b").body, body, "{skill_md:?}");
    }
}

#[test]
fn skill_commands_expand_into_the_playbook() {
    let skills = [skill("review", "Review a diff.", false), skill("deploy", "Ship it.", true)];
    let block = "<skill name=\"review\" location=\"/bundle/skills/review/SKILL.md\">\nReferences are relative to /bundle/skills/review.\n\n# review\n\nSee scripts/run.sh.\n</skill>";
    let expand = |text: &str| expand_skill_command(text, &skills);
    assert_eq!(expand("/skill:review"), Ok(Some(block.to_owned())));
    assert_eq!(expand("/skill:review  the last commit \n"), Ok(Some(format!("{block}\n\nthe last commit"))));
    assert_eq!(expand("/skill:review\nfirst\nsecond"), Ok(Some(format!("{block}\n\nfirst\nsecond"))));
    let hidden = expand("/skill:deploy now").expect("known").expect("expanded");
    assert!(hidden.starts_with("<skill name=\"deploy\" location=\"/bundle/skills/deploy/SKILL.md\">\n"), "{hidden}");
    assert!(hidden.ends_with("</skill>\n\nnow"), "{hidden}");
    assert_eq!(expand("please /skill:review"), Ok(None));
    assert_eq!(expand(" /skill:review"), Ok(None));
    assert_eq!(expand("/skills"), Ok(None));
    assert_eq!(
        expand("/skill:reveiw x"),
        Err("unknown skill `reveiw` in /skill:reveiw: the agent's skills are review, deploy".to_owned())
    );
    assert_eq!(
        expand("/skill: review"),
        Err("name a skill after /skill:: the agent's skills are review, deploy".to_owned())
    );
    assert_eq!(
        expand_skill_command("/skill:x", &[]),
        Err("unknown skill `x` in /skill:x: the agent has no skills".to_owned())
    );
}

#[test]
fn skill_attributes_are_escaped() {
    let mut odd = skill("odd", "Odd.", false);
    odd.location = "/b/it's \"here\" & <there>/SKILL.md".to_owned();
    let expanded = expand_skill_command("/skill:odd", &[odd]).expect("known").expect("expanded");
    assert!(
        expanded.starts_with(
            "<skill name=\"odd\" location=\"/b/it&apos;s &quot;here&quot; &amp; &lt;there&gt;/SKILL.md\">"
        ),
        "{expanded}"
    );
}

#[test]
fn dates_are_utc_days() {
    assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01");
    assert_eq!(utc_date(UNIX_EPOCH + Duration::from_secs(1_773_619_199)), "2026-03-15");
    assert_eq!(utc_date(UNIX_EPOCH + Duration::from_secs(1_773_619_200)), "2026-03-16");
}
