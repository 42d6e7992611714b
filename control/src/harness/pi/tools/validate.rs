//! A tool's JSON Schema, compiled once, and the checks made with it: arguments are coerced
//! (see [`super::coerce`]) and validated, results are validated, and each problem is written the
//! way pi writes AJV's errors: `  - {path}: {message}`.

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator, ValidatorMap};
use serde_json::Value;

use super::coerce;

/// A problem's message is cut to this many characters: messages quote the value at fault, which
/// can be a whole file's content.
const MAX_MESSAGE_CHARS: usize = 300;

/// A compiled schema.
#[derive(Debug)]
pub(super) struct CompiledSchema {
    schema: Value,
    validator: Validator,
    /// Validators of every subschema, keyed by JSON pointer (`#/properties/x/anyOf/1`), built only
    /// for schemas with `anyOf` or `oneOf`: coercion validates each branch to pick one.
    subschemas: Option<ValidatorMap>,
}

impl CompiledSchema {
    /// Compiles `schema`; the error says why it is not a usable JSON Schema. References to other
    /// documents cannot be resolved (the crate is built without retrieval), so they fail here.
    pub(super) fn compile(schema: &Value) -> Result<CompiledSchema, String> {
        let validator = jsonschema::validator_for(schema).map_err(|error| error.to_string())?;
        let subschemas = has_alternatives(schema).then(|| jsonschema::validator_map_for(schema).ok()).flatten();
        Ok(CompiledSchema { schema: schema.clone(), validator, subschemas })
    }

    /// Converts values in place where the schema wants another type, as AJV's `coerceTypes`.
    pub(super) fn coerce(&self, value: &mut Value) {
        coerce::coerce(value, &self.schema, self.subschemas.as_ref());
    }

    /// Every problem with `value`, one line each, or none when it is valid.
    pub(super) fn problems(&self, value: &Value) -> Vec<String> {
        self.validator.iter_errors(value).map(|error| describe(&error)).collect()
    }
}

/// Problems as pi lists them: each on its own line, indented, after a dash.
pub(super) fn problem_list(problems: &[String]) -> String {
    problems.iter().map(|problem| format!("  - {problem}")).collect::<Vec<_>>().join("\n")
}

/// `{path}: {message}`. The path is the instance location without its leading `/`
/// (`edits/0/oldText`); a missing property is named at the end of it; the top level is `root`.
fn describe(error: &ValidationError<'_>) -> String {
    let mut path = error.instance_path().as_str().trim_start_matches('/').to_owned();
    if let ValidationErrorKind::Required { property } = error.kind() {
        let property = property.as_str().map_or_else(|| property.to_string(), ToOwned::to_owned);
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(&property);
    }
    if path.is_empty() {
        path.push_str("root");
    }
    format!("{path}: {}", shorten(&error.to_string()))
}

fn shorten(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

/// Whether an `anyOf` or `oneOf` keyword appears anywhere in the schema.
fn has_alternatives(schema: &Value) -> bool {
    match schema {
        Value::Object(keywords) => {
            keywords.iter().any(|(keyword, value)| keyword == "anyOf" || keyword == "oneOf" || has_alternatives(value))
        }
        Value::Array(items) => items.iter().any(has_alternatives),
        _ => false,
    }
}
