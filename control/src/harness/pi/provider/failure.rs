//! How a failed model call becomes a [`ModelError`]: the HTTP status and body of a refused
//! request, an error event in the middle of a stream, or a connection that broke.
//!
//! Every message starts with who failed ("OpenAI returned 401 Unauthorized: …") and carries the
//! provider's own words where it sent some. None of them echoes the request: the API key is only
//! ever in a header, and [`redact_error`] scrubs it from whatever the provider sends back, should
//! it quote it.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::harness::pi::model::{ApiKey, ModelError, ModelErrorKind};

/// How much of an error body a [`ModelError`] keeps, for `output.error.details`.
pub const MAX_ERROR_BODY_BYTES: usize = 2048;

/// How much of an unexpected payload a message quotes.
pub const MAX_QUOTE_CHARS: usize = 200;

/// Lower-case phrases by which providers say that the prompt does not fit the context window
/// (after pi's `utils/overflow.ts`).
const CONTEXT_OVERFLOW_PHRASES: [&str; 10] = [
    "prompt is too long",
    "input is too long for requested model",
    "exceeds the context window",
    "maximum context length",
    "context_length_exceeded",
    "context length exceeded",
    "reduce the length of the messages",
    "exceeds the available context size",
    "greater than the context length",
    "context window exceeds limit",
];

