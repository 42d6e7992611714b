//! Typed reading of YAML nodes that reports every mismatch instead of stopping at the first.
//!
//! Each reader returns `None` after recording a diagnostic, so the caller goes on with the next
//! field and the user sees all problems of a manifest in one pass.

use super::diagnostics::{At, Diagnostics};
use super::yaml::{Key, Node, Pos, Value};

pub(crate) struct Reader<'d> {
    pub file: &'d str,
    pub diagnostics: &'d mut Diagnostics,
}

/// The entries of a mapping whose keys have been checked against the allowed set.
pub(crate) struct Fields<'n> {
    pub path: String,
    pub pos: Pos,
    entries: &'n [(Key, Node)],
}

/// `parent.key`, or `key` at the top.
pub(crate) fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

/// `parent[index]`.
pub(crate) fn item(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

// === impl Reader ===

impl Reader<'_> {
    pub fn error(&mut self, path: &str, pos: Option<Pos>, message: impl Into<String>, hint: impl Into<String>) {
        let at = At { file: self.file, path, pos };
        self.diagnostics.error(at, message, hint);
    }

    pub fn warning(&mut self, path: &str, pos: Option<Pos>, message: impl Into<String>, hint: impl Into<String>) {
        let at = At { file: self.file, path, pos };
        self.diagnostics.warning(at, message, hint);
    }

    /// Opens a mapping and refuses keys outside `allowed`, suggesting the closest allowed key.
    pub fn map<'n>(&mut self, node: &'n Node, path: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            let message = format!("expected a mapping of fields, found {}", node.type_name());
            self.error(path, Some(node.pos), message, format!("allowed fields: {}", allowed.join(", ")));
            return None;
        };
        for (key, _) in entries {
            if !allowed.contains(&key.text.as_str()) {
                let hint = match closest(&key.text, allowed) {
                    Some(suggestion) => format!("did you mean `{suggestion}`?"),
                    None => format!("allowed fields here: {}", allowed.join(", ")),
                };
                let message = format!("unknown field `{}`", key.text);
                self.error(&child(path, &key.text), Some(key.pos), message, hint);
            }
        }
        Some(Fields { path: path.to_owned(), pos: node.pos, entries })
    }

    /// Opens a mapping whose keys are names chosen by the user (env variables, llm options).
    pub fn named_map<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [(Key, Node)]> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            _ => {
                let message = format!("expected a mapping of names to values, found {}", node.type_name());
                self.error(path, Some(node.pos), message, "write one `NAME: value` per line, indented under the field");
                None
            }
        }
    }

    pub fn list<'n>(&mut self, node: &'n Node, path: &str, hint: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                let message = format!("expected a list, found {}", node.type_name());
                self.error(path, Some(node.pos), message, hint.to_owned());
                None
            }
        }
    }

    /// Any scalar as its source text: `python: 3.10` stays `3.10`, not `3.1`.
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Scalar(scalar) if !scalar.is_null() => Some(scalar.text.clone()),
            _ => {
                let message = format!("expected text, found {}", node.type_name());
                self.error(
                    path,
                    Some(node.pos),
                    message,
                    "write a single value on the same line, quoted if it holds special characters",
                );
                None
            }
        }
    }

    /// A string with at least one character that is not white space, and no control characters.
    pub fn text(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        if text.trim().is_empty() {
            self.error(
                path,
                Some(node.pos),
                "must not be empty",
                "write a value, or remove the field if it is optional",
            );
            return None;
        }
        if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            self.error(path, Some(node.pos), "must not contain control characters", "remove the control characters");
            return None;
        }
        Some(text)
    }

    pub fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        if let Value::Scalar(scalar) = &node.value
            && let Some(value) = scalar.as_bool()
        {
            return Some(value);
        }
        let message = format!("expected true or false, found {}", describe(node));
        self.error(path, Some(node.pos), message, "write true or false without quotes".to_owned());
        None
    }

    /// A whole number from 1 to `u32::MAX`.
    pub fn positive_int(&mut self, node: &Node, path: &str) -> Option<u32> {
        if let Value::Scalar(scalar) = &node.value
            && let Some(value) = scalar.as_i64()
        {
            return match u32::try_from(value) {
                Ok(value) if value > 0 => Some(value),
                _ => {
                    let message = format!("expected a positive whole number, found {value}");
                    self.error(path, Some(node.pos), message, "use a number of 1 or more".to_owned());
                    None
                }
            };
        }
        let message = format!("expected a positive whole number, found {}", describe(node));
        self.error(path, Some(node.pos), message, quote_hint(node));
        None
    }

    pub fn number(&mut self, node: &Node, path: &str) -> Option<f64> {
        if let Value::Scalar(scalar) = &node.value
            && let Some(value) = scalar.as_f64()
        {
            return Some(value);
        }
        let message = format!("expected a number, found {}", describe(node));
        self.error(path, Some(node.pos), message, quote_hint(node));
        None
    }

    /// Reports a missing required field at the mapping that should hold it.
    pub fn missing(&mut self, fields: &Fields<'_>, key: &str, hint: &str) {
        let message = format!("missing required field `{key}`");
        self.error(&child(&fields.path, key), Some(fields.pos), message, hint.to_owned());
    }
}

