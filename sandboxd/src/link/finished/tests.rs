use dari_protocol::link::Outcome;

use super::*;

fn outcome(text: &str) -> Outcome {
    Outcome::ok(text)
}

/// The record after finishing `ids` in order, each with an outcome of its own name.
fn record_of(ids: &[&str], capacity: usize, byte_budget: usize) -> FinishedRecord {
    let mut record = FinishedRecord::new(capacity, byte_budget);
    for id in ids {
        record.insert((*id).to_owned(), outcome(id));
    }
    record
}

#[track_caller]
fn check(record: &FinishedRecord, expect: &[(&str, Option<Option<&str>>)]) {
    for (id, expected) in expect {
        let expected_outcome = expected.map(|kept| kept.map(outcome));
        let actual = record.get(id).map(|recorded| match recorded {
            Recorded::Outcome(outcome) => Some(outcome.clone()),
            Recorded::Forgotten => None,
        });
        assert_eq!(actual, expected_outcome, "request {id}");
    }
}

#[test]
fn within_both_bounds_every_outcome_is_kept() {
    let record = record_of(&["a", "b", "c"], 10, 1 << 20);
    check(&record, &[("a", Some(Some("a"))), ("b", Some(Some("b"))), ("c", Some(Some("c"))), ("d", None)]);
}

#[test]
fn past_the_byte_budget_the_oldest_outcomes_are_forgotten_but_their_ids_stay() {
    let one = json_len(&outcome("aaaa"));
    let record = record_of(&["aaaa", "bbbb", "cccc"], 10, 2 * one);
    check(&record, &[("aaaa", Some(None)), ("bbbb", Some(Some("bbbb"))), ("cccc", Some(Some("cccc")))]);
    assert_eq!(record.bytes, 2 * one);
}

#[test]
fn the_newest_outcome_is_kept_even_when_it_alone_passes_the_budget() {
    let record = record_of(&["small", "a much larger outcome than the budget allows"], 10, 1);
    check(
        &record,
        &[
            ("small", Some(None)),
            (
                "a much larger outcome than the budget allows",
                Some(Some("a much larger outcome than the budget allows")),
            ),
        ],
    );
}

#[test]
fn past_the_capacity_the_oldest_ids_are_gone() {
    let one = json_len(&outcome("a"));
    let record = record_of(&["a", "b", "c", "d"], 3, 2 * one);
    check(&record, &[("a", None), ("b", Some(None)), ("c", Some(Some("c"))), ("d", Some(Some("d")))]);
    assert_eq!((record.order.len(), record.kept.len(), record.bytes), (3, 2, 2 * one));
}

#[test]
fn a_repeated_insert_keeps_the_first_outcome() {
    let mut record = record_of(&["a"], 10, 1 << 20);
    record.insert("a".to_owned(), outcome("other"));
    check(&record, &[("a", Some(Some("a")))]);
    assert_eq!(record.order.len(), 1);
}
