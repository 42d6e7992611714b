//! A YAML document as a tree of nodes that remember where they stand in the source.
//!
//! We do not deserialize `dari.yml` with serde: a user-facing validator must report every problem
//! at once with its line and column, which needs positions on every node. The tree is built from
//! the events of `saphyr-parser` with an explicit stack, so hostile input cannot overflow our
//! stack, and it is bounded in size, depth and alias expansion (no "billion laughs").

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// The largest `dari.yml` (or `tool.yml`, or skill frontmatter) we read.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// How deeply collections may nest. Real manifests nest five levels at most.
pub const MAX_DEPTH: usize = 64;
/// How many nodes a document may expand to, aliases included.
pub const MAX_NODES: usize = 100_000;
/// How many bytes of scalar text a document may expand to, aliases included.
pub const MAX_EXPANDED_BYTES: usize = 4 * MAX_DOCUMENT_BYTES;

/// A 1-based line and column in the source text (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in source order. Keys are unique (a duplicate is a parse error).
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub pos: Pos,
    pub text: String,
}

/// A scalar keeps its source text; what it means depends on the field that holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Plain scalars may be null, booleans or numbers; quoted and block scalars are strings.
    pub plain: bool,
}

#[derive(Debug, PartialEq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document. An empty document parses as `None`.
pub fn parse_document(text: &str) -> Result<Option<Node>, YamlError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(YamlError {
            pos: Pos { line: 1, column: 1 },
            message: format!("the document is {} bytes, over the limit of {MAX_DOCUMENT_BYTES} bytes", text.len()),
        });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    TreeBuilder::default().build(Parser::new_from_str(text))
}

// === impl Scalar ===

impl Scalar {
    /// Plain `~`, `null` or nothing, as YAML 1.2's core schema says.
    pub fn is_null(&self) -> bool {
        self.plain && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }

