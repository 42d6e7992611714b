//! The seven built-in tools as the model is told of them: pi's descriptions, adjusted to the limits
//! sandboxd enforces, and JSON Schemas whose property names are exactly the argument names
//! sandboxd reads (`sandboxd/src/tools/*.rs`).
//!
//! The schemas leave `additionalProperties` unset, as pi's TypeBox objects do: a model that adds
//! a stray field still gets its call run, and sandboxd ignores the field. Counts are `integer`
//! with `minimum: 0` because sandboxd reads them as whole numbers (a `"10"` is coerced before
//! validation); the bash `timeout` is a positive `number` of seconds.

use dari_protocol::manifest::BuiltInTool;
use serde_json::{Map, Value, json};

use crate::harness::pi::model::ToolSpec;

/// What the model is told of a built-in tool.
pub fn spec(tool: BuiltInTool) -> ToolSpec {
    ToolSpec { name: tool.name().to_owned(), description: description(tool).to_owned(), parameters: parameters(tool) }
}

/// The tool's line in the system prompt's "Available tools:" list (pi's snippets).
pub fn prompt_snippet(tool: BuiltInTool) -> &'static str {
    match tool {
        BuiltInTool::Read => "Read file contents",
        BuiltInTool::Bash => "Execute bash commands (ls, grep, find, etc.)",
        BuiltInTool::Edit => {
            "Make precise file edits with exact text replacement, including multiple disjoint edits in one call"
        }
        BuiltInTool::Write => "Create or overwrite files",
        BuiltInTool::Grep => "Search file contents for patterns (respects .gitignore)",
        BuiltInTool::Find => "Find files by glob pattern (respects .gitignore)",
        BuiltInTool::Ls => "List directory contents",
    }
}

/// Rewrites arguments into the shape the schema describes before they are validated, as pi's
/// `prepareArguments` does for `edit`: `edits` sent as a JSON string is parsed, and a legacy
/// top-level `oldText`/`newText` pair is appended to `edits`. Other tools' arguments pass
/// unchanged. sandboxd accepts both legacy forms too, so this only keeps validation from
/// refusing calls that would run.
pub(super) fn prepare_arguments(tool: BuiltInTool, arguments: &mut Value) {
    if tool != BuiltInTool::Edit {
        return;
    }
    let Value::Object(fields) = arguments else { return };
    if let Some(Value::String(encoded)) = fields.get("edits")
        && let Ok(parsed @ Value::Array(_)) = serde_json::from_str::<Value>(encoded)
    {
        fields.insert("edits".to_owned(), parsed);
    }
    let is_string = |key: &str| fields.get(key).is_some_and(Value::is_string);
    if !(is_string("oldText") && is_string("newText")) {
        return;
    }
    let (Some(old_text), Some(new_text)) = (fields.remove("oldText"), fields.remove("newText")) else { return };
    let legacy = json!({ "oldText": old_text, "newText": new_text });
    match fields.get_mut("edits") {
        Some(Value::Array(edits)) => edits.push(legacy),
        _ => {
            fields.insert("edits".to_owned(), Value::Array(vec![legacy]));
        }
    }
}

fn description(tool: BuiltInTool) -> &'static str {
    match tool {
        BuiltInTool::Read => {
            "Read the contents of a file. Supports text files and images (jpg, png, gif, webp). Images are sent as \
             attachments (up to 4.5MB; larger images are refused, not resized). Binary files are refused. For text \
             files, output is truncated to 2000 lines or 50KB (whichever is hit first). Use offset/limit for large \
             files. When you need the full file, continue with offset until complete."
        }
        BuiltInTool::Bash => {
            // The timeouts are sandboxd's `BashConfig::DEFAULT_TIMEOUT` and `MAX_TIMEOUT`.
            "Execute a bash command in the current working directory. Returns stdout and stderr. Output is truncated \
             to the last 2000 lines or 50KB (whichever is hit first). If truncated, the full output is saved to a \
             file named in the output. Optionally provide a timeout in seconds (default 120, at most 1800)."
        }
        BuiltInTool::Edit => {
            "Edit a single file using exact text replacement. Every edits[].oldText must match a unique, \
             non-overlapping region of the original file. If two changes affect the same block or nearby lines, \
             merge them into one edit instead of emitting overlapping edits. Do not include large unchanged regions \
             just to connect distant changes. Files over 64MB cannot be edited."
        }
        BuiltInTool::Write => {
            "Write content to a file. Creates the file if it doesn't exist, overwrites if it does. Automatically \
             creates parent directories."
        }
        BuiltInTool::Grep => {
            "Search file contents for a pattern. Returns matching lines with file paths and line numbers. Respects \
             .gitignore. Output is truncated to 100 matches or 50KB (whichever is hit first). Long lines are \
             truncated to 500 chars."
        }
        BuiltInTool::Find => {
            "Search for files by glob pattern. Returns matching file paths relative to the search directory. A \
             pattern without '/' matches file names; a pattern with '/' matches paths relative to the search \
             directory. Respects .gitignore. Output is truncated to 1000 results or 50KB (whichever is hit first)."
        }
        BuiltInTool::Ls => {
            "List directory contents. Returns entries sorted alphabetically, with '/' suffix for directories. \
             Includes dotfiles. Output is truncated to 500 entries or 50KB (whichever is hit first)."
        }
    }
}

