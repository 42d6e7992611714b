//! Type coercion before validation, after AJV's `coerceTypes` (pi validates tool arguments with
//! it turned on): models often send `"5"` for 5 or `"true"` for true.
//!
//! Where a value's JSON type is not one the schema's `type` allows, it becomes the first allowed
//! type it converts to, and otherwise stays as it is for validation to report:
//!
//! | to        | from                                                                      |
//! |-----------|---------------------------------------------------------------------------|
//! | `string`  | a number (its JSON text), a boolean (`"true"`, `"false"`), null (`""`)     |
//! | `number`  | a string holding a number, a boolean (1, 0), null (0)                      |
//! | `integer` | a string holding a whole number, a boolean (1, 0), null (0)                |
//! | `boolean` | `"true"`, `"false"`, 1, 0, null (false)                                    |
//! | `null`    | `""`, 0, false                                                            |
//! | `array`   | a string holding a JSON array; any other value `x` becomes `[x]`           |
//! | `object`  | a string holding a JSON object                                            |
//!
//! Wrapping a single value in an array is AJV's `coerceTypes: "array"`; parsing a string that
//! holds a JSON array or object goes beyond AJV, for models that encode nested arguments twice.
//!
//! The walk descends through `properties`, `additionalProperties`, `items`, `prefixItems`,
//! `allOf` and local `$ref`s. For `anyOf` and `oneOf` the value takes the first branch under
//! which, coerced, it validates; when none does it is left alone.

use jsonschema::ValidatorMap;
use serde_json::{Number, Value};

/// Schemas nest no deeper than this for coercion: a `$ref` cycle stops here.
const MAX_DEPTH: usize = 64;

/// Coerces `value` in place to fit `schema`. `subschemas` holds validators keyed by JSON pointer,
/// used to pick `anyOf`/`oneOf` branches; without it a branch fits when its `type` does.
pub(super) fn coerce(value: &mut Value, schema: &Value, subschemas: Option<&ValidatorMap>) {
    Walk { root: schema, subschemas }.coerce(value, schema, "#", 0);
}

struct Walk<'s> {
    root: &'s Value,
    subschemas: Option<&'s ValidatorMap>,
}

impl Walk<'_> {
    /// `pointer` locates `schema` in the root document, as the keys of `subschemas` do.
    fn coerce(&self, value: &mut Value, schema: &Value, pointer: &str, depth: usize) {
        let Value::Object(keywords) = schema else { return };
        if depth > MAX_DEPTH {
            return;
        }
        if let Some(Value::String(reference)) = keywords.get("$ref")
            && let Some(target) = reference.strip_prefix('#').and_then(|fragment| self.root.pointer(fragment))
        {
            self.coerce(value, target, reference, depth + 1);
        }
        if let Some(types) = keywords.get("type") {
            coerce_type(value, types);
        }
        match value {
            Value::Object(fields) => {
                let properties = keywords.get("properties").and_then(Value::as_object);
                let additional = keywords.get("additionalProperties").filter(|schema| schema.is_object());
                for (name, field) in fields.iter_mut() {
                    if let Some(property) = properties.and_then(|properties| properties.get(name)) {
                        let property_pointer = format!("{pointer}/properties/{}", escape(name));
                        self.coerce(field, property, &property_pointer, depth + 1);
                    } else if let Some(additional) = additional {
                        self.coerce(field, additional, &format!("{pointer}/additionalProperties"), depth + 1);
                    }
                }
            }
            Value::Array(items) => self.coerce_items(items, keywords, pointer, depth),
            _ => {}
        }
        if let Some(Value::Array(branches)) = keywords.get("allOf") {
            for (index, branch) in branches.iter().enumerate() {
                self.coerce(value, branch, &format!("{pointer}/allOf/{index}"), depth + 1);
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = keywords.get(keyword) {
                self.coerce_to_branch(value, branches, &format!("{pointer}/{keyword}"), depth);
            }
        }
    }

    /// `prefixItems` (or draft 7's `items` array) by position, then `items` for the rest.
    fn coerce_items(
        &self,
        items: &mut [Value],
        keywords: &serde_json::Map<String, Value>,
        pointer: &str,
        depth: usize,
    ) {
        let (positional, positional_keyword) = match (keywords.get("prefixItems"), keywords.get("items")) {
            (Some(Value::Array(schemas)), _) => (schemas.as_slice(), "prefixItems"),
            (None, Some(Value::Array(schemas))) => (schemas.as_slice(), "items"),
            _ => (&[][..], "prefixItems"),
        };
        let rest = match (keywords.get("items"), keywords.get("additionalItems")) {
            (Some(schema @ Value::Object(_)), _) => Some((schema, "items")),
            (Some(Value::Array(_)), Some(schema @ Value::Object(_))) => Some((schema, "additionalItems")),
            _ => None,
        };
        for (index, item) in items.iter_mut().enumerate() {
            if let Some(schema) = positional.get(index) {
                self.coerce(item, schema, &format!("{pointer}/{positional_keyword}/{index}"), depth + 1);
            } else if let Some((schema, keyword)) = rest {
                self.coerce(item, schema, &format!("{pointer}/{keyword}"), depth + 1);
            }
        }
    }

    fn coerce_to_branch(&self, value: &mut Value, branches: &[Value], pointer: &str, depth: usize) {
        for (index, branch) in branches.iter().enumerate() {
            let branch_pointer = format!("{pointer}/{index}");
            let mut candidate = value.clone();
            self.coerce(&mut candidate, branch, &branch_pointer, depth + 1);
            let fits = match self.subschemas.and_then(|subschemas| subschemas.get(&branch_pointer)) {
                Some(validator) => validator.is_valid(&candidate),
                None => branch.get("type").is_none_or(|types| has_type(&candidate, types)),
            };
            if fits {
                *value = candidate;
                return;
            }
        }
    }
}

