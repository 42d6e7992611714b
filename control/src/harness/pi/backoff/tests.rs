//! Tests of retry schedules: pi's default, policies over defaults, retry-after and bounds.

use std::time::Duration;

use dari_protocol::manifest::RetryPolicy;

use super::{Backoff, RETRY_AFTER_CAP};

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

#[track_caller]
fn check(backoff: &Backoff, retry_after: Option<Duration>, expected: &[Option<Duration>]) {
    let delays: Vec<Option<Duration>> = (1..=u32::try_from(expected.len()).expect("few attempts"))
        .map(|n| backoff.delay_before(n, retry_after))
        .collect();
    assert_eq!(delays, expected);
}

#[test]
fn llm_default_is_pis_schedule() {
    let backoff = Backoff::for_llm(None);
    check(&backoff, None, &[Some(Duration::ZERO), Some(secs(2)), Some(secs(4)), Some(secs(8)), None]);
}

#[test]
fn policy_fields_left_out_take_the_defaults() {
    let policy = RetryPolicy {
        maximum_attempts: Some(6),
        initial_interval_seconds: None,
        backoff_coefficient: Some(3.0),
        maximum_interval_seconds: Some(20),
    };
    let backoff = Backoff::for_llm(Some(&policy));
    check(
        &backoff,
        None,
        &[Some(Duration::ZERO), Some(secs(2)), Some(secs(6)), Some(secs(18)), Some(secs(20)), Some(secs(20)), None],
    );
}

#[test]
fn one_attempt_never_retries() {
    check(&Backoff::NO_RETRY, None, &[Some(Duration::ZERO), None]);
    check(&Backoff::fixed(0, secs(1)), None, &[Some(Duration::ZERO), None]);
}

#[test]
fn fixed_waits_the_same_each_time() {
    check(&Backoff::fixed(2, secs(1)), None, &[Some(Duration::ZERO), Some(secs(1)), Some(secs(1)), None]);
}

#[test]
fn retry_after_wins_over_a_shorter_wait_up_to_the_cap() {
    let backoff = Backoff::LLM_DEFAULT;
    assert_eq!(backoff.delay_before(2, Some(secs(30))), Some(secs(30)));
    assert_eq!(backoff.delay_before(2, Some(Duration::from_millis(500))), Some(secs(2)));
    assert_eq!(backoff.delay_before(2, Some(secs(5 * 3600))), Some(RETRY_AFTER_CAP));
    assert_eq!(backoff.delay_before(5, Some(secs(30))), None);
    let patient = Backoff { maximum_interval: secs(900), ..Backoff::LLM_DEFAULT };
    assert_eq!(patient.delay_before(2, Some(secs(3600))), Some(secs(900)));
}

#[test]
fn huge_exponents_and_bad_coefficients_stay_bounded() {
    let backoff = Backoff { maximum_attempts: u32::MAX, coefficient: 1e300, ..Backoff::LLM_DEFAULT };
    assert_eq!(backoff.delay_before(u32::MAX, None), Some(secs(60)));
    let shrinking = Backoff { coefficient: 0.1, ..Backoff::LLM_DEFAULT };
    assert_eq!(shrinking.delay_before(4, None), Some(secs(2)));
    let not_a_number = Backoff { coefficient: f64::NAN, ..Backoff::LLM_DEFAULT };
    assert_eq!(not_a_number.delay_before(3, None), Some(secs(2)));
}
