//! The tools a pi agent offers its model: the built-in tools the manifest selects, in pi's order,
//! then its custom tools in manifest order, each with its schema compiled once. Before a call
//! runs, [`ToolCatalog::prepare`] finds the tool and coerces and validates the arguments as pi's
//! loop does (AJV with `coerceTypes`); a failure is an error result for the model, in pi's words.
//!
//! Defaults where the manifest says nothing:
//!
//! - a `kind: main` tool may run [`MAIN_TOOL_DEFAULT_TIMEOUT`] (5 minutes) per attempt;
//! - a `kind: external` tool's result is awaited [`EXTERNAL_TOOL_DEFAULT_TIMEOUT`] (1 hour): long
//!   enough for an application that asks a person, short enough that a client that went away
//!   does not hold the session for a day. `timeout_seconds` sets either;
//! - a main tool is tried once. `retries: N` adds N attempts, each after [`RETRIES_INTERVAL`]
//!   (1 s); `retry_policy` takes its fields left out from [`TOOL_RETRY_POLICY_DEFAULT`]
//!   (3 attempts, from 1 s, doubling, at most 30 s): writing a policy means wanting retries;
//! - a custom tool without a description is described as `The custom tool {name}.`, and one
//!   without an input schema takes any object.

mod builtin;
mod coerce;
mod validate;

use std::time::Duration;

use dari_protocol::manifest::{BuiltInTool, CustomTool, Handler, Manifest, ToolKind, ToolRuntime};
use serde_json::Value;

use self::validate::{CompiledSchema, problem_list};
use super::backoff::Backoff;
use super::model::ToolSpec;

/// How long one attempt of a `kind: main` tool may run when `timeout_seconds` is absent.
pub const MAIN_TOOL_DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long the client has to submit an external tool's result when `timeout_seconds` is absent.
pub const EXTERNAL_TOOL_DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// The wait between the attempts `retries: N` asks for.
pub const RETRIES_INTERVAL: Duration = Duration::from_secs(1);
/// What a tool's `retry_policy` means for the fields it leaves out.
pub const TOOL_RETRY_POLICY_DEFAULT: Backoff = Backoff {
    maximum_attempts: 3,
    initial_interval: Duration::from_secs(1),
    coefficient: 2.0,
    maximum_interval: Duration::from_secs(30),
};

/// Every tool of an agent.
#[derive(Debug)]
pub struct ToolCatalog {
    tools: Vec<CatalogTool>,
}

/// One tool: what the model is told, how it runs, and its compiled schemas.
#[derive(Debug)]
pub struct CatalogTool {
    pub spec: ToolSpec,
    pub kind: CatalogToolKind,
    /// The tool's line in the system prompt's "Available tools:" list: pi's snippet for a
    /// built-in tool, the first line of the description for a custom one.
    pub prompt_snippet: String,
    /// The JSON Schema a main or external tool's result must match, when it declares one.
    pub output_schema: Option<Value>,
    input: CompiledSchema,
    output: Option<CompiledSchema>,
}

/// How a tool call runs.
#[derive(Clone, Debug, PartialEq)]
pub enum CatalogToolKind {
    /// By sandboxd, in the session's sandbox.
    BuiltIn(BuiltInTool),
    /// The bundle's handler, in the session's sandbox; `timeout` bounds each attempt.
    Main { runtime: ToolRuntime, handler: Handler, timeout: Duration, retry: ToolRetry },
    /// By the client, which submits the result within `timeout`.
    External { timeout: Duration },
}

/// When a failed main tool call is tried again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToolRetry {
    pub backoff: Backoff,
}

/// Why the tools of a manifest cannot be offered.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("compile the {which} schema of tool {tool}: {message}")]
    InvalidSchema { tool: String, which: &'static str, message: String },
    #[error("tool {tool} is kind: main but has no {missing}")]
    MainToolIncomplete { tool: String, missing: &'static str },
    #[error("tool {tool} is declared twice")]
    DuplicateName { tool: String },
}

// === impl ToolCatalog ===

impl ToolCatalog {
    /// The built-in tools of `manifest.built_in_tools` (already resolved: the default set when
    /// omitted, none for `[]`) in pi's order, then the custom tools in manifest order.
    pub fn new(manifest: &Manifest) -> Result<ToolCatalog, CatalogError> {
        let mut tools = Vec::new();
        for built_in in BuiltInTool::ALL.into_iter().filter(|tool| manifest.built_in_tools.contains(tool)) {
            tools.push(CatalogTool::built_in(built_in)?);
        }
        for custom in &manifest.custom_tools {
            if tools.iter().any(|tool| tool.spec.name == custom.name) {
                return Err(CatalogError::DuplicateName { tool: custom.name.clone() });
            }
            tools.push(CatalogTool::custom(custom)?);
        }
        Ok(ToolCatalog { tools })
    }

    pub fn tools(&self) -> &[CatalogTool] {
        &self.tools
    }

    pub fn get(&self, name: &str) -> Option<&CatalogTool> {
        self.tools.iter().find(|tool| tool.spec.name == name)
    }

    /// The tools as the model request lists them.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|tool| tool.spec.clone()).collect()
    }

    pub fn has_built_in(&self, built_in: BuiltInTool) -> bool {
        self.tools.iter().any(|tool| tool.kind == CatalogToolKind::BuiltIn(built_in))
    }

    /// The tool a call names and its arguments ready to run: parsed when they arrived as JSON
    /// text, reshaped for legacy forms (see `builtin::prepare_arguments`), coerced and validated.
    /// The error is the text of the error result the model gets. Arguments that are null or an
    /// empty string (some providers send `""` for a call without arguments) count as `{}`.
    pub fn prepare(&self, name: &str, arguments: &Value) -> Result<(&CatalogTool, Value), String> {
        let tool = self.get(name).ok_or_else(|| format!("Tool {name} not found"))?;
        let received = match arguments {
            Value::Null => Value::Object(serde_json::Map::new()),
            Value::String(raw) if raw.trim().is_empty() => Value::Object(serde_json::Map::new()),
            Value::String(raw) => serde_json::from_str(raw).map_err(|error| {
                format!("The arguments for tool \"{name}\" are not valid JSON ({error}).\n\nReceived arguments:\n{raw}")
            })?,
            other => other.clone(),
        };
        let mut prepared = received.clone();
        if let CatalogToolKind::BuiltIn(built_in) = tool.kind {
            builtin::prepare_arguments(built_in, &mut prepared);
        }
        tool.input.coerce(&mut prepared);
        let problems = tool.input.problems(&prepared);
        if problems.is_empty() {
            return Ok((tool, prepared));
        }
        Err(format!(
            "Validation failed for tool \"{name}\":\n{}\n\nReceived arguments:\n{}",
            problem_list(&problems),
            pretty(&received)
        ))
    }

    /// Checks a main or external tool's successful result against its output schema; tools
    /// without one accept anything. The error is the text of the error result the model gets.
    pub fn check_output(&self, name: &str, result: &Value) -> Result<(), String> {
        let tool = self.get(name).ok_or_else(|| format!("Tool {name} not found"))?;
        let Some(output) = &tool.output else { return Ok(()) };
        let problems = output.problems(result);
        if problems.is_empty() {
            return Ok(());
        }
        Err(format!(
            "The result of tool \"{name}\" does not match its output schema:\n{}\n\nReceived result:\n{}",
            problem_list(&problems),
            pretty(result)
        ))
    }
}