/// Converts `value` to the first of `types` it converts to, unless it already has one of them.
fn coerce_type(value: &mut Value, types: &Value) {
    if has_type(value, types) {
        return;
    }
    let names: Vec<&str> = match types {
        Value::String(name) => vec![name.as_str()],
        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
        _ => return,
    };
    if let Some(converted) = names.into_iter().find_map(|name| convert(value, name)) {
        *value = converted;
    }
}

fn has_type(value: &Value, types: &Value) -> bool {
    match types {
        Value::String(name) => is_type(value, name),
        Value::Array(names) => names.iter().filter_map(Value::as_str).any(|name| is_type(value, name)),
        _ => true,
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.as_number().is_some_and(is_whole),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    }
}

fn is_whole(number: &Number) -> bool {
    number.is_i64() || number.is_u64() || number.as_f64().is_some_and(|float| float.fract() == 0.0)
}

/// `value` as type `name`, when the table in the module doc allows it.
fn convert(value: &Value, name: &str) -> Option<Value> {
    match (name, value) {
        ("string", Value::Number(number)) => Some(Value::String(number.to_string())),
        ("string", Value::Bool(flag)) => Some(Value::String(flag.to_string())),
        ("string", Value::Null) => Some(Value::String(String::new())),
        ("number" | "integer", Value::Bool(flag)) => Some(Value::from(u8::from(*flag))),
        ("number" | "integer", Value::Null) => Some(Value::from(0)),
        ("number", Value::String(text)) => parse_number(text).map(Value::Number),
        ("integer", Value::String(text)) => parse_number(text).filter(is_whole).map(Value::Number),
        ("boolean", Value::String(text)) if text == "true" || text == "false" => Some(Value::Bool(text == "true")),
        ("boolean", Value::Number(number)) if number.as_f64() == Some(1.0) || number.as_f64() == Some(0.0) => {
            Some(Value::Bool(number.as_f64() == Some(1.0)))
        }
        ("boolean", Value::Null) => Some(Value::Bool(false)),
        ("null", Value::String(text)) if text.is_empty() => Some(Value::Null),
        ("null", Value::Number(number)) if number.as_f64() == Some(0.0) => Some(Value::Null),
        ("null", Value::Bool(false)) => Some(Value::Null),
        ("array", Value::String(text)) => match serde_json::from_str(text) {
            Ok(parsed @ Value::Array(_)) => Some(parsed),
            _ => Some(Value::Array(vec![value.clone()])),
        },
        ("array", _) => Some(Value::Array(vec![value.clone()])),
        ("object", Value::String(text)) => serde_json::from_str(text).ok().filter(Value::is_object),
        _ => None,
    }
}

/// A number written as JSON writes one (no `+`, no `0x`, no `NaN`): `"5"`, `"-2.5"`, `"1e3"`.
/// Whole numbers become integers (`"5.0"` is 5).
fn parse_number(text: &str) -> Option<Number> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Number(number)) => {
            let whole = number.as_f64().filter(|float| float.fract() == 0.0 && float.abs() < 9.0e15);
            // Whole and below 2^53, so the cast is exact.
            let integer = whole.map(|float| Number::from(float as i64));
            Some(if number.is_f64() { integer.unwrap_or(number) } else { number })
        }
        _ => None,
    }
}

/// A property name as a JSON pointer segment (`~` is `~0`, `/` is `~1`).
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}