// === impl Fields ===

impl<'n> Fields<'n> {
    /// The value of `key`, treating an explicit null (`key:` with nothing after it) as absent.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(entry_key, _)| entry_key.text == key)
            .map(|(_, value)| value)
            .filter(|value| !value.is_null())
    }

    /// Whether `key` is written at all, even with no value.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(entry_key, _)| entry_key.text == key)
    }

    pub fn key_pos(&self, key: &str) -> Option<Pos> {
        self.entries.iter().find(|(entry_key, _)| entry_key.text == key).map(|(entry_key, _)| entry_key.pos)
    }

    pub fn path_of(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// The value of a required key, or a diagnostic that says it is missing.
    pub fn required(&self, reader: &mut Reader<'_>, key: &str, hint: &str) -> Option<&'n Node> {
        let value = self.get(key);
        if value.is_none() {
            reader.missing(self, key, hint);
        }
        value
    }
}

/// The value as the user wrote it, for messages: `"8787" (quoted text)` or `a list`.
pub(crate) fn describe(node: &Node) -> String {
    match &node.value {
        Value::Scalar(scalar) if !scalar.plain => format!("{:?} (quoted text)", truncate(&scalar.text)),
        Value::Scalar(scalar) if !scalar.is_null() => format!("`{}`", truncate(&scalar.text)),
        _ => node.type_name().to_owned(),
    }
}

fn quote_hint(node: &Node) -> String {
    match &node.value {
        Value::Scalar(scalar) if !scalar.plain && !scalar.text.is_empty() => {
            "remove the quotes around the number".to_owned()
        }
        _ => "write a plain number such as 30, without units or quotes".to_owned(),
    }
}

fn truncate(text: &str) -> String {
    const LIMIT: usize = 60;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The allowed name nearest to `name`, if it is near enough to be a likely typo.
pub(crate) fn closest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    allowed
        .iter()
        .map(|candidate| (edit_distance(&name, &candidate.to_ascii_lowercase()), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters; inputs here are short field names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().take(256).enumerate() {
        let mut current = vec![i + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// An optional field read with a reader: `None` when absent, `Some(None)` when present but
/// invalid (already reported), `Some(Some(value))` when present and valid.
pub(crate) trait OptionalField<T> {
    /// `Some(None)` when absent, `Some(Some(value))` when valid, `None` when invalid, so that
    /// `field.valid()?` gives up only on a reported problem.
    fn valid(self) -> Option<Option<T>>;
}

impl<T> OptionalField<T> for Option<Option<T>> {
    fn valid(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(Some(value)) => Some(Some(value)),
            Some(None) => None,
        }
    }
}
