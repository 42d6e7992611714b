//! Resource ids in Dari's style: a type prefix and a random, time-ordered body (`agt_…`,
//! `sess_…`, `msg_…`).
//!
//! The body is a ULID in lower-case Crockford base32: 48 bits of milliseconds, then 80 random
//! bits. Ids made later sort later, so "oldest first" is an index scan, and they are unguessable.
//! Within one millisecond a process makes them monotonic (the next id is the last one plus one,
//! as ULID's monotonic mode does), so that order holds for ids made in the same millisecond too.

use std::sync::{Mutex, PoisonError};

use crate::persistence::now_millis;

/// The prefixes, one per kind of resource.
pub mod prefix {
    pub const ORGANIZATION: &str = "org";
    pub const API_KEY: &str = "key";
    pub const SOURCE_SNAPSHOT: &str = "snap";
    pub const AGENT: &str = "agt";
    pub const VERSION: &str = "ver";
    pub const SESSION: &str = "sess";
    pub const MESSAGE: &str = "msg";
    pub const FILE: &str = "file";
}

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new id such as `agt_01jd6x8k2m9q4r7t0v3w5y8z1a`.
pub fn new_id(prefix: &str) -> String {
    /// The last id's value, to stay above it within a millisecond.
    static LAST: Mutex<u128> = Mutex::new(0);
    let millis = u128::try_from(now_millis()).unwrap_or(0) & ((1 << 48) - 1);
    let mut random = [0u8; 10];
    crate::secrets::fill_random(&mut random);
    let mut value = millis << 80;
    for (index, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (8 * (9 - index));
    }
    {
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        if value >> 80 <= *last >> 80 {
            // The same millisecond as the last id (or the clock went back): count up from it.
            value = last.wrapping_add(1);
        }
        *last = value;
    }
    let mut body = [0u8; 26];
    for (index, slot) in body.iter_mut().enumerate() {
        let shift = 5 * (25 - index);
        *slot = CROCKFORD[usize::try_from((value >> shift) & 31).expect("five bits fit in usize")];
    }
    format!("{prefix}_{}", std::str::from_utf8(&body).expect("Crockford digits are ASCII"))
}

/// True when `id` has the shape of an id with `prefix`: used to tell an id from a name.
pub fn looks_like(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('_')).is_some_and(|body| {
        !body.is_empty() && body.len() <= 64 && body.bytes().all(|byte| byte.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_prefix_and_sort_by_time() {
        let first = new_id(prefix::AGENT);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_id(prefix::AGENT);
        assert!(first.starts_with("agt_") && first.len() == 30, "{first}");
        assert!(first < second, "{first} then {second}");
        let same_millisecond: Vec<String> = (0..100).map(|_| new_id(prefix::SESSION)).collect();
        assert!(same_millisecond.windows(2).all(|pair| pair[0] < pair[1]), "{same_millisecond:?}");
        assert!(looks_like(&first, "agt"));
        assert!(!looks_like(&first, "sess"));
        assert!(!looks_like("agt_", "agt"));
        assert!(!looks_like("agt_../x", "agt"));
    }
}