    pub fn as_bool(&self) -> Option<bool> {
        if !self.plain {
            return None;
        }
        match self.text.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    /// A plain decimal integer, as YAML 1.2's core schema reads it.
    pub fn as_i64(&self) -> Option<i64> {
        if !self.plain {
            return None;
        }
        let digits = self.text.strip_prefix(['-', '+']).unwrap_or(&self.text);
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        self.text.parse().ok()
    }

    /// A plain number (integer or decimal fraction). Infinities and NaN are refused.
    pub fn as_f64(&self) -> Option<f64> {
        if !self.plain {
            return None;
        }
        let looks_numeric =
            self.text.bytes().all(|byte| byte.is_ascii_digit() || matches!(byte, b'-' | b'+' | b'.' | b'e' | b'E'));
        if !looks_numeric {
            return None;
        }
        self.text.parse::<f64>().ok().filter(|number| number.is_finite())
    }
}

impl Node {
    /// What a user would call this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Scalar(scalar) if scalar.is_null() => "nothing (null)",
            Value::Scalar(scalar) if scalar.as_bool().is_some() => "a boolean",
            Value::Scalar(scalar) if scalar.as_f64().is_some() => "a number",
            Value::Scalar(_) => "a string",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(scalar) if scalar.is_null())
    }

    /// The number of nodes and the bytes of scalar text in this tree.
    fn weight(&self) -> Weight {
        match &self.value {
            Value::Scalar(scalar) => Weight { nodes: 1, bytes: scalar.text.len() },
            Value::Seq(items) => items.iter().fold(Weight { nodes: 1, bytes: 0 }, |sum, item| sum + item.weight()),
            Value::Map(entries) => entries.iter().fold(Weight { nodes: 1, bytes: 0 }, |sum, (key, value)| {
                sum + Weight { nodes: 1, bytes: key.text.len() } + value.weight()
            }),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Weight {
    nodes: usize,
    bytes: usize,
}

impl std::ops::Add for Weight {
    type Output = Weight;

    fn add(self, other: Weight) -> Weight {
        Weight { nodes: self.nodes + other.nodes, bytes: self.bytes + other.bytes }
    }
}

// === impl TreeBuilder ===

/// A collection under construction.
enum Frame {
    Seq { pos: Pos, anchor: usize, items: Vec<Node> },
    Map { pos: Pos, anchor: usize, entries: Vec<(Key, Node)>, pending_key: Option<Key> },
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    expanded: Weight,
    root: Option<Node>,
    n_documents: usize,
}

impl TreeBuilder {
    fn build<'input, I>(mut self, events: I) -> Result<Option<Node>, YamlError>
    where
        I: Iterator<Item = Result<(Event<'input>, Span), saphyr_parser::ScanError>>,
    {
        for event in events {
            let (event, span) = event.map_err(|error| YamlError {
                pos: Pos { line: to_u32(error.marker().line()), column: to_u32(error.marker().col() + 1) },
                message: error.info().to_owned(),
            })?;
            let pos = Pos { line: to_u32(span.start.line()), column: to_u32(span.start.col() + 1) };
            self.on_event(event, pos)?;
        }
        Ok(self.root)
    }

    fn on_event(&mut self, event: Event<'_>, pos: Pos) -> Result<(), YamlError> {
        match event {
            Event::DocumentStart(_) => {
                self.n_documents += 1;
                if self.n_documents > 1 {
                    return Err(error(pos, "expected one YAML document, found a second one (`---`)"));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                if tag.is_some() {
                    return Err(error(pos, "YAML tags (`!tag`) are not supported; remove the tag"));
                }
                let scalar = Scalar { text: text.into_owned(), plain: style == ScalarStyle::Plain };
                self.count(Weight { nodes: 1, bytes: scalar.text.len() }, pos)?;
                self.push(Node { pos, value: Value::Scalar(scalar) }, anchor)?;
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) if tag.is_some() => {
                let _ = anchor;
                return Err(error(pos, "YAML tags (`!tag`) are not supported; remove the tag"));
            }
            Event::SequenceStart(anchor, _) => {
                self.open(Frame::Seq { pos, anchor, items: Vec::new() }, pos)?;
            }
            Event::MappingStart(anchor, _) => {
                let frame = Frame::Map { pos, anchor, entries: Vec::new(), pending_key: None };
                self.open(frame, pos)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { pos, anchor, items }) => (Node { pos, value: Value::Seq(items) }, anchor),
                    Some(Frame::Map { pos, anchor, entries, .. }) => (Node { pos, value: Value::Map(entries) }, anchor),
                    None => return Err(error(pos, "unbalanced end of a collection")),
                };
                self.push(node, anchor)?;
            }
            Event::Alias(anchor) => {
                let Some(node) = self.anchors.get(&anchor) else {
                    return Err(error(pos, "this alias refers to an unknown anchor"));
                };
                let mut node = node.clone();
                node.pos = pos;
                self.count(node.weight(), pos)?;
                self.push(node, 0)?;
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, pos: Pos) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(error(pos, &format!("collections nest deeper than {MAX_DEPTH} levels")));
        }
        self.count(Weight { nodes: 1, bytes: 0 }, pos)?;
        self.stack.push(frame);
        Ok(())
    }

    fn count(&mut self, weight: Weight, pos: Pos) -> Result<(), YamlError> {
        self.expanded = self.expanded + weight;
        if self.expanded.nodes > MAX_NODES {
            return Err(error(pos, &format!("the document expands to more than {MAX_NODES} values")));
        }
        if self.expanded.bytes > MAX_EXPANDED_BYTES {
            let message = format!("the document expands to more than {MAX_EXPANDED_BYTES} bytes of text");
            return Err(error(pos, &message));
        }
        Ok(())
    }

    /// Places a finished node into its parent (or makes it the root).
    fn push(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, pending_key, .. }) => match pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let Value::Scalar(scalar) = node.value else {
                        return Err(error(node.pos, "mapping keys must be plain text, not lists or mappings"));
                    };
                    if let Some((first, _)) = entries.iter().find(|(key, _)| key.text == scalar.text) {
                        let message =
                            format!("duplicate key `{}` (first defined at line {})", scalar.text, first.pos.line);
                        return Err(error(node.pos, &message));
                    }
                    *pending_key = Some(Key { pos: node.pos, text: scalar.text });
                }
            },
        }
        Ok(())
    }
}

fn error(pos: Pos, message: &str) -> YamlError {
    YamlError { pos, message: message.to_owned() }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
