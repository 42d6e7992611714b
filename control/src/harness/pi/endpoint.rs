//! Which model a session talks to, where, and with which key.
//!
//! The option is the session's `llm_id`, else `llm.default`. The key is, in order: the session's
//! own `llm_api_key`; the organization's credential named by the option's `api_key_secret`; the
//! platform's key for the provider (`OPENAI_API_KEY`, … in the server's environment), unless the
//! option names its own `base_url`. Keys go only into the request to the provider: never into the
//! sandbox, an event, a log or an error.

use dari_protocol::manifest::{Llm, LlmOption, RetryPolicy};
use serde_json::{Value, json};

use super::model::{ApiKey, Endpoint};
use super::provider::{default_base_url, upstream_model};
use super::settings::{PiSettings, ProviderName};
use crate::harness::secrets::SandboxSecrets;
use crate::persistence::{SessionRecord, TurnError};

/// The model a message's turn uses.
#[derive(Clone, Debug)]
pub struct ModelChoice {
    /// The `llm.options` key.
    pub option_id: String,
    /// As written in `dari.yml`.
    pub model: String,
    /// As the endpoint expects it.
    pub upstream_model: String,
    pub endpoint: Endpoint,
    pub retry_policy: Option<RetryPolicy>,
    pub context_window: u64,
}

impl ModelChoice {
    /// What `output.error.details` says of the model.
    pub fn describe(&self) -> Value {
        json!({"llm_id": self.option_id, "provider": ProviderName::from(self.endpoint.provider).as_str(), "model": self.model})
    }
}

/// Chooses the session's model and opens its key.
pub async fn choose(
    settings: &PiSettings,
    secrets: &SandboxSecrets,
    session: &SessionRecord,
    llm: Option<&Llm>,
) -> Result<ModelChoice, TurnError> {
    let Some(llm) = llm else {
        return Err(TurnError::new(
            "llm_not_configured",
            "the agent's dari.yml has no `llm` section, which `harness: pi` needs: add `llm: {model: …}` and deploy again",
            Value::Null,
        ));
    };
    let option_id = session.llm_id.clone().unwrap_or_else(|| llm.default.clone());
    let Some(option) = llm.options.get(&option_id) else {
        let known: Vec<&str> = llm.options.keys().map(String::as_str).collect();
        return Err(TurnError::new(
            "llm_not_configured",
            format!("the session's llm_id {option_id:?} is not one of the agent's llm.options ({})", known.join(", ")),
            Value::Null,
        ));
    };
    let provider = ProviderName::from(option.provider);
    let api_key = api_key(settings, secrets, session, option, provider).await?;
    let base_url = option
        .base_url
        .clone()
        .or_else(|| settings.base_urls.get(&provider).cloned())
        .unwrap_or_else(|| default_base_url(option.provider).to_owned());
    Ok(ModelChoice {
        option_id,
        model: option.model.clone(),
        upstream_model: upstream_model(option.provider, &option.model, option.base_url.is_some()),
        endpoint: Endpoint { provider: option.provider, base_url: base_url.trim_end_matches('/').to_owned(), api_key },
        retry_policy: option.retry_policy.clone(),
        context_window: settings.context_windows.of(&option.model),
    })
}

async fn api_key(
    settings: &PiSettings,
    secrets: &SandboxSecrets,
    session: &SessionRecord,
    option: &LlmOption,
    provider: ProviderName,
) -> Result<ApiKey, TurnError> {
    let unreadable = |error: anyhow::Error| {
        TurnError::new("internal_error", format!("open the model's API key: {error:#}"), Value::Null)
    };
    if let Some(key) = secrets.session_llm_api_key(session).await.map_err(unreadable)? {
        return Ok(ApiKey::new(key));
    }
    if let Some(name) = &option.api_key_secret {
        return match secrets.credential(&session.org_id, name).await.map_err(unreadable)? {
            Some(key) => Ok(ApiKey::new(key)),
            None => Err(TurnError::new(
                "llm_key_missing",
                format!(
                    "llm.api_key_secret names the credential {name}, which this organization does not have: store it with `dari credentials add {name}`, or pass llm_api_key when creating the session"
                ),
                json!({"credential": name}),
            )),
        };
    }
    // The platform's keys go to the platform's endpoints only: an agent's own base_url could
    // otherwise collect them.
    if option.base_url.is_some() {
        return Err(TurnError::new(
            "llm_key_missing",
            "llm.base_url names the agent's own endpoint, which never gets the platform's keys: set llm.api_key_secret to a stored credential, or pass llm_api_key when creating the session",
            json!({"provider": provider.as_str()}),
        ));
    }
    if let Some(key) = settings.platform_keys.get(&provider) {
        return Ok(key.clone());
    }
    Err(TurnError::new(
        "llm_key_missing",
        format!(
            "no API key for {}: set llm.api_key_secret to a stored credential, pass llm_api_key when creating the session, or start the server with {} set",
            provider.as_str(),
            provider.key_variable()
        ),
        json!({"provider": provider.as_str()}),
    ))
}
