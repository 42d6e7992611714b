//! The headers control adds to an advance (`Dari-Protocol`, `Dari-Session-Id`, ...), checked
//! before they reach the HTTP client so that a bad one is the caller's error, not the runtime's.

use std::collections::BTreeMap;

/// The most headers one advance may carry.
pub const MAX_HEADERS: usize = 32;
/// The longest header value, in bytes.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
/// The longest header name, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// Headers the daemon sets itself, or that would change how the request is framed.
const RESERVED: [&str; 7] =
    ["host", "content-type", "content-length", "transfer-encoding", "connection", "accept", "upgrade"];

/// Checks `headers` and returns them as pairs for the request; the message names the header.
pub fn check(headers: &BTreeMap<String, String>) -> Result<Vec<(&str, &str)>, String> {
    if headers.len() > MAX_HEADERS {
        return Err(format!("{} headers is over the limit of {MAX_HEADERS} for one advance", headers.len()));
    }
    let mut pairs = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.bytes().all(is_token_byte) {
            return Err(format!(
                "header name {name:?} is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~, at most {MAX_NAME_BYTES} bytes)"
            ));
        }
        if RESERVED.iter().any(|reserved| name.eq_ignore_ascii_case(reserved)) {
            return Err(format!("header {name} is set by sandboxd and cannot be given"));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!("the value of header {name} is over the limit of {MAX_VALUE_BYTES} bytes"));
        }
        // CR and LF would end the header early; other control characters (but tab) are not
        // allowed in a field value either.
        if value.bytes().any(|byte| (byte < 0x20 && byte != b'\t') || byte == 0x7f) {
            return Err(format!("the value of header {name} holds a line break or another control character"));
        }
        pairs.push((name.as_str(), value.as_str()));
    }
    Ok(pairs)
}

/// `tchar` of RFC 9110.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_one(name: &str, value: &str, accepted: bool) {
        let headers = BTreeMap::from([(name.to_owned(), value.to_owned())]);
        assert_eq!(check(&headers).is_ok(), accepted, "{name:?}: {value:?} -> {:?}", check(&headers));
    }

    #[test]
    fn accepts_control_headers_and_refuses_bad_ones() {
        check_one("Dari-Protocol", "dari-runtime-v1", true);
        check_one("Idempotency-Key", "msg_1:1", true);
        check_one("X-Tab", "a\tb", true);
        check_one("Bad Name", "x", false);
        check_one("", "x", false);
        check_one("Bad:Name", "x", false);
        check_one("X-Injected", "a\r\nEvil: yes", false);
        check_one("X-Newline", "a\nb", false);
        check_one("Content-Type", "text/plain", false);
        check_one("host", "evil", false);
        check_one("X-Long", &"v".repeat(MAX_VALUE_BYTES + 1), false);
        let many: BTreeMap<String, String> =
            (0..=MAX_HEADERS).map(|index| (format!("X-{index}"), "v".to_owned())).collect();
        assert!(check(&many).unwrap_err().contains("limit of 32"));
    }
}