/// The provider answered `status` instead of streaming: `body` is what it said, as far as read.
pub fn http_error(label: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ModelError {
    let body_text = String::from_utf8_lossy(body);
    let parsed: Option<Value> = serde_json::from_str(&body_text).ok();
    let kind = match status.as_u16() {
        429 => ModelErrorKind::RateLimited,
        408 => ModelErrorKind::Timeout,
        500..=599 => ModelErrorKind::ServerError,
        _ if is_context_overflow(&body_text) => ModelErrorKind::ContextOverflow,
        400..=499 => ModelErrorKind::Rejected,
        // A 1xx or 3xx where a stream was due: nothing a retry would change.
        _ => ModelErrorKind::BadResponse,
    };
    let mut message = match status.canonical_reason() {
        Some(reason) => format!("{label} returned {} {reason}", status.as_u16()),
        None => format!("{label} returned {}", status.as_u16()),
    };
    let provider_words = parsed.as_ref().and_then(provider_message).or_else(|| plain_text_message(&body_text));
    if let Some(words) = provider_words {
        message = format!("{message}: {words}");
    }
    ModelError {
        kind,
        message,
        status: Some(status.as_u16()),
        retry_after: retry_after(headers, SystemTime::now()),
        body: (!body_text.is_empty()).then(|| truncate(&body_text, MAX_ERROR_BODY_BYTES).to_owned()),
    }
}

/// The stream carried an error (`data` is the whole event) instead of more answer. OpenAI-style
/// error objects have `code` and `type`, Anthropic's `type`; both have `message`. Some servers
/// send a bare string.
pub fn stream_error(label: &str, error: &Value, data: &str) -> ModelError {
    let words = match error {
        Value::String(message) => Some(quote(message)),
        error => error.get("message").and_then(Value::as_str).map(quote),
    };
    let type_and_code = [error.get("type"), error.get("code")]
        .into_iter()
        .flatten()
        .filter_map(|field| match field {
            Value::String(text) => Some(text.to_ascii_lowercase()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ");
    let kind = if type_and_code.contains("rate_limit") || type_and_code.contains("429") {
        ModelErrorKind::RateLimited
    } else if is_context_overflow(&type_and_code) || is_context_overflow(data) {
        ModelErrorKind::ContextOverflow
    } else if ["invalid_request", "authentication", "permission", "not_found", "request_too_large", "invalid_api_key"]
        .iter()
        .any(|rejected| type_and_code.contains(rejected))
        || type_and_code.split(' ').any(|code| code.len() == 3 && code.starts_with('4'))
    {
        ModelErrorKind::Rejected
    } else {
        // `overloaded_error`, `api_error`, `server_error`, 5xx codes, and anything unknown: the
        // provider failed while answering, which another attempt may not.
        ModelErrorKind::ServerError
    };
    let mut message = format!("{label} reported an error");
    if let Some(words) = words.filter(|words| !words.is_empty()) {
        message = format!("{message}: {words}");
    }
    ModelError {
        kind,
        message,
        status: None,
        retry_after: None,
        body: Some(truncate(data, MAX_ERROR_BODY_BYTES).to_owned()),
    }
}

/// The JSON of one streamed event; data that is not JSON is quoted in the error.
pub fn parse_event(label: &str, data: &str) -> Result<Value, ModelError> {
    serde_json::from_str(data).map_err(|error| {
        let message = format!("{label} sent an event that is not JSON ({error}): {}", quote(data));
        ModelError::new(ModelErrorKind::BadResponse, message)
    })
}

/// The body ended before the stream said that the answer is complete.
pub fn ended_early(label: &str) -> ModelError {
    ModelError::new(ModelErrorKind::Connection, format!("the stream from {label} ended before the answer did"))
}

/// reqwest failed to send the request or to read the body: `doing` says which, as in
/// "could not reach OpenAI". The URL is left out: a custom base URL may carry credentials.
pub fn transport_error(doing: &str, error: reqwest::Error) -> ModelError {
    let kind = if error.is_timeout() { ModelErrorKind::Timeout } else { ModelErrorKind::Connection };
    let error = error.without_url();
    let mut message = format!("{doing}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    ModelError::new(kind, message)
}

/// Whether an error text says the prompt does not fit the model's context window.
pub fn is_context_overflow(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    CONTEXT_OVERFLOW_PHRASES.iter().any(|phrase| text.contains(phrase))
}

/// `error` without the key in its message or body, should a provider or a proxy quote it back.
pub fn redact_error(mut error: ModelError, key: &ApiKey) -> ModelError {
    let key = key.expose();
    if !key.is_empty() {
        error.message = error.message.replace(key, "[redacted]");
        error.body = error.body.map(|body| body.replace(key, "[redacted]"));
    }
    error
}

/// The start of `text`, at most `max_bytes` long, cut on a character boundary.
pub fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The start of an unexpected payload, for a message: at most [`MAX_QUOTE_CHARS`] characters.
pub fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// How long the provider asks us to wait: `retry-after-ms` (OpenAI's), else `retry-after` as
/// seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    if let Some(millis) = header("retry-after-ms").and_then(|value| value.parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(millis / 1000.0).ok();
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let date = parse_http_date(value)?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The provider's own message in a JSON error body: `error.message` (OpenAI, Anthropic,
/// OpenRouter), or a bare `error`, `message` or `detail` string (other compatible servers).
fn provider_message(body: &Value) -> Option<String> {
    let candidates = [&body["error"]["message"], &body["error"], &body["message"], &body["detail"]];
    let message = candidates.into_iter().find_map(Value::as_str)?.trim();
    (!message.is_empty()).then(|| quote(message))
}

/// A short plain-text body is its own message; HTML pages and long texts stay in `body`.
fn plain_text_message(body: &str) -> Option<String> {
    let body = body.trim();
    let is_short_text = !body.is_empty() && !body.starts_with('<') && !body.starts_with('{') && !body.contains('\n');
    (is_short_text && body.chars().count() <= MAX_QUOTE_CHARS).then(|| body.to_owned())
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only date format `retry-after` uses in
/// practice.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = fields.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|name| name == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let mut clock = time.split(':').map(|part| part.parse::<i64>().ok());
    let (Some(Some(hours)), Some(Some(minutes)), Some(Some(seconds)), None) =
        (clock.next(), clock.next(), clock.next(), clock.next())
    else {
        return None;
    };
    // Years past 9999 are no date a server means, and would overflow the arithmetic below.
    if !(1..=31).contains(&day)
        || !(1970..=9999).contains(&year)
        || !(0..=23).contains(&hours)
        || !(0..=59).contains(&minutes)
        || !(0..=60).contains(&seconds)
    {
        return None;
    }
    let seconds_since_epoch = days_from_civil(year, month, day) * 86_400 + hours * 3600 + minutes * 60 + seconds;
    let seconds_since_epoch = u64::try_from(seconds_since_epoch).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds_since_epoch))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests;
