//! Reading tool arguments: models send strings for numbers and extra fields; we accept the first
//! and ignore the second, and name the argument at fault otherwise.

use serde::de::DeserializeOwned;

use super::ToolError;

/// Deserializes a tool's arguments, with an error that names the tool and the problem.
pub(crate) fn parse<T: DeserializeOwned>(tool: &str, arguments: serde_json::Value) -> Result<T, ToolError> {
    serde_json::from_value(arguments).map_err(|error| ToolError(format!("invalid arguments for {tool}: {error}")))
}

/// Serde helpers for optional whole numbers that a model may send as `"10"`.
pub(crate) mod lenient_u64 {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Number {
            Int(u64),
            Float(f64),
            Text(String),
        }
        match Option::<Number>::deserialize(deserializer)? {
            None => Ok(None),
            Some(Number::Int(value)) => Ok(Some(value)),
            Some(Number::Float(value)) if value >= 0.0 && value.fract() == 0.0 && value <= u64::MAX as f64 => {
                Ok(Some(value as u64))
            }
            Some(Number::Float(value)) => {
                Err(serde::de::Error::custom(format!("expected a whole number, got {value}")))
            }
            Some(Number::Text(text)) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("expected a whole number, got {text:?}"))),
        }
    }
}

/// Serde helpers for optional flags that a model may send as `"true"` or `"false"`.
pub(crate) mod lenient_bool {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Flag {
            Bool(bool),
            Text(String),
        }
        match Option::<Flag>::deserialize(deserializer)? {
            None => Ok(None),
            Some(Flag::Bool(value)) => Ok(Some(value)),
            Some(Flag::Text(text)) => match text.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" | "" => Ok(Some(false)),
                _ => Err(serde::de::Error::custom(format!("expected true or false, got {text:?}"))),
            },
        }
    }
}