// === impl CatalogTool ===

impl CatalogTool {
    fn built_in(built_in: BuiltInTool) -> Result<CatalogTool, CatalogError> {
        let spec = builtin::spec(built_in);
        let input = compile(&spec.name, "input", &spec.parameters)?;
        Ok(CatalogTool {
            prompt_snippet: builtin::prompt_snippet(built_in).to_owned(),
            spec,
            kind: CatalogToolKind::BuiltIn(built_in),
            output_schema: None,
            input,
            output: None,
        })
    }

    fn custom(tool: &CustomTool) -> Result<CatalogTool, CatalogError> {
        let name = &tool.name;
        let description = match tool.description.as_deref().map(str::trim) {
            Some(description) if !description.is_empty() => description.to_owned(),
            _ => format!("The custom tool {name}."),
        };
        let parameters = tool.input_schema.clone().unwrap_or_else(|| serde_json::json!({ "type": "object" }));
        let input = compile(name, "input", &parameters)?;
        let output = tool.output_schema.as_ref().map(|schema| compile(name, "output", schema)).transpose()?;
        let kind = match tool.kind {
            ToolKind::Main => {
                let incomplete = |missing| CatalogError::MainToolIncomplete { tool: name.clone(), missing };
                CatalogToolKind::Main {
                    runtime: tool.runtime.ok_or_else(|| incomplete("runtime"))?,
                    handler: tool.handler.clone().ok_or_else(|| incomplete("handler"))?,
                    timeout: seconds_or(tool.timeout_seconds, MAIN_TOOL_DEFAULT_TIMEOUT),
                    retry: ToolRetry::for_tool(tool),
                }
            }
            ToolKind::External => {
                CatalogToolKind::External { timeout: seconds_or(tool.timeout_seconds, EXTERNAL_TOOL_DEFAULT_TIMEOUT) }
            }
        };
        Ok(CatalogTool {
            prompt_snippet: first_line(&description).to_owned(),
            spec: ToolSpec { name: name.clone(), description, parameters },
            kind,
            output_schema: tool.output_schema.clone(),
            input,
            output,
        })
    }
}

// === impl ToolRetry ===

impl ToolRetry {
    /// A single attempt.
    pub const NONE: ToolRetry = ToolRetry { backoff: Backoff::NO_RETRY };

    /// `retries`, else `retry_policy`, else a single attempt (the manifest refuses both at once).
    pub fn for_tool(tool: &CustomTool) -> ToolRetry {
        let backoff = match (tool.retries, &tool.retry_policy) {
            (Some(retries), _) => Backoff::fixed(retries, RETRIES_INTERVAL),
            (None, Some(policy)) => Backoff::from_policy(policy, TOOL_RETRY_POLICY_DEFAULT),
            (None, None) => Backoff::NO_RETRY,
        };
        ToolRetry { backoff }
    }

    /// How long to wait before attempt number `attempt` (counted from 1, so zero for the first),
    /// or `None` when the attempts are used up.
    pub fn delay_before(&self, attempt: u32) -> Option<Duration> {
        self.backoff.delay_before(attempt, None)
    }
}

fn compile(tool: &str, which: &'static str, schema: &Value) -> Result<CompiledSchema, CatalogError> {
    CompiledSchema::compile(schema).map_err(|message| CatalogError::InvalidSchema {
        tool: tool.to_owned(),
        which,
        message,
    })
}

fn seconds_or(seconds: Option<u32>, default: Duration) -> Duration {
    seconds.map_or(default, |seconds| Duration::from_secs(seconds.into()))
}

/// The first line with text in it, trimmed.
fn first_line(text: &str) -> &str {
    text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests;
