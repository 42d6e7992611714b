//! Reads `dari.yml` into a [`Manifest`], section by section, then checks the rules that span
//! sections and the files the manifest names.

pub(crate) mod llm;
mod sandbox;

use super::bundle_checks::{dir_exists, require_file};
use super::diagnostics::{Diagnostics, MANIFEST_FILE};
use super::names::{BuiltInTool, bundle_path, is_slug};
use super::reader::{Fields, Reader, child, closest, describe, item};
use super::yaml::{Node, Pos, Value, parse_document};
use super::{
    BundleFiles, CustomRuntimeServer, Extension, Harness, Instructions, Manifest, RUNTIME_PROTOCOL, Skill, Validation,
};

const TOP_LEVEL_FIELDS: &[&str] =
    &["name", "harness", "instructions", "sandbox", "llm", "built_in_tools", "custom_tools", "skills", "extensions"];
const HARNESS_FIELDS: &[&str] = &["kind", "protocol", "customRuntimeServer"];
const RUNTIME_SERVER_FIELDS: &[&str] = &["command", "port", "health_path", "advance_path"];
const NAMED_PATH_FIELDS: &[&str] = &["name", "path"];
const MAX_AGENT_NAME_CHARS: usize = 128;

pub(super) fn validate(bytes: &[u8], files: &dyn BundleFiles) -> Validation {
    let mut diagnostics = Diagnostics::default();
    let manifest = read_document(bytes, files, &mut diagnostics);
    let manifest = if diagnostics.has_errors() { None } else { manifest };
    Validation { manifest, diagnostics: diagnostics.into_vec() }
}

/// Parses a whole YAML file into a node, reporting syntax errors against `file`.
pub(super) fn parse_yaml_file(bytes: &[u8], reader: &mut Reader<'_>) -> Option<Node> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let line = bytes[..error.valid_up_to()].iter().filter(|byte| **byte == b'\n').count() + 1;
            let pos = Pos { line: u32::try_from(line).unwrap_or(u32::MAX), column: 1 };
            reader.error("", Some(pos), "is not valid UTF-8 text", "save the file as UTF-8".to_owned());
            return None;
        }
    };
    match parse_document(text) {
        Ok(Some(node)) => Some(node),
        Ok(None) => {
            reader.error("", None, "is empty", "start from the minimal example in docs/manifest.md".to_owned());
            None
        }
        Err(error) => {
            let hint = "fix the YAML syntax at this position".to_owned();
            reader.error("", Some(error.pos), format!("invalid YAML: {}", error.message), hint);
            None
        }
    }
}

fn read_document(bytes: &[u8], files: &dyn BundleFiles, diagnostics: &mut Diagnostics) -> Option<Manifest> {
    let mut reader = Reader { file: MANIFEST_FILE, diagnostics };
    let root = parse_yaml_file(bytes, &mut reader)?;
    let top = reader.map(&root, "", TOP_LEVEL_FIELDS)?;

    let name = top
        .required(&mut reader, "name", "name the agent, e.g. name: my-agent")
        .and_then(|node| read_agent_name(&mut reader, node));
    let harness = top
        .required(&mut reader, "harness", "use harness: pi, or the object form for a custom runtime server")
        .and_then(|node| read_harness(&mut reader, node));
    let instructions = top
        .required(&mut reader, "instructions", "point at the system prompt: instructions: {system: prompts/system.md}")
        .and_then(|node| read_instructions(&mut reader, node, files));
    let llm = top.get("llm").map(|node| llm::read_llm(&mut reader, node));
    let sandbox = sandbox::read_sandbox(&mut reader, top.get("sandbox"), files);
    let built_in_tools = read_built_in_tools(&mut reader, &top);
    let custom_tools = super::tools::read_custom_tools(&mut reader, top.get("custom_tools"), files);
    let skills = top.get("skills").map_or(Some(Vec::new()), |node| read_skills(&mut reader, node, files));
    let extensions = top.get("extensions").map_or(Some(Vec::new()), |node| read_extensions(&mut reader, node, files));

    if matches!(harness, Some(Harness::Pi)) && !top.has("llm") {
        let hint = "add llm: {model: openai/gpt-4.1-mini}, or use a custom runtime server that calls its own model";
        reader.missing(&top, "llm", hint);
    }
    let llm = match llm {
        Some(Some(llm)) => Some(llm),
        Some(None) => return None,
        None => None,
    };
    Some(Manifest {
        name: name?,
        harness: harness?,
        instructions: instructions?,
        llm,
        sandbox: sandbox?,
        built_in_tools: built_in_tools?,
        custom_tools: custom_tools?,
        skills: skills?,
        extensions: extensions?,
    })
}