fn parameters(tool: BuiltInTool) -> Value {
    match tool {
        BuiltInTool::Read => object(
            &["path"],
            [
                ("path", string("Path to the file to read (relative or absolute)")),
                ("offset", count("Line number to start reading from (1-indexed)")),
                ("limit", count("Maximum number of lines to read")),
            ],
        ),
        BuiltInTool::Bash => object(
            &["command"],
            [
                ("command", string("Bash command to execute")),
                (
                    "timeout",
                    json!({
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "description": "Timeout in seconds (optional; default 120, at most 1800)",
                    }),
                ),
            ],
        ),
        BuiltInTool::Edit => object(
            &["path", "edits"],
            [("path", string("Path to the file to edit (relative or absolute)")), ("edits", edits())],
        ),
        BuiltInTool::Write => object(
            &["path", "content"],
            [
                ("path", string("Path to the file to write (relative or absolute)")),
                ("content", string("Content to write to the file")),
            ],
        ),
        BuiltInTool::Grep => object(
            &["pattern"],
            [
                ("pattern", string("Search pattern (regex or literal string)")),
                ("path", string("Directory or file to search (default: current directory)")),
                ("glob", string("Filter files by glob pattern, e.g. '*.ts' or '**/*.spec.ts'")),
                ("ignoreCase", flag("Case-insensitive search (default: false)")),
                ("literal", flag("Treat pattern as literal string instead of regex (default: false)")),
                ("context", count("Number of lines to show before and after each match (default: 0)")),
                ("limit", count("Maximum number of matches to return (default: 100)")),
            ],
        ),
        BuiltInTool::Find => object(
            &["pattern"],
            [
                ("pattern", string("Glob pattern to match files, e.g. '*.ts', '**/*.json', or 'src/**/*.spec.ts'")),
                ("path", string("Directory to search in (default: current directory)")),
                ("limit", count("Maximum number of results (default: 1000)")),
            ],
        ),
        BuiltInTool::Ls => object(
            &[],
            [
                ("path", string("Directory to list (default: current directory)")),
                ("limit", count("Maximum number of entries to return (default: 500)")),
            ],
        ),
    }
}

fn edits() -> Value {
    let edit = object(
        &["oldText", "newText"],
        [
            (
                "oldText",
                string(
                    "Exact text for one targeted replacement. It must be unique in the original file and must not \
                     overlap with any other edits[].oldText in the same call.",
                ),
            ),
            ("newText", string("Replacement text for this targeted edit.")),
        ],
    );
    json!({
        "type": "array",
        "items": edit,
        "description": "One or more targeted replacements. Each edit is matched against the original file, not \
                        incrementally. Do not include overlapping or nested edits. If two changes touch the same \
                        block or nearby lines, merge them into one edit instead.",
    })
}

fn object<const N: usize>(required: &[&str], properties: [(&str, Value); N]) -> Value {
    let properties: Map<String, Value> =
        properties.into_iter().map(|(name, schema)| (name.to_owned(), schema)).collect();
    json!({ "type": "object", "properties": properties, "required": required })
}

fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn count(description: &str) -> Value {
    json!({ "type": "integer", "minimum": 0, "description": description })
}

fn flag(description: &str) -> Value {
    json!({ "type": "boolean", "description": description })
}
