//! `custom_tools`: declared entries, their `tools/<name>/tool.yml` and schema files, and
//! code-first tools discovered under `tools/<name>/tool.ts`.

mod code_first;
mod tool_yml;

use super::BundleFiles;
use super::bundle_checks::{dir_exists, require_file};
use super::names::{BuiltInTool, bundle_path, is_identifier, is_tool_name};
use super::parse::read_bundle_path;
use super::reader::{Fields, OptionalField, Reader, child, describe, item};
use super::yaml::{Node, Pos};
use super::{CustomTool, Handler, ToolKind, ToolRuntime, ToolSource};

pub use self::code_first::{CodeFirstModule, code_first_tools};

const ENTRY_FIELDS: &[&str] =
    &["name", "path", "kind", "runtime", "handler", "description", "retries", "retry_policy", "timeout_seconds"];
/// Fields that only make sense for tools the platform runs.
const MAIN_ONLY_FIELDS: &[&str] = &["runtime", "handler", "retries", "retry_policy"];

pub(crate) fn read_custom_tools(
    reader: &mut Reader<'_>,
    node: Option<&Node>,
    files: &dyn BundleFiles,
) -> Option<Vec<CustomTool>> {
    let mut tools: Vec<CustomTool> = Vec::new();
    let mut valid = true;
    if let Some(node) = node {
        let items =
            reader.list(node, "custom_tools", "list tools as - {name: search, path: tools/search, kind: main}")?;
        for (index, entry) in items.iter().enumerate() {
            let path = item("custom_tools", index);
            match read_entry(reader, entry, &path, files) {
                Some(tool) if tools.iter().any(|other| other.name == tool.name) => {
                    let message = format!("tool `{}` is declared twice", tool.name);
                    reader.error(
                        &child(&path, "name"),
                        Some(entry.pos),
                        message,
                        "give each tool its own name".to_owned(),
                    );
                    valid = false;
                }
                Some(tool) => tools.push(tool),
                None => valid = false,
            }
        }
    }
    for discovered in code_first_tools(files) {
        if tools.iter().any(|tool| tool.path == discovered.dir) {
            continue;
        }
        match code_first::discover(reader, files, &discovered) {
            Some(tool) if tools.iter().any(|other| other.name == tool.name) => {
                let message = format!("code-first tool `{}` has the name of a tool declared in dari.yml", tool.name);
                let mut file_reader = Reader { file: &discovered.module, diagnostics: reader.diagnostics };
                file_reader.error("", None, message, "rename its directory or the declared tool".to_owned());
                valid = false;
            }
            Some(tool) => tools.push(tool),
            None => valid = false,
        }
    }
    valid.then_some(tools)
}

