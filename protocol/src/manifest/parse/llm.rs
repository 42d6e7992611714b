//! The `llm` section: one model, or named options with a default, and retry policies.

use std::collections::BTreeMap;

use super::super::names::is_credential_name;
use super::super::reader::{Fields, OptionalField, Reader, child, describe};
use super::super::yaml::Node;
use super::super::{Llm, LlmOption, LlmProvider, RetryPolicy};

const LLM_FIELDS: &[&str] = &["provider", "model", "base_url", "api_key_secret", "retry_policy", "options", "default"];
const OPTION_FIELDS: &[&str] = &["provider", "model", "base_url", "api_key_secret", "retry_policy"];
const RETRY_POLICY_FIELDS: &[&str] =
    &["maximum_attempts", "initial_interval_seconds", "backoff_coefficient", "maximum_interval_seconds"];
/// The option id that the single-model form is stored under.
pub(crate) const SINGLE_OPTION_ID: &str = "default";

pub(crate) fn read_llm(reader: &mut Reader<'_>, node: &Node) -> Option<Llm> {
    let fields = reader.map(node, "llm", LLM_FIELDS)?;
    let Some(options_node) = fields.get("options") else {
        if let Some(default) = fields.get("default") {
            let hint = "add llm.options with named models, or remove llm.default".to_owned();
            reader.error("llm.default", Some(default.pos), "llm.default needs llm.options", hint);
            return None;
        }
        let option = read_option(reader, &fields)?;
        let options = BTreeMap::from([(SINGLE_OPTION_ID.to_owned(), option)]);
        return Some(Llm { default: SINGLE_OPTION_ID.to_owned(), options });
    };

    // Named options: the single-model fields would be ambiguous beside them.
    let mut valid = true;
    for key in ["provider", "model", "base_url", "api_key_secret"] {
        if fields.has(key) {
            let message = format!("llm.{key} cannot be combined with llm.options");
            let hint = format!("move {key} into each entry of llm.options");
            reader.error(&fields.path_of(key), fields.key_pos(key), message, hint);
            valid = false;
        }
    }
    let shared_policy = match fields.get("retry_policy") {
        Some(node) => read_retry_policy(reader, node, "llm.retry_policy").map(Some),
        None => Some(None),
    };
    let entries = reader.named_map(options_node, "llm.options")?;
    if entries.is_empty() {
        reader.error(
            "llm.options",
            Some(options_node.pos),
            "must name at least one model",
            "add an option such as fast: {model: openai/gpt-4.1-mini}",
        );
        return None;
    }
    let mut options = BTreeMap::new();
    for (key, option_node) in entries {
        let path = child("llm.options", &key.text);
        if !is_option_id(&key.text) {
            let hint = "use letters, digits, `-`, `_` and `.`, at most 64 characters".to_owned();
            reader.error(&path, Some(key.pos), format!("invalid option id `{}`", key.text), hint);
            valid = false;
        }
        let option =
            reader.map(option_node, &path, OPTION_FIELDS).and_then(|option_fields| read_option(reader, &option_fields));
        match option {
            Some(mut option) => {
                if option.retry_policy.is_none() {
                    option.retry_policy = shared_policy.clone().flatten();
                }
                options.insert(key.text.clone(), option);
            }
            None => valid = false,
        }
    }
    let default = match fields.get("default") {
        None => {
            reader.missing(&fields, "default", "name the option sessions use when they pass no llm_id");
            None
        }
        Some(default_node) => reader.string(default_node, "llm.default").and_then(|default| {
            if entries.iter().any(|(key, _)| key.text == default) {
                return Some(default);
            }
            let ids: Vec<&str> = entries.iter().map(|(key, _)| key.text.as_str()).collect();
            let message = format!("{} is not a key of llm.options", describe(default_node));
            reader.error("llm.default", Some(default_node.pos), message, format!("choose one of: {}", ids.join(", ")));
            None
        }),
    };
    let default = default?;
    shared_policy?;
    valid.then_some(Llm { default, options })
}