fn read_agent_name(reader: &mut Reader<'_>, node: &Node) -> Option<String> {
    let name = reader.text(node, "name")?;
    if name.chars().count() > MAX_AGENT_NAME_CHARS || name.contains('\n') {
        let message = format!("must be one line of at most {MAX_AGENT_NAME_CHARS} characters");
        reader.error("name", Some(node.pos), message, "use a short name such as my-agent");
        return None;
    }
    if name.starts_with("agt_") {
        let hint = "agent ids start with agt_, so such a name would be ambiguous; choose another".to_owned();
        reader.error("name", Some(node.pos), "must not start with `agt_`", hint);
        return None;
    }
    Some(name)
}

fn read_harness(reader: &mut Reader<'_>, node: &Node) -> Option<Harness> {
    if let Value::Scalar(_) = &node.value {
        let kind = reader.string(node, "harness")?;
        return match kind.as_str() {
            "pi" => Some(Harness::Pi),
            "customRuntimeServer" => {
                let hint = "write harness as an object with kind, protocol: dari-runtime-v1 and customRuntimeServer";
                let message = "a custom runtime server needs the object form of harness";
                reader.error("harness", Some(node.pos), message, hint.to_owned());
                None
            }
            _ => {
                let message = format!("unknown harness {}", describe(node));
                reader.error("harness", Some(node.pos), message, "use pi or customRuntimeServer".to_owned());
                None
            }
        };
    }
    let fields = reader.map(node, "harness", HARNESS_FIELDS)?;
    let protocol_ok = match fields.required(reader, "protocol", "add protocol: dari-runtime-v1") {
        Some(protocol) => {
            let value = reader.string(protocol, "harness.protocol");
            let ok = value.as_deref() == Some(RUNTIME_PROTOCOL);
            if value.is_some() && !ok {
                let message = format!("unknown protocol {}", describe(protocol));
                reader.error("harness.protocol", Some(protocol.pos), message, format!("use {RUNTIME_PROTOCOL}"));
            }
            ok
        }
        None => false,
    };
    let kind_node = fields.required(reader, "kind", "add kind: pi or kind: customRuntimeServer")?;
    let kind = reader.string(kind_node, "harness.kind")?;
    let server = fields.get("customRuntimeServer");
    let harness = match kind.as_str() {
        "pi" => {
            if let Some(server) = server {
                let message = "customRuntimeServer is only for kind: customRuntimeServer";
                let hint = "remove it, or set kind: customRuntimeServer".to_owned();
                reader.error("harness.customRuntimeServer", Some(server.pos), message, hint);
                return None;
            }
            Harness::Pi
        }
        "customRuntimeServer" => {
            let Some(server) = server else {
                let hint = "add customRuntimeServer: {command: ..., port: 8787}";
                reader.missing(&fields, "customRuntimeServer", hint);
                return None;
            };
            Harness::CustomRuntimeServer(read_runtime_server(reader, server)?)
        }
        _ => {
            let hint = match closest(&kind, &["pi", "customRuntimeServer"]) {
                Some(suggestion) => format!("did you mean {suggestion}?"),
                None => "use pi or customRuntimeServer".to_owned(),
            };
            reader.error(
                "harness.kind",
                Some(kind_node.pos),
                format!("unknown harness kind {}", describe(kind_node)),
                hint,
            );
            return None;
        }
    };
    protocol_ok.then_some(harness)
}

fn read_runtime_server(reader: &mut Reader<'_>, node: &Node) -> Option<CustomRuntimeServer> {
    let path = "harness.customRuntimeServer";
    let fields = reader.map(node, path, RUNTIME_SERVER_FIELDS)?;
    let command = fields
        .required(reader, "command", "the command that starts your HTTP server, e.g. python3 server.py")
        .and_then(|node| reader.text(node, &fields.path_of("command")));
    let port = fields
        .required(reader, "port", "the port your server listens on, e.g. port: 8787")
        .and_then(|node| read_port(reader, node, &fields.path_of("port")));
    let health_path = read_url_path(reader, &fields, "health_path", "/health");
    let advance_path = read_url_path(reader, &fields, "advance_path", "/runtime/advance");
    Some(CustomRuntimeServer { command: command?, port: port?, health_path: health_path?, advance_path: advance_path? })
}

