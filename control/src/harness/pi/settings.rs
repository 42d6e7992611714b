//! What an operator sets for the managed pi harness: the guards on a message's loop, the model
//! providers' endpoints and platform keys, and the context windows of models.

use std::collections::BTreeMap;
use std::time::Duration;

use dari_protocol::manifest::LlmProvider;

use super::model::ApiKey;

#[derive(Clone, Debug)]
pub struct PiSettings {
    /// Model answers per message before it fails with `turn_limit` (pi has no cap).
    pub max_model_turns: u32,
    /// How long a message may run, from its start, before it fails with `message_timeout`.
    /// Time parked waiting for external tools counts.
    pub message_timeout: Duration,
    /// A tool result's text beyond this many bytes is cut before the model sees it.
    pub max_tool_result_bytes: usize,
    /// The most tokens one model answer may have (`max_tokens`).
    pub max_output_tokens: u32,
    /// A model call that sends no byte for this long fails as a timeout (and is retried).
    pub stream_idle_timeout: Duration,
    pub context_windows: ContextWindows,
    /// Operator overrides of each provider's base URL (a proxy, a gateway, a test fake).
    pub base_urls: BTreeMap<ProviderName, String>,
    /// The platform's keys, used when neither the session nor the agent brings one.
    pub platform_keys: BTreeMap<ProviderName, ApiKey>,
}

impl Default for PiSettings {
    fn default() -> PiSettings {
        PiSettings {
            max_model_turns: 100,
            message_timeout: Duration::from_secs(60 * 60),
            max_tool_result_bytes: 64 * 1024,
            max_output_tokens: 16_384,
            stream_idle_timeout: Duration::from_secs(120),
            context_windows: ContextWindows::default(),
            base_urls: BTreeMap::new(),
            platform_keys: BTreeMap::new(),
        }
    }
}

/// [`LlmProvider`] as a map key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProviderName {
    Openai,
    Anthropic,
    Openrouter,
}

impl From<LlmProvider> for ProviderName {
    fn from(provider: LlmProvider) -> ProviderName {
        match provider {
            LlmProvider::Openai => ProviderName::Openai,
            LlmProvider::Anthropic => ProviderName::Anthropic,
            LlmProvider::Openrouter => ProviderName::Openrouter,
        }
    }
}

impl ProviderName {
    /// The environment variable an operator sets the platform key in.
    pub fn key_variable(self) -> &'static str {
        match self {
            ProviderName::Openai => "OPENAI_API_KEY",
            ProviderName::Anthropic => "ANTHROPIC_API_KEY",
            ProviderName::Openrouter => "OPENROUTER_API_KEY",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::Openai => "openai",
            ProviderName::Anthropic => "anthropic",
            ProviderName::Openrouter => "openrouter",
        }
    }
}

/// How many tokens each model's context holds: the operator's word for a model first, then what
/// we know of well-known families, then a default.
#[derive(Clone, Debug)]
pub struct ContextWindows {
    /// Model id (as written in `dari.yml`) → tokens.
    pub overrides: BTreeMap<String, u64>,
    pub default: u64,
}

impl Default for ContextWindows {
    fn default() -> ContextWindows {
        ContextWindows { overrides: BTreeMap::new(), default: 128_000 }
    }
}

/// Families of models and their windows, matched by the model id's last path segment.
const KNOWN_WINDOWS: &[(&str, u64)] = &[
    ("claude-", 200_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-5", 400_000),
    ("gpt-4o", 128_000),
    ("o3", 200_000),
    ("o4", 200_000),
    ("gemini-", 1_048_576),
];

impl ContextWindows {
    pub fn of(&self, model: &str) -> u64 {
        if let Some(window) = self.overrides.get(model) {
            return *window;
        }
        let name = model.rsplit('/').next().unwrap_or(model);
        KNOWN_WINDOWS.iter().find(|(prefix, _)| name.starts_with(prefix)).map_or(self.default, |(_, window)| *window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_come_from_the_operator_then_the_family_then_the_default() {
        let mut windows = ContextWindows::default();
        windows.overrides.insert("fake/small".to_owned(), 2_000);
        assert_eq!(windows.of("fake/small"), 2_000);
        assert_eq!(windows.of("anthropic/claude-sonnet-4.6"), 200_000);
        assert_eq!(windows.of("openai/gpt-4.1-mini"), 1_047_576);
        assert_eq!(windows.of("meta-llama/llama-3-70b"), 128_000);
    }
}