fn read_entry(reader: &mut Reader<'_>, node: &Node, path: &str, files: &dyn BundleFiles) -> Option<CustomTool> {
    let fields = reader.map(node, path, ENTRY_FIELDS)?;
    let name = fields
        .required(reader, "name", "name the tool as the model will see it")
        .and_then(|name_node| read_tool_name(reader, name_node, &fields.path_of("name")));
    let dir = fields
        .required(reader, "path", "add path: tools/<name>")
        .and_then(|dir_node| read_tool_dir(reader, dir_node, &fields.path_of("path"), files));
    let kind =
        fields.required(reader, "kind", "add kind: main (run in the sandbox) or kind: external (run by your app)");
    let kind = kind.and_then(|kind_node| read_kind(reader, kind_node, &fields.path_of("kind")));
    let runtime = fields.get("runtime").map(|node| read_runtime(reader, node, &fields.path_of("runtime")));
    let description = fields.get("description").map(|node| reader.text(node, &fields.path_of("description")));
    let retries = fields.get("retries").map(|node| reader.positive_int(node, &fields.path_of("retries")));
    let retry_policy = fields
        .get("retry_policy")
        .map(|node| super::parse::llm::read_retry_policy(reader, node, &fields.path_of("retry_policy")));
    let timeout_seconds =
        fields.get("timeout_seconds").map(|node| reader.positive_int(node, &fields.path_of("timeout_seconds")));

    let mut valid = true;
    if kind == Some(ToolKind::External) {
        for key in MAIN_ONLY_FIELDS.iter().filter(|key| fields.has(key)) {
            let message = format!("{key} is not allowed for kind: external");
            let hint = "your application runs external tools; remove the field, or use kind: main".to_owned();
            reader.error(&fields.path_of(key), fields.key_pos(key), message, hint);
            valid = false;
        }
    }
    if fields.has("retries") && fields.has("retry_policy") {
        let hint = "keep retries for a simple count, or retry_policy for backoff, not both".to_owned();
        reader.error(
            &fields.path_of("retries"),
            fields.key_pos("retries"),
            "cannot be combined with retry_policy",
            hint,
        );
        valid = false;
    }

    let (name, dir, kind) = (name?, dir?, kind?);
    let source = if files.contains(&format!("{dir}/tool.yml")) {
        let written_handler = fields.get("handler");
        let declared = tool_yml::read(reader, files, &dir)?;
        if declared.name != name {
            let message = format!("tool.yml names the tool `{}` but dari.yml names it `{name}`", declared.name);
            let pos = fields.get("name").map(|node| node.pos);
            reader.warning(
                &fields.path_of("name"),
                pos,
                message,
                "the name in dari.yml is the one the model sees".to_owned(),
            );
        }
        let runtime = match runtime {
            Some(runtime) => Some(runtime?),
            None => declared.runtime,
        };
        let handler = match written_handler {
            Some(node) => Some(read_handler(reader, node, &fields.path_of("handler"), &dir, true)?),
            None => declared.handler,
        };
        Declared {
            source: ToolSource::Directory,
            description: declared.description,
            runtime,
            handler,
            input: Some(declared.input_schema),
            output: declared.output_schema,
        }
    } else if let Some(module) = code_first::module_in(files, &dir) {
        if kind == ToolKind::External {
            let hint = format!("declare external tools with {dir}/tool.yml and schema files");
            reader.error(
                &fields.path_of("kind"),
                fields.key_pos("kind"),
                "a code-first tool.ts cannot be external",
                hint,
            );
            return None;
        }
        let exports = code_first::read_exports(reader, files, &module)?;
        let handler = match fields.get("handler") {
            Some(node) => read_handler(reader, node, &fields.path_of("handler"), &dir, true)?,
            None => Handler { file: module.clone(), function: "handler".to_owned() },
        };
        Declared {
            source: ToolSource::CodeFirst,
            description: exports.description,
            runtime: Some(runtime.valid()?.unwrap_or(ToolRuntime::Typescript)),
            handler: Some(handler),
            input: None,
            output: None,
        }
    } else {
        let hint = format!("add {dir}/tool.yml (name, description, input_schema), or define {dir}/tool.ts");
        reader.error(
            &fields.path_of("path"),
            fields.get("path").map(|node| node.pos),
            format!("{dir} has no tool.yml or tool.ts"),
            hint,
        );
        return None;
    };

    if kind == ToolKind::Main {
        valid &= check_main_tool(reader, files, &fields, &source);
    }
    let description = match description {
        Some(description) => Some(description?),
        None => source.description,
    };
    let tool = CustomTool {
        name,
        path: dir,
        kind,
        source: source.source,
        description,
        runtime: if kind == ToolKind::Main { source.runtime } else { None },
        handler: if kind == ToolKind::Main { source.handler } else { None },
        input_schema: source.input,
        output_schema: source.output,
        retries: retries.valid()?,
        retry_policy: retry_policy.valid()?,
        timeout_seconds: timeout_seconds.valid()?,
    };
    valid.then_some(tool)
}

/// What a tool's own files say about it, before dari.yml's fields are laid over.
struct Declared {
    source: ToolSource,
    description: Option<String>,
    runtime: Option<ToolRuntime>,
    handler: Option<Handler>,
    input: Option<serde_json::Value>,
    output: Option<serde_json::Value>,
}

/// A platform-run tool needs a runtime and a handler file that fits it.
fn check_main_tool(reader: &mut Reader<'_>, files: &dyn BundleFiles, fields: &Fields<'_>, declared: &Declared) -> bool {
    let (Some(runtime), Some(handler)) = (declared.runtime, &declared.handler) else {
        let missing = if declared.runtime.is_none() { "runtime" } else { "handler" };
        let message = format!("kind: main needs a {missing}");
        let hint = format!("set {missing} in this entry or in the tool's tool.yml");
        reader.error(&fields.path_of(missing), Some(fields.pos), message, hint);
        return false;
    };
    let handler_path = fields.path_of("handler");
    let pos = fields.get("handler").map_or(fields.pos, |node| node.pos);
    if require_file(
        reader,
        files,
        &handler_path,
        pos,
        &handler.file,
        "add the handler file, or fix the handler reference",
    )
    .is_none()
    {
        return false;
    }
    let fits = match runtime {
        ToolRuntime::Python => handler.file.ends_with(".py"),
        ToolRuntime::Typescript => {
            [".ts", ".mts", ".cts", ".js", ".mjs", ".cjs"].iter().any(|ext| handler.file.ends_with(ext))
        }
    };
    if !fits {
        let message = format!("{} does not fit runtime {}", handler.file, runtime_name(runtime));
        reader.error(
            &handler_path,
            Some(pos),
            message,
            "python handlers are .py files; typescript handlers .ts or .js".to_owned(),
        );
        return false;
    }
    true
}

