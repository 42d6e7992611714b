//! Skills: `skills/<name>/SKILL.md` with YAML frontmatter naming and describing the skill.

use super::bundle_checks::{read_text, require_file};
use super::parse::parse_yaml_file;
use super::reader::{Fields, Reader, describe};
use super::yaml::{Pos, Value};
use super::{BundleFiles, Skill};

/// The Agent Skills standard caps descriptions at 1024 characters.
const MAX_DESCRIPTION_CHARS: usize = 1024;
const FRONTMATTER_HINT: &str =
    "start SKILL.md with a frontmatter block:\n---\nname: <name>\ndescription: <when to use it>\n---";

/// Checks a declared skill's SKILL.md. Problems inside the file are reported against it.
pub(crate) fn read_skill(
    reader: &mut Reader<'_>,
    files: &dyn BundleFiles,
    entry: &Fields<'_>,
    name: String,
    dir: String,
) -> Option<Skill> {
    let path_field = entry.path_of("path");
    let path_pos = entry.get("path").map_or(entry.pos, |node| node.pos);
    let file = format!("{dir}/SKILL.md");
    let hint = format!("create {file}, or fix the path");
    require_file(reader, files, &path_field, path_pos, &file, &hint)?;
    let text = read_text(reader, files, &path_field, Some(path_pos), &file)?;

    let mut file_reader = Reader { file: &file, diagnostics: reader.diagnostics };
    let Some(frontmatter) = frontmatter(&text) else {
        file_reader.error("", Some(Pos { line: 1, column: 1 }), "has no YAML frontmatter", FRONTMATTER_HINT.to_owned());
        return None;
    };
    let root = parse_yaml_file(frontmatter.as_bytes(), &mut file_reader)?;
    if !matches!(root.value, Value::Map(_)) {
        file_reader.error(
            "",
            Some(root.pos),
            "the frontmatter must be a mapping of fields",
            FRONTMATTER_HINT.to_owned(),
        );
        return None;
    }
    // Other Agent Skills fields (license, metadata, allowed-tools, ...) are allowed and ignored.
    let fields = frontmatter_fields(&mut file_reader, &root)?;

    let declared_name = fields.required(&mut file_reader, "name", "add name: to the frontmatter").and_then(|node| {
        let declared = file_reader.string(node, "name")?;
        if declared != name {
            let message = format!("frontmatter name {} does not match the name `{name}` in dari.yml", describe(node));
            file_reader.error("name", Some(node.pos), message, format!("set name: {name} here, or change dari.yml"));
            return None;
        }
        Some(declared)
    });
    let description = fields
        .required(&mut file_reader, "description", "add description: saying when the agent should use this skill")
        .and_then(|node| {
            let description = file_reader.text(node, "description")?;
            if description.chars().count() > MAX_DESCRIPTION_CHARS {
                let message = format!("is longer than {MAX_DESCRIPTION_CHARS} characters");
                file_reader.error(
                    "description",
                    Some(node.pos),
                    message,
                    "shorten it; put details in the body".to_owned(),
                );
                return None;
            }
            Some(description)
        });
    let disable_model_invocation = match fields.get("disable-model-invocation") {
        Some(node) => file_reader.boolean(node, "disable-model-invocation"),
        None => Some(false),
    };
    if dir != format!("skills/{name}") {
        let message = format!("skill `{name}` lives in {dir}, not skills/{name}");
        reader.warning(
            &path_field,
            Some(path_pos),
            message,
            "keep each skill in a directory named after it".to_owned(),
        );
    }
    Some(Skill {
        name: declared_name?,
        path: dir,
        description: description?,
        disable_model_invocation: disable_model_invocation?,
    })
}

/// Opens the frontmatter mapping without refusing unknown fields.
fn frontmatter_fields<'n>(reader: &mut Reader<'_>, root: &'n super::yaml::Node) -> Option<Fields<'n>> {
    let Value::Map(entries) = &root.value else { return None };
    let allowed: Vec<&str> = entries.iter().map(|(key, _)| key.text.as_str()).collect();
    reader.map(root, "", &allowed)
}

/// The frontmatter between a first line `---` and the next `---`, with the opening line kept as
/// an empty line so that positions match the file's lines.
fn frontmatter(text: &str) -> Option<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    if lines.next()?.trim_end() != "---" {
        return None;
    }
    let mut block = String::from("\n");
    for line in lines {
        if line.trim_end() == "---" {
            return Some(block);
        }
        block.push_str(line);
    }
    None
}
