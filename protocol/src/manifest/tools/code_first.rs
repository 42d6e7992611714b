//! Code-first TypeScript tools: `tools/<name>/tool.ts` exporting `description`, `inputSchema`
//! and `handler`.
//!
//! We do not run the module here: validation must work without Node.js and must not execute a
//! stranger's code on the server. A small lexer finds the module's exports, skipping comments and
//! strings, and reads `description` when it is a string literal. The schemas are read by running
//! the module inside the sandbox when the version is prepared.

use super::super::bundle_checks::read_text;
use super::super::names::is_tool_name;
use super::super::reader::Reader;
use super::super::{BundleFiles, CustomTool, Handler, ToolKind, ToolRuntime, ToolSource};
use super::FILE_START;

const MODULE_NAMES: &[&str] = &["tool.ts", "tool.mts"];
const REQUIRED_EXPORTS: &[&str] = &["description", "inputSchema", "handler"];

/// A `tools/<name>/tool.ts` (or `tool.mts`) found in the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeFirstModule {
    /// The directory's name, which is the tool's name.
    pub name: String,
    /// `tools/<name>`.
    pub dir: String,
    /// The module's bundle path.
    pub module: String,
}

/// Every code-first tool module directly under `tools/`, in path order.
pub fn code_first_tools(files: &dyn BundleFiles) -> Vec<CodeFirstModule> {
    let mut found: Vec<CodeFirstModule> = Vec::new();
    for path in files.paths() {
        let Some(rest) = path.strip_prefix("tools/") else { continue };
        let Some((name, file)) = rest.split_once('/') else { continue };
        if MODULE_NAMES.contains(&file) && !found.iter().any(|module| module.name == name) {
            found.push(CodeFirstModule {
                name: name.to_owned(),
                dir: format!("tools/{name}"),
                module: path.to_owned(),
            });
        }
    }
    found
}

/// The code-first module in a tool directory, if there is one.
pub(super) fn module_in(files: &dyn BundleFiles, dir: &str) -> Option<String> {
    MODULE_NAMES.iter().map(|name| format!("{dir}/{name}")).find(|path| files.contains(path))
}

/// Turns a discovered module into the entry `dari deploy` would generate.
pub(super) fn discover(
    reader: &mut Reader<'_>,
    files: &dyn BundleFiles,
    found: &CodeFirstModule,
) -> Option<CustomTool> {
    if !is_tool_name(&found.name) || crate::manifest::BuiltInTool::from_name(&found.name).is_some() {
        let mut module_reader = Reader { file: &found.module, diagnostics: reader.diagnostics };
        let message = format!("directory name `{}` is not a usable tool name", found.name);
        let hint = "rename the directory: letters, digits, _ and -, and not a built-in tool's name".to_owned();
        module_reader.error("", Some(FILE_START), message, hint);
        return None;
    }
    let exports = read_exports(reader, files, &found.module)?;
    Some(CustomTool {
        name: found.name.clone(),
        path: found.dir.clone(),
        kind: ToolKind::Main,
        source: ToolSource::CodeFirst,
        description: exports.description,
        runtime: Some(ToolRuntime::Typescript),
        handler: Some(Handler { file: found.module.clone(), function: "handler".to_owned() }),
        input_schema: None,
        output_schema: None,
        retries: None,
        retry_policy: None,
        timeout_seconds: None,
    })
}

pub(super) struct Exports {
    /// The description when it is written as a string literal.
    pub description: Option<String>,
}

/// Checks that the module exports what a code-first tool must, reporting against the module.
pub(super) fn read_exports(reader: &mut Reader<'_>, files: &dyn BundleFiles, module: &str) -> Option<Exports> {
    let source = read_text(reader, files, "", Some(FILE_START), module)?;
    let found = scan_exports(&source);
    let mut module_reader = Reader { file: module, diagnostics: reader.diagnostics };
    let mut valid = true;
    for name in REQUIRED_EXPORTS.iter().filter(|name| !found.names.iter().any(|found| found == *name)) {
        let hint = match *name {
            "description" => "add: export const description = \"What the tool does\";",
            "inputSchema" => "add: export const inputSchema = { type: \"object\", properties: { ... } };",
            _ => "add: export async function handler(input) { ... }",
        };
        module_reader.error(name, Some(FILE_START), format!("the module does not export `{name}`"), hint.to_owned());
        valid = false;
    }
    if found.description.as_deref().is_some_and(|description| description.trim().is_empty()) {
        module_reader.error(
            "description",
            Some(FILE_START),
            "the exported description is empty",
            "describe what the tool does".to_owned(),
        );
        valid = false;
    }
    valid.then_some(Exports { description: found.description })
}

#[derive(Debug, Default, PartialEq)]
pub(super) struct ScannedExports {
    pub names: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    /// A string literal's value; `None` for a template with substitutions.
    Text(Option<String>),
    Punct(char),
}