fn read_tool_name(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<String> {
    let name = reader.string(node, path)?;
    if !is_tool_name(&name) {
        let hint = "use letters, digits, _ and -, at most 64 characters".to_owned();
        reader.error(path, Some(node.pos), format!("invalid tool name {}", describe(node)), hint);
        return None;
    }
    if BuiltInTool::from_name(&name).is_some() {
        let message = format!("`{name}` is reserved for the built-in tool");
        reader.error(
            path,
            Some(node.pos),
            message,
            "choose another name; built-in names are reserved even when disabled".to_owned(),
        );
        return None;
    }
    Some(name)
}

fn read_tool_dir(reader: &mut Reader<'_>, node: &Node, path: &str, files: &dyn BundleFiles) -> Option<String> {
    let dir = read_bundle_path(reader, node, path)?;
    if !dir.starts_with("tools/") {
        reader.error(
            path,
            Some(node.pos),
            format!("{dir} is not under tools/"),
            "keep each tool in tools/<name>".to_owned(),
        );
        return None;
    }
    if !dir_exists(files, &dir) {
        reader.error(
            path,
            Some(node.pos),
            format!("directory {dir} is not in the bundle"),
            format!("create {dir}/tool.yml, or fix the path"),
        );
        return None;
    }
    Some(dir)
}

fn read_kind(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<ToolKind> {
    match reader.string(node, path)?.as_str() {
        "main" => Some(ToolKind::Main),
        "external" => Some(ToolKind::External),
        _ => {
            let hint = "use main (run in the sandbox) or external (run by your app)".to_owned();
            reader.error(path, Some(node.pos), format!("unknown tool kind {}", describe(node)), hint);
            None
        }
    }
}

pub(crate) fn read_runtime(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<ToolRuntime> {
    match reader.string(node, path)?.as_str() {
        "typescript" => Some(ToolRuntime::Typescript),
        "python" => Some(ToolRuntime::Python),
        _ => {
            reader.error(
                path,
                Some(node.pos),
                format!("unknown runtime {}", describe(node)),
                "use typescript or python".to_owned(),
            );
            None
        }
    }
}

/// Reads `file:function`. In dari.yml a file that starts with `tools/` is relative to the project
/// root; any other file is relative to the tool's directory, as it always is in tool.yml.
pub(crate) fn read_handler(
    reader: &mut Reader<'_>,
    node: &Node,
    path: &str,
    tool_dir: &str,
    may_be_rooted: bool,
) -> Option<Handler> {
    let written = reader.text(node, path)?;
    let hint = "write file:function, e.g. handler.py:main".to_owned();
    let Some((file, function)) = written.rsplit_once(':') else {
        reader.error(path, Some(node.pos), format!("handler {} has no :function", describe(node)), hint);
        return None;
    };
    if !is_identifier(function) {
        reader.error(path, Some(node.pos), format!("`{function}` is not a function name"), hint);
        return None;
    }
    let joined =
        if may_be_rooted && file.starts_with("tools/") { file.to_owned() } else { format!("{tool_dir}/{file}") };
    match bundle_path(&joined) {
        Ok(resolved)
            if resolved.starts_with(&format!("{tool_dir}/")) || (may_be_rooted && resolved.starts_with("tools/")) =>
        {
            Some(Handler { file: resolved, function: function.to_owned() })
        }
        Ok(resolved) => {
            reader.error(path, Some(node.pos), format!("handler file {resolved} is outside {tool_dir}"), hint);
            None
        }
        Err(problem) => {
            reader.error(path, Some(node.pos), format!("handler file {file:?} {problem}"), hint);
            None
        }
    }
}

fn runtime_name(runtime: ToolRuntime) -> &'static str {
    match runtime {
        ToolRuntime::Typescript => "typescript",
        ToolRuntime::Python => "python",
    }
}

/// A position for diagnostics about a whole file.
pub(crate) const FILE_START: Pos = Pos { line: 1, column: 1 };
