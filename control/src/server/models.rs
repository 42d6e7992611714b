//! The server's flags for the managed pi harness: the providers' endpoints and platform keys,
//! the models' context windows, and the guards on a message's loop.

use std::time::Duration;

use clap::Args;

use crate::harness::pi::model::ApiKey;
use crate::harness::pi::settings::{PiSettings, ProviderName};

pub const ENV_OPENAI_BASE_URL: &str = "DARI_OPENAI_BASE_URL";
pub const ENV_ANTHROPIC_BASE_URL: &str = "DARI_ANTHROPIC_BASE_URL";
pub const ENV_OPENROUTER_BASE_URL: &str = "DARI_OPENROUTER_BASE_URL";
pub const ENV_MODEL_CONTEXT_WINDOW: &str = "DARI_MODEL_CONTEXT_WINDOW";
pub const ENV_PI_MAX_MODEL_TURNS: &str = "DARI_PI_MAX_MODEL_TURNS";
pub const ENV_PI_MESSAGE_TIMEOUT: &str = "DARI_PI_MESSAGE_TIMEOUT";
pub const ENV_PI_STREAM_IDLE_TIMEOUT: &str = "DARI_PI_STREAM_IDLE_TIMEOUT";

#[derive(Clone, Debug, Args)]
pub struct ModelArgs {
    /// OpenAI's API base URL (a proxy or gateway); default https://api.openai.com/v1.
    #[arg(long, env = ENV_OPENAI_BASE_URL)]
    pub openai_base_url: Option<String>,
    /// Anthropic's API base URL; default https://api.anthropic.com.
    #[arg(long, env = ENV_ANTHROPIC_BASE_URL)]
    pub anthropic_base_url: Option<String>,
    /// OpenRouter's API base URL; default https://openrouter.ai/api/v1.
    #[arg(long, env = ENV_OPENROUTER_BASE_URL)]
    pub openrouter_base_url: Option<String>,
    /// A model's context window in tokens (`MODEL=TOKENS`, the model as dari.yml writes it), for
    /// models the server does not know. Repeatable; one per line in the variable.
    #[arg(long = "model-context-window", env = ENV_MODEL_CONTEXT_WINDOW, value_name = "MODEL=TOKENS", value_delimiter = '\n')]
    pub model_context_window: Vec<String>,
    /// Model answers one message may take before it fails with `turn_limit`.
    #[arg(long, env = ENV_PI_MAX_MODEL_TURNS, default_value_t = 100)]
    pub pi_max_model_turns: u32,
    /// How long one message of a pi agent may run before it fails with `message_timeout`.
    #[arg(long, env = ENV_PI_MESSAGE_TIMEOUT, default_value = "1h", value_parser = humantime::parse_duration)]
    pub pi_message_timeout: Duration,
    /// A model call that sends nothing for this long fails (and is retried).
    #[arg(long, env = ENV_PI_STREAM_IDLE_TIMEOUT, default_value = "120s", value_parser = humantime::parse_duration)]
    pub pi_stream_idle_timeout: Duration,
}

impl ModelArgs {
    /// The harness's settings; the platform keys come from `OPENAI_API_KEY`,
    /// `ANTHROPIC_API_KEY` and `OPENROUTER_API_KEY` (never from flags, which `ps` shows).
    pub fn settings(&self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<PiSettings> {
        anyhow::ensure!(self.pi_max_model_turns > 0, "--pi-max-model-turns must be at least 1");
        anyhow::ensure!(!self.pi_message_timeout.is_zero(), "--pi-message-timeout must be longer than zero");
        anyhow::ensure!(!self.pi_stream_idle_timeout.is_zero(), "--pi-stream-idle-timeout must be longer than zero");
        let mut settings = PiSettings {
            max_model_turns: self.pi_max_model_turns,
            message_timeout: self.pi_message_timeout,
            stream_idle_timeout: self.pi_stream_idle_timeout,
            ..PiSettings::default()
        };
        let urls = [
            (ProviderName::Openai, "--openai-base-url", &self.openai_base_url),
            (ProviderName::Anthropic, "--anthropic-base-url", &self.anthropic_base_url),
            (ProviderName::Openrouter, "--openrouter-base-url", &self.openrouter_base_url),
        ];
        for (provider, flag, url) in urls {
            let Some(url) = url.as_deref().filter(|url| !url.is_empty()) else { continue };
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "{flag} {url:?} must start with http:// or https://"
            );
            settings.base_urls.insert(provider, url.trim_end_matches('/').to_owned());
        }
        for provider in [ProviderName::Openai, ProviderName::Anthropic, ProviderName::Openrouter] {
            if let Some(key) = env(provider.key_variable()).filter(|key| !key.is_empty()) {
                settings.platform_keys.insert(provider, ApiKey::new(key));
            }
        }
        for entry in self.model_context_window.iter().map(|entry| entry.trim()).filter(|entry| !entry.is_empty()) {
            let parsed = entry
                .rsplit_once('=')
                .and_then(|(model, tokens)| Some((model.trim(), tokens.trim().parse::<u64>().ok()?)))
                .filter(|(model, tokens)| !model.is_empty() && *tokens >= 1_000);
            let Some((model, tokens)) = parsed else {
                anyhow::bail!(
                    "--model-context-window ({ENV_MODEL_CONTEXT_WINDOW}) takes MODEL=TOKENS with at least 1000 tokens, e.g. openai/gpt-4.1-mini=1047576; got {entry:?}"
                );
            };
            settings.context_windows.overrides.insert(model.to_owned(), tokens);
        }
        Ok(settings)
    }
}