fn read_option(reader: &mut Reader<'_>, fields: &Fields<'_>) -> Option<LlmOption> {
    let model = fields
        .required(reader, "model", "name the model, e.g. model: openai/gpt-4.1-mini")
        .and_then(|node| reader.text(node, &fields.path_of("model")));
    let provider = match fields.get("provider") {
        None => model.as_deref().map(infer_provider),
        Some(node) => {
            let path = fields.path_of("provider");
            reader.string(node, &path).and_then(|provider| match provider.as_str() {
                "openai" => Some(LlmProvider::Openai),
                "anthropic" => Some(LlmProvider::Anthropic),
                "openrouter" => Some(LlmProvider::Openrouter),
                _ => {
                    let hint =
                        "use openai, anthropic or openrouter; leave it out to infer it from the model".to_owned();
                    reader.error(&path, Some(node.pos), format!("unknown provider {}", describe(node)), hint);
                    None
                }
            })
        }
    };
    let base_url = fields.get("base_url").and_then(|node| {
        let path = fields.path_of("base_url");
        let url = reader.text(node, &path)?;
        if (url.starts_with("https://") || url.starts_with("http://")) && !url.contains(char::is_whitespace) {
            return Some(url);
        }
        let hint = "write an absolute http(s) URL, e.g. https://openrouter.ai/api/v1".to_owned();
        reader.error(&path, Some(node.pos), format!("{} is not an http(s) URL", describe(node)), hint);
        None
    });
    let api_key_secret =
        fields.get("api_key_secret").map(|node| read_credential_name(reader, node, &fields.path_of("api_key_secret")));
    let retry_policy =
        fields.get("retry_policy").map(|node| read_retry_policy(reader, node, &fields.path_of("retry_policy")));
    if fields.has("base_url") && base_url.is_none() {
        return None;
    }
    Some(LlmOption {
        provider: provider?,
        model: model?,
        base_url,
        api_key_secret: api_key_secret.valid()?,
        retry_policy: retry_policy.valid()?,
    })
}

/// `openai/…` is OpenAI, `anthropic/…` is Anthropic, anything else goes through OpenRouter.
pub fn infer_provider(model: &str) -> LlmProvider {
    if model.starts_with("openai/") {
        LlmProvider::Openai
    } else if model.starts_with("anthropic/") {
        LlmProvider::Anthropic
    } else {
        LlmProvider::Openrouter
    }
}

pub(crate) fn read_retry_policy(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<RetryPolicy> {
    let fields = reader.map(node, path, RETRY_POLICY_FIELDS)?;
    let int = |reader: &mut Reader<'_>, key: &str| {
        fields.get(key).map(|node| reader.positive_int(node, &fields.path_of(key)))
    };
    let maximum_attempts = int(reader, "maximum_attempts");
    let initial = int(reader, "initial_interval_seconds");
    let maximum = int(reader, "maximum_interval_seconds");
    let coefficient = fields.get("backoff_coefficient").map(|node| {
        let path = fields.path_of("backoff_coefficient");
        let value = reader.number(node, &path)?;
        if value < 1.0 {
            let hint = "use 1 for a constant interval, or more to back off".to_owned();
            reader.error(&path, Some(node.pos), format!("must be at least 1, found {value}"), hint);
            return None;
        }
        Some(value)
    });
    if let (Some(Some(initial)), Some(Some(maximum))) = (initial, maximum)
        && maximum < initial
    {
        let message = format!("must be at least initial_interval_seconds ({initial}), found {maximum}");
        let pos = fields.get("maximum_interval_seconds").map(|node| node.pos);
        reader.error(
            &fields.path_of("maximum_interval_seconds"),
            pos,
            message,
            "raise maximum_interval_seconds, or lower initial_interval_seconds",
        );
        return None;
    }
    Some(RetryPolicy {
        maximum_attempts: maximum_attempts.valid()?,
        initial_interval_seconds: initial.valid()?,
        backoff_coefficient: coefficient.valid()?,
        maximum_interval_seconds: maximum.valid()?,
    })
}

pub(crate) fn read_credential_name(reader: &mut Reader<'_>, node: &Node, path: &str) -> Option<String> {
    let name = reader.string(node, path)?;
    if is_credential_name(&name) {
        return Some(name);
    }
    let message = format!("invalid credential name {}", describe(node));
    let hint = "credential names are upper-case letters, digits and _, not starting with a digit (e.g. OPENAI_API_KEY)";
    reader.error(path, Some(node.pos), message, hint.to_owned());
    None
}

fn is_option_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
}
