use super::*;

fn event(name: Option<&str>, data: &str) -> SseEvent {
    SseEvent { event: name.map(str::to_owned), data: data.to_owned() }
}

/// Parses `stream` cut into chunks at every possible place (one cut, then every byte apart), and
/// checks that each way gives `expect`.
#[track_caller]
fn check(stream: &[u8], expect: &[SseEvent]) {
    let mut cuttings: Vec<Vec<&[u8]>> = (0..=stream.len()).map(|cut| vec![&stream[..cut], &stream[cut..]]).collect();
    cuttings.push(stream.chunks(1).collect());
    for chunks in cuttings {
        let mut parser = SseParser::new(1024);
        let mut events = Vec::new();
        for chunk in &chunks {
            events.extend(parser.push(chunk).expect("the event fits"));
        }
        events.extend(parser.finish().expect("the event fits"));
        assert_eq!(events, expect, "chunks {chunks:?}");
    }
}

#[test]
fn data_lines_are_joined_and_blank_lines_dispatch() {
    check(b"data: one\n\ndata: two\ndata:  three\n\n", &[event(None, "one"), event(None, "two\n three")]);
    check(b"event: ping\ndata: {}\n\n", &[event(Some("ping"), "{}")]);
    check(b"data\n\n", &[event(None, "")]);
    check(b"data:\ndata:\n\n", &[event(None, "\n")]);
}

#[test]
fn comments_unknown_fields_and_events_without_data_dispatch_nothing() {
    check(b": keep-alive\n\nid: 7\nretry: 10\n\nevent: lonely\n\n", &[]);
    check(b": OPENROUTER PROCESSING\n\ndata: x\n\n", &[event(None, "x")]);
    // The name of an event without data does not carry over to the next one.
    check(b"event: lonely\n\ndata: x\n\n", &[event(None, "x")]);
}

#[test]
fn every_line_ending_is_understood() {
    let expect = [event(Some("a"), "1\n2"), event(None, "3")];
    check(b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\ndata: 3\r\n\r\n", &expect);
    check(b"event: a\rdata: 1\rdata: 2\r\rdata: 3\r\r", &expect);
    check(b"event: a\ndata: 1\r\ndata: 2\r\rdata: 3\n\n", &expect);
}

#[test]
fn a_character_cut_by_a_chunk_boundary_arrives_whole() {
    check("data: héllo 😀 wörld\n\n".as_bytes(), &[event(None, "héllo 😀 wörld")]);
    check(b"data: \xff\n\n", &[event(None, "\u{fffd}")]);
}

#[test]
fn the_last_event_is_dispatched_at_the_end_even_without_its_blank_line() {
    check(b"data: [DONE]\n", &[event(None, "[DONE]")]);
    check(b"data: [DONE]", &[event(None, "[DONE]")]);
    check(b"data: a\n\ndata: b\r", &[event(None, "a"), event(None, "b")]);
}

#[test]
fn an_event_larger_than_the_bound_is_refused() {
    let mut parser = SseParser::new(16);
    assert_eq!(parser.push(b"data: 0123456789\n").expect("fits").len(), 0);
    let error = parser.push(b"data: 0123456789\n").expect_err("two lines do not fit");
    assert_eq!(error.kind, ModelErrorKind::BadResponse);
    assert_eq!(error.message, "an event of the answer's stream is larger than 16 bytes");

    // A single line without its end is bounded too.
    let mut parser = SseParser::new(4 * 1024 * 1024);
    let chunk = vec![b'x'; 1024 * 1024];
    for _ in 0..4 {
        parser.push(&chunk).expect("up to the bound fits");
    }
    let error = parser.push(b"x").expect_err("one byte more does not");
    assert_eq!(error.message, "an event of the answer's stream is larger than 4 MiB");

    // The bound is per event: many small events are fine.
    let mut parser = SseParser::new(16);
    for _ in 0..100 {
        assert_eq!(parser.push(b"data: 0123456789\n\n").expect("fits").len(), 1);
    }
}