/// Finds `export const|let|var|function|async function|class NAME` and `export { a, b as c }`.
pub(super) fn scan_exports(source: &str) -> ScannedExports {
    let tokens = tokenize(source);
    let mut scanned = ScannedExports::default();
    let mut index = 0;
    while index < tokens.len() {
        if tokens[index] != Token::Word("export".to_owned()) {
            index += 1;
            continue;
        }
        index += 1;
        let mut cursor = index;
        while matches!(tokens.get(cursor), Some(Token::Word(word)) if matches!(word.as_str(), "async" | "declare")) {
            cursor += 1;
        }
        match tokens.get(cursor) {
            Some(Token::Word(word)) if matches!(word.as_str(), "const" | "let" | "var") => {
                if let Some(Token::Word(name)) = tokens.get(cursor + 1) {
                    scanned.names.push(name.clone());
                    if name == "description" {
                        scanned.description = literal_initializer(&tokens[cursor + 2..]);
                    }
                }
            }
            Some(Token::Word(word)) if matches!(word.as_str(), "function" | "class") => {
                let mut name_index = cursor + 1;
                if tokens.get(name_index) == Some(&Token::Punct('*')) {
                    name_index += 1;
                }
                if let Some(Token::Word(name)) = tokens.get(name_index) {
                    scanned.names.push(name.clone());
                }
            }
            Some(Token::Punct('{')) => {
                let mut cursor = cursor + 1;
                let mut last_word = None;
                while let Some(token) = tokens.get(cursor) {
                    match token {
                        Token::Word(word) if word != "as" && word != "type" => last_word = Some(word.clone()),
                        Token::Punct(',') | Token::Punct('}') => {
                            scanned.names.extend(last_word.take());
                            if *token == Token::Punct('}') {
                                break;
                            }
                        }
                        _ => {}
                    }
                    cursor += 1;
                }
            }
            _ => {}
        }
    }
    scanned
}

/// `= "text"` (after an optional type annotation) up to the end of the statement.
fn literal_initializer(tokens: &[Token]) -> Option<String> {
    let equals = tokens.iter().take(16).position(|token| *token == Token::Punct('='))?;
    match (tokens.get(equals + 1), tokens.get(equals + 2)) {
        (Some(Token::Text(Some(text))), None | Some(Token::Punct(';')) | Some(Token::Word(_))) => Some(text.clone()),
        _ => None,
    }
}

fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        if c == '/' && chars.get(index + 1) == Some(&'/') {
            while index < chars.len() && chars[index] != '\n' {
                index += 1;
            }
        } else if c == '/' && chars.get(index + 1) == Some(&'*') {
            index += 2;
            while index < chars.len() && !(chars[index] == '*' && chars.get(index + 1) == Some(&'/')) {
                index += 1;
            }
            index += 2;
        } else if c == '"' || c == '\'' || c == '`' {
            let (text, next) = string_literal(&chars, index);
            tokens.push(Token::Text(text));
            index = next;
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = index;
            while index < chars.len() && (chars[index].is_alphanumeric() || chars[index] == '_' || chars[index] == '$')
            {
                index += 1;
            }
            tokens.push(Token::Word(chars[start..index].iter().collect()));
        } else {
            if !c.is_whitespace() {
                tokens.push(Token::Punct(c));
            }
            index += 1;
        }
    }
    tokens
}

/// Reads a string literal starting at `start` (its quote). Returns its value, `None` for a
/// template with `${}`, and the index after the closing quote.
fn string_literal(chars: &[char], start: usize) -> (Option<String>, usize) {
    let quote = chars[start];
    let mut value = String::new();
    let mut plain = true;
    let mut index = start + 1;
    while index < chars.len() {
        let c = chars[index];
        if c == '\\' {
            match chars.get(index + 1) {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some(escaped) => value.push(*escaped),
                None => {}
            }
            index += 2;
            continue;
        }
        if c == quote {
            return (plain.then_some(value), index + 1);
        }
        if quote == '`' && c == '$' && chars.get(index + 1) == Some(&'{') {
            plain = false;
        }
        if quote != '`' && c == '\n' {
            break;
        }
        value.push(c);
        index += 1;
    }
    (None, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(source: &str, names: &[&str], description: Option<&str>) {
        let scanned = scan_exports(source);
        assert_eq!(scanned.names, names);
        assert_eq!(scanned.description.as_deref(), description);
    }

    #[test]
    fn finds_declarations_and_lists() {
        check(
            "export const description = \"Search the repo\";\nexport const inputSchema = {type: 'object'};\nexport async function handler(input) {}",
            &["description", "inputSchema", "handler"],
            Some("Search the repo"),
        );
        check(
            "const a = 1; function b() {}\nexport { a as description, b as handler, inputSchema };",
            &["description", "handler", "inputSchema"],
            None,
        );
        check("export const description: string = `multi\nline`;", &["description"], Some("multi\nline"));
        check("export const description = `x ${y}`;", &["description"], None);
        check("export const description = \"a\" + b;", &["description"], None);
    }

    #[test]
    fn ignores_comments_and_strings() {
        check(
            "// export const handler = 1\n/* export function inputSchema() {} */\nconst s = 'export const description = 1';",
            &[],
            None,
        );
    }
}
