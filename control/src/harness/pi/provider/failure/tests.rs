use reqwest::header::HeaderValue;
use serde_json::json;

use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(*name, HeaderValue::from_str(value).expect("a valid header value"));
    }
    headers
}

#[track_caller]
fn check_http(status: u16, body: &str, expect_kind: ModelErrorKind, expect_message: &str) {
    let status = StatusCode::from_u16(status).expect("a valid status");
    let error = http_error("OpenAI", status, &HeaderMap::new(), body.as_bytes());
    assert_eq!((error.kind, error.message.as_str()), (expect_kind, expect_message), "{body}");
    assert_eq!(error.status, Some(status.as_u16()));
    assert_eq!(error.body.as_deref(), (!body.is_empty()).then_some(body));
}

#[test]
fn statuses_and_bodies_say_what_kind_of_failure_it_was() {
    use ModelErrorKind::*;
    let openai_401 = r#"{"error":{"message":"Incorrect API key provided: sk-abc***def.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    check_http(
        401,
        openai_401,
        Rejected,
        "OpenAI returned 401 Unauthorized: Incorrect API key provided: sk-abc***def.",
    );
    check_http(
        429,
        r#"{"error":{"message":"Slow down"}}"#,
        RateLimited,
        "OpenAI returned 429 Too Many Requests: Slow down",
    );
    check_http(500, "", ServerError, "OpenAI returned 500 Internal Server Error");
    check_http(
        529,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ServerError,
        "OpenAI returned 529: Overloaded",
    );
    check_http(408, "", Timeout, "OpenAI returned 408 Request Timeout");
    check_http(404, r#"{"detail":"Not Found"}"#, Rejected, "OpenAI returned 404 Not Found: Not Found");
    check_http(502, "upstream connect error", ServerError, "OpenAI returned 502 Bad Gateway: upstream connect error");
    check_http(502, "<html><body>Bad gateway</body></html>", ServerError, "OpenAI returned 502 Bad Gateway");
    check_http(400, r#"{"error":"model not loaded"}"#, Rejected, "OpenAI returned 400 Bad Request: model not loaded");
}

#[test]
fn context_overflow_is_recognised_by_what_the_provider_says() {
    use ModelErrorKind::ContextOverflow;
    check_http(
        400,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
        ContextOverflow,
        "OpenAI returned 400 Bad Request: prompt is too long: 210000 tokens > 200000 maximum",
    );
    check_http(
        400,
        r#"{"error":{"message":"Your input exceeds the context window of this model.","code":"context_length_exceeded"}}"#,
        ContextOverflow,
        "OpenAI returned 400 Bad Request: Your input exceeds the context window of this model.",
    );
    // OpenRouter wraps the upstream error; its words are found in the raw metadata.
    check_http(
        400,
        r#"{"error":{"code":400,"message":"Provider returned error","metadata":{"raw":"This model's maximum context length is 8192 tokens"}}}"#,
        ContextOverflow,
        "OpenAI returned 400 Bad Request: Provider returned error",
    );
}

#[test]
fn the_error_body_is_kept_up_to_2_kb_on_a_character_boundary() {
    let body = format!("{{\"message\":\"{}\"}}", "é".repeat(2000));
    let error = http_error("Anthropic", StatusCode::BAD_REQUEST, &HeaderMap::new(), body.as_bytes());
    let kept = error.body.expect("a body");
    assert!(kept.len() <= MAX_ERROR_BODY_BYTES && kept.len() > MAX_ERROR_BODY_BYTES - 2, "{}", kept.len());
    assert!(error.message.ends_with('…') && error.message.chars().count() < 250, "{}", error.message);
}

#[test]
fn retry_after_is_read_in_seconds_milliseconds_or_as_a_date() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
    let check = |pairs: &[(&'static str, &str)]| retry_after(&headers(pairs), now);
    assert_eq!(check(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
    assert_eq!(check(&[("retry-after", " 1.5 ")]), Some(Duration::from_millis(1500)));
    assert_eq!(check(&[("retry-after", "7"), ("retry-after-ms", "250")]), Some(Duration::from_millis(250)));
    assert_eq!(check(&[("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT")]), Some(Duration::from_secs(30)));
    assert_eq!(check(&[("retry-after", "Sun, 06 Nov 1994 08:49:00 GMT")]), Some(Duration::ZERO));
    assert_eq!(
        check(&[("retry-after", "Tue, 29 Feb 2028 23:59:59 GMT")]),
        Some(Duration::from_secs(1_835_481_599 - 784_111_777))
    );
    assert_eq!(check(&[("retry-after", "soon")]), None);
    assert_eq!(check(&[("retry-after", "-3")]), None);
    assert_eq!(check(&[("retry-after", "Sun, 06 Nov 1994 25:49:37 GMT")]), None);
    assert_eq!(check(&[]), None);
}

#[track_caller]
fn check_stream(error: Value, expect_kind: ModelErrorKind, expect_message: &str) {
    let data = json!({ "error": error }).to_string();
    let model_error = stream_error("Anthropic", &error, &data);
    assert_eq!((model_error.kind, model_error.message.as_str()), (expect_kind, expect_message), "{error}");
    assert_eq!(model_error.body.as_deref(), Some(data.as_str()));
}

#[test]
fn stream_errors_are_classified_by_type_and_code() {
    use ModelErrorKind::*;
    check_stream(
        json!({"type": "overloaded_error", "message": "Overloaded"}),
        ServerError,
        "Anthropic reported an error: Overloaded",
    );
    check_stream(
        json!({"type": "rate_limit_error", "message": "Slow"}),
        RateLimited,
        "Anthropic reported an error: Slow",
    );
    check_stream(
        json!({"type": "invalid_request_error", "message": "prompt is too long"}),
        ContextOverflow,
        "Anthropic reported an error: prompt is too long",
    );
    check_stream(
        json!({"type": "invalid_request_error", "message": "bad"}),
        Rejected,
        "Anthropic reported an error: bad",
    );
    check_stream(
        json!({"type": "api_error", "message": "Internal"}),
        ServerError,
        "Anthropic reported an error: Internal",
    );
    check_stream(
        json!({"code": 502, "message": "Upstream died"}),
        ServerError,
        "Anthropic reported an error: Upstream died",
    );
    check_stream(json!({"code": 429}), RateLimited, "Anthropic reported an error");
    check_stream(
        json!({"code": "context_length_exceeded", "message": "too big"}),
        ContextOverflow,
        "Anthropic reported an error: too big",
    );
    check_stream(json!({"code": 400, "message": "no"}), Rejected, "Anthropic reported an error: no");
}

#[test]
fn text_is_cut_and_quoted_on_character_boundaries() {
    assert_eq!(truncate("héllo", 2), "h");
    assert_eq!(truncate("héllo", 3), "hé");
    assert_eq!(truncate("héllo", 30), "héllo");
    assert_eq!(quote(&"x".repeat(MAX_QUOTE_CHARS)), "x".repeat(MAX_QUOTE_CHARS));
    assert_eq!(quote(&"é".repeat(MAX_QUOTE_CHARS + 1)), format!("{}…", "é".repeat(MAX_QUOTE_CHARS)));
}

#[test]
fn the_key_is_scrubbed_from_whatever_the_provider_quotes() {
    let mut error = ModelError::new(ModelErrorKind::Rejected, "bad key sk-secret-1234 given");
    error.body = Some(r#"{"echo":"Bearer sk-secret-1234"}"#.to_owned());
    let error = redact_error(error, &ApiKey::new("sk-secret-1234"));
    assert_eq!(error.message, "bad key [redacted] given");
    assert_eq!(error.body.as_deref(), Some(r#"{"echo":"Bearer [redacted]"}"#));
    // An empty key redacts nothing (rather than everything between characters).
    assert_eq!(redact_error(ModelError::new(ModelErrorKind::Rejected, "ab"), &ApiKey::new("")).message, "ab");
}
