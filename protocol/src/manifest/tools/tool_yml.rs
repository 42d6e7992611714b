//! `tools/<name>/tool.yml`: a directory tool's description, schemas, runtime and handler.

use super::super::bundle_checks::read_text;
use super::super::parse::parse_yaml_file;
use super::super::reader::{OptionalField, Reader};
use super::super::yaml::Node;
use super::super::{BundleFiles, Handler, ToolRuntime};
use super::{FILE_START, read_handler, read_runtime};
use crate::manifest::names::bundle_path;

const TOOL_YML_FIELDS: &[&str] = &["name", "description", "input_schema", "output_schema", "runtime", "handler"];

/// What a tool.yml declares, with its schemas read and checked.
pub(super) struct ToolYml {
    pub name: String,
    pub description: Option<String>,
    pub input_schema: serde_json::Value,
    pub output_schema: Option<serde_json::Value>,
    pub runtime: Option<ToolRuntime>,
    pub handler: Option<Handler>,
}

/// Reads `<dir>/tool.yml`; its problems are reported against that file.
pub(super) fn read(reader: &mut Reader<'_>, files: &dyn BundleFiles, dir: &str) -> Option<ToolYml> {
    let file = format!("{dir}/tool.yml");
    let text = read_text(reader, files, "", Some(FILE_START), &file)?;
    let mut reader = Reader { file: &file, diagnostics: reader.diagnostics };
    let root = parse_yaml_file(text.as_bytes(), &mut reader)?;
    let fields = reader.map(&root, "", TOOL_YML_FIELDS)?;
    let name = fields.required(&mut reader, "name", "add name: <tool name>").and_then(|node| reader.text(node, "name"));
    let description = fields
        .required(&mut reader, "description", "describe what the tool does; the model reads it")
        .and_then(|node| reader.text(node, "description"));
    let input_schema = fields
        .required(
            &mut reader,
            "input_schema",
            "add input_schema: input.schema.json, a JSON Schema file in this directory",
        )
        .and_then(|node| read_schema(&mut reader, files, dir, node, "input_schema"));
    let output_schema =
        fields.get("output_schema").map(|node| read_schema(&mut reader, files, dir, node, "output_schema"));
    let runtime = fields.get("runtime").map(|node| read_runtime(&mut reader, node, "runtime"));
    let handler = fields.get("handler").map(|node| read_handler(&mut reader, node, "handler", dir, false));
    if let Some(schema) = &input_schema
        && schema.get("type").and_then(serde_json::Value::as_str) != Some("object")
    {
        let pos = fields.get("input_schema").map(|node| node.pos);
        let hint =
            "model tools take an object of named arguments: start the schema with \"type\": \"object\"".to_owned();
        reader.error("input_schema", pos, "the input schema must describe an object", hint);
        return None;
    }
    Some(ToolYml {
        name: name?,
        description: Some(description?),
        input_schema: input_schema?,
        output_schema: output_schema.valid()?,
        runtime: runtime.valid()?,
        handler: handler.valid()?,
    })
}

/// Reads a schema file named in tool.yml, relative to the tool's directory, and checks that it is
/// JSON and a valid JSON Schema.
fn read_schema(
    reader: &mut Reader<'_>,
    files: &dyn BundleFiles,
    dir: &str,
    node: &Node,
    field: &str,
) -> Option<serde_json::Value> {
    let written = reader.text(node, field)?;
    let schema_file = match bundle_path(&format!("{dir}/{written}")) {
        Ok(path) if path.starts_with(&format!("{dir}/")) => path,
        _ => {
            let hint = format!("name a file inside {dir}, e.g. {field}: input.schema.json");
            reader.error(field, Some(node.pos), format!("{written:?} is not a file inside {dir}"), hint);
            return None;
        }
    };
    if !files.contains(&schema_file) {
        let hint = format!("add {schema_file}, or fix the path");
        reader.error(field, Some(node.pos), format!("schema file {schema_file} is not in the bundle"), hint);
        return None;
    }
    let text = read_text(reader, files, field, Some(node.pos), &schema_file)?;
    let schema: serde_json::Value = match serde_json::from_str(&text) {
        Ok(schema) => schema,
        Err(error) => {
            let message = format!("{schema_file} is not valid JSON: {error}");
            reader.error(field, Some(node.pos), message, "fix the JSON syntax at that line and column".to_owned());
            return None;
        }
    };
    if !schema.is_object() && !schema.is_boolean() {
        reader.error(
            field,
            Some(node.pos),
            format!("{schema_file} is not a JSON Schema object"),
            "start the file with {\"type\": \"object\", ...}",
        );
        return None;
    }
    if let Err(error) = jsonschema::validator_for(&schema) {
        let location = error.instance_path().to_string();
        let at = if location.is_empty() { String::new() } else { format!(" at {location}") };
        let message = format!("{schema_file} is not a valid JSON Schema{at}: {error}");
        reader.error(
            field,
            Some(node.pos),
            message,
            "check the schema against the JSON Schema specification".to_owned(),
        );
        return None;
    }
    Some(schema)
}