fn read_port(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<u16> {
    let port = reader.positive_int(node, path)?;
    match u16::try_from(port) {
        Ok(port) => Some(port),
        Err(_) => {
            let message = format!("port {port} is out of range");
            reader.error(path, Some(node.pos), message, "use a port from 1 to 65535".to_owned());
            None
        }
    }
}

/// An HTTP path on the runtime server: starts with `/`, no spaces, no scheme or host.
fn read_url_path(reader: &mut Reader<'_>, fields: &Fields<'_>, key: &str, default: &str) -> Option<String> {
    let Some(node) = fields.get(key) else { return Some(default.to_owned()) };
    let path = fields.path_of(key);
    let value = reader.text(node, &path)?;
    let valid = value.starts_with('/')
        && !value.starts_with("//")
        && value.len() <= 1024
        && value.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'#');
    if !valid {
        let message = format!("{} is not a URL path", describe(node));
        reader.error(&path, Some(node.pos), message, format!("write a path that starts with /, e.g. {default}"));
        return None;
    }
    Some(value)
}

fn read_instructions(reader: &mut Reader<'_>, node: &Node, files: &dyn BundleFiles) -> Option<Instructions> {
    let fields = reader.map(node, "instructions", &["system"])?;
    let system_node = fields.required(reader, "system", "add system: prompts/system.md")?;
    let system = read_bundle_path(reader, system_node, "instructions.system")?;
    let hint = format!("create {system} with the agent's system prompt, or fix the path");
    require_file(reader, files, "instructions.system", system_node.pos, &system, &hint)?;
    if !system.ends_with(".md") {
        let hint = "the system prompt is Markdown; name the file with .md".to_owned();
        reader.warning("instructions.system", Some(system_node.pos), format!("{system} is not a .md file"), hint);
    }
    Some(Instructions { system })
}

