//! What validation says about a manifest: every problem, where it is, and how to fix it.

use serde::{Deserialize, Serialize};

use super::yaml::Pos;

/// The manifest's file name at the bundle's root.
pub const MANIFEST_FILE: &str = "dari.yml";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The manifest cannot be deployed until this is fixed.
    Error,
    /// The manifest deploys, but probably not as its author meant.
    Warning,
}

/// One problem found in a manifest or in a file the manifest points at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file the problem is in, relative to the bundle root: `dari.yml`, or for example
    /// `tools/search/tool.yml` or `skills/review/SKILL.md`.
    pub file: String,
    /// The field at fault inside that file, dotted with list indices: `custom_tools[1].handler`.
    /// Empty for the document as a whole.
    pub path: String,
    /// 1-based line and column in `file`, when the problem has a place in it.
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

/// Collects diagnostics for one file at a time.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

/// A place to report at: a file, a field path and a position.
#[derive(Clone, Copy, Debug)]
pub struct At<'a> {
    pub file: &'a str,
    pub path: &'a str,
    pub pos: Option<Pos>,
}

// === impl Diagnostic ===

impl Diagnostic {
    /// `file:line:column` (or just the file) for human output.
    pub fn location(&self) -> String {
        match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{}:{line}:{column}", self.file),
            _ => self.file.clone(),
        }
    }

    /// The field path qualified by its file when that is not `dari.yml`, such as
    /// `tools/search/tool.yml: input_schema`. Tests and tools match on this.
    pub fn qualified_path(&self) -> String {
        if self.file == MANIFEST_FILE {
            self.path.clone()
        } else if self.path.is_empty() {
            format!("{}:", self.file)
        } else {
            format!("{}: {}", self.file, self.path)
        }
    }
}

impl std::fmt::Display for Diagnostic {
    /// Renders as `dari.yml:3:9: error: harness.customRuntimeServer.port: <message>` and an
    /// indented hint line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {severity}: ", self.location())?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

// === impl Diagnostics ===

impl Diagnostics {
    pub fn error(&mut self, at: At<'_>, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Severity::Error, at, message.into(), Some(hint.into()));
    }

    pub fn warning(&mut self, at: At<'_>, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Severity::Warning, at, message.into(), Some(hint.into()));
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|item| item.severity == Severity::Error)
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items
    }

    fn push(&mut self, severity: Severity, at: At<'_>, message: String, hint: Option<String>) {
        self.items.push(Diagnostic {
            severity,
            file: at.file.to_owned(),
            path: at.path.to_owned(),
            line: at.pos.map(|pos| pos.line),
            column: at.pos.map(|pos| pos.column),
            message,
            hint,
        });
    }
}