/// Reads a repo-relative path and normalises it.
pub(super) fn read_bundle_path(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<String> {
    let written = reader.text(node, path)?;
    match bundle_path(&written) {
        Ok(normalised) => Some(normalised),
        Err(problem) => {
            let message = format!("path {} {problem}", describe(node));
            reader.error(
                path,
                Some(node.pos),
                message,
                "write a path relative to the directory of dari.yml".to_owned(),
            );
            None
        }
    }
}

fn read_built_in_tools(reader: &mut Reader<'_>, top: &Fields<'_>) -> Option<Vec<BuiltInTool>> {
    let Some(node) = top.get("built_in_tools") else { return Some(BuiltInTool::DEFAULT.to_vec()) };
    let hint = "list tool names, e.g. [read, bash]; write [] for none";
    let items = reader.list(node, "built_in_tools", hint)?;
    let mut tools = Vec::new();
    let mut valid = true;
    for (index, tool_node) in items.iter().enumerate() {
        let path = item("built_in_tools", index);
        let Some(name) = reader.string(tool_node, &path) else {
            valid = false;
            continue;
        };
        match BuiltInTool::from_name(&name) {
            // Duplicates are ignored, as Dari does.
            Some(tool) if tools.contains(&tool) => {}
            Some(tool) => tools.push(tool),
            None => {
                let names = BuiltInTool::names();
                let hint = match closest(&name, &names) {
                    Some(suggestion) => format!("did you mean {suggestion}?"),
                    None => format!("built-in tools are {}", names.join(", ")),
                };
                reader.error(
                    &path,
                    Some(tool_node.pos),
                    format!("unknown built-in tool {}", describe(tool_node)),
                    hint,
                );
                valid = false;
            }
        }
    }
    valid.then_some(tools)
}

fn read_skills(reader: &mut Reader<'_>, node: &Node, files: &dyn BundleFiles) -> Option<Vec<Skill>> {
    read_named_entries(reader, node, "skills", "skill", |reader, fields, name, dir| {
        super::skills::read_skill(reader, files, fields, name, dir)
    })
}

fn read_extensions(reader: &mut Reader<'_>, node: &Node, files: &dyn BundleFiles) -> Option<Vec<Extension>> {
    read_named_entries(reader, node, "extensions", "extension", |reader, fields, name, dir| {
        check_extension(reader, files, fields, name, dir)
    })
}

/// Something declared by `{name, path}`: a skill or an extension.
trait Named {
    fn name(&self) -> &str;
}

impl Named for Skill {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for Extension {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Reads the list under `root` (`skills` or `extensions`): each entry is `{name, path}` with its
/// path under `root/`, is checked by `check`, and has a name of its own.
fn read_named_entries<T: Named>(
    reader: &mut Reader<'_>,
    node: &Node,
    root: &str,
    what: &str,
    check: impl Fn(&mut Reader<'_>, &Fields<'_>, String, String) -> Option<T>,
) -> Option<Vec<T>> {
    let hint = format!("list each {what} as - {{name: <name>, path: {root}/<name>}}");
    let items = reader.list(node, root, &hint)?;
    let mut entries: Vec<T> = Vec::new();
    let mut valid = true;
    for (index, entry_node) in items.iter().enumerate() {
        let path = item(root, index);
        let entry = read_named_path(reader, entry_node, &path, root)
            .and_then(|(fields, name, dir)| check(reader, &fields, name, dir));
        match entry {
            Some(entry) if entries.iter().any(|other| other.name() == entry.name()) => {
                let message = format!("{what} `{}` is declared twice", entry.name());
                reader.error(&child(&path, "name"), Some(entry_node.pos), message, "remove one of them".to_owned());
                valid = false;
            }
            Some(entry) => entries.push(entry),
            None => valid = false,
        }
    }
    valid.then_some(entries)
}

/// Reads a `{name, path}` entry of `skills` or `extensions`, whose path lies under `root/`.
fn read_named_path<'n>(
    reader: &mut Reader<'_>,
    node: &'n Node,
    path: &str,
    root: &str,
) -> Option<(Fields<'n>, String, String)> {
    let fields = reader.map(node, path, NAMED_PATH_FIELDS)?;
    let name_node = fields.required(reader, "name", "add name: <lower-case-name>");
    let dir_node = fields.required(reader, "path", &format!("add path: {root}/<name>"));
    let name = name_node.and_then(|node| reader.text(node, &fields.path_of("name")));
    let name = match (name, name_node) {
        (Some(name), Some(node)) if !is_slug(&name) => {
            let hint = "use lower-case letters, digits and single hyphens, at most 64 characters".to_owned();
            reader.error(&fields.path_of("name"), Some(node.pos), format!("invalid name {}", describe(node)), hint);
            None
        }
        (name, _) => name,
    };
    let dir_node = dir_node?;
    let dir = read_bundle_path(reader, dir_node, &fields.path_of("path"))?;
    if !dir.starts_with(&format!("{root}/")) {
        let hint = format!("keep it under {root}/, e.g. {root}/{}", name.as_deref().unwrap_or("<name>"));
        reader.error(&fields.path_of("path"), Some(dir_node.pos), format!("{dir} is not under {root}/"), hint);
        return None;
    }
    Some((fields, name?, dir))
}

fn check_extension(
    reader: &mut Reader<'_>,
    files: &dyn BundleFiles,
    fields: &Fields<'_>,
    name: String,
    dir: String,
) -> Option<Extension> {
    let path_field = fields.path_of("path");
    let pos = fields.get("path").map(|node| node.pos);
    let expected = format!("extensions/{name}");
    if dir != expected {
        reader.error(&path_field, pos, format!("must be exactly {expected}"), format!("set path: {expected}"));
        return None;
    }
    if !dir_exists(files, &dir) {
        let hint = format!("create {dir}/index.ts, or fix the path");
        reader.error(&path_field, pos, format!("directory {dir} is not in the bundle"), hint);
        return None;
    }
    let has_entry = files.contains(&format!("{dir}/index.ts")) || files.contains(&format!("{dir}/index.js"));
    if !has_entry && !super::bundle_checks::package_json_declares_extensions(reader, files, &dir) {
        let hint = "add index.ts or index.js, or list entry points under pi.extensions in package.json".to_owned();
        reader.error(&path_field, pos, format!("{dir} has no entry point"), hint);
        return None;
    }
    Some(Extension { name, path: dir })
}
