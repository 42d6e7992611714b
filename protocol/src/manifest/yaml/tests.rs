use super::*;

fn parse(text: &str) -> Node {
    parse_document(text).expect("valid YAML").expect("a document")
}

#[track_caller]
fn check_error(text: &str, expected_message: &str, line: u32) {
    let error = parse_document(text).expect_err("invalid YAML");
    assert!(error.message.contains(expected_message), "message {:?} lacks {expected_message:?}", error.message);
    assert_eq!(error.pos.line, line, "{error:?}");
}

#[test]
fn positions_are_one_based() {
    let root = parse("name: x\nharness:\n  kind: pi\n");
    let Value::Map(entries) = &root.value else { panic!("not a map") };
    assert_eq!(entries[0].0.pos, Pos { line: 1, column: 1 });
    assert_eq!(entries[1].0.text, "harness");
    let Value::Map(inner) = &entries[1].1.value else { panic!("not a map") };
    assert_eq!(inner[0].0.pos, Pos { line: 3, column: 3 });
    assert_eq!(inner[0].1.pos, Pos { line: 3, column: 9 });
}

#[test]
fn scalars_keep_their_source_text() {
    let root = parse("a: 3.10\nb: '8787'\nc: 8787\nd: ~\ne: yes\nf: true\n");
    let Value::Map(entries) = &root.value else { panic!("not a map") };
    let scalar = |index: usize| match &entries[index].1.value {
        Value::Scalar(scalar) => scalar.clone(),
        _ => panic!("not a scalar"),
    };
    assert_eq!(scalar(0).text, "3.10");
    assert_eq!(scalar(1).as_i64(), None, "quoted numbers are text");
    assert_eq!(scalar(2).as_i64(), Some(8787));
    assert!(scalar(3).is_null());
    assert_eq!(scalar(4).as_bool(), None, "YAML 1.2: yes is a string");
    assert_eq!(scalar(5).as_bool(), Some(true));
}

#[test]
fn empty_documents_are_none() {
    assert_eq!(parse_document(""), Ok(None));
    assert_eq!(parse_document("# only a comment\n"), Ok(None));
}

#[test]
fn refuses_what_a_manifest_never_needs() {
    check_error("a: 1\na: 2\n", "duplicate key `a`", 2);
    check_error("a: 1\n---\nb: 2\n", "second one", 2);
    check_error("a: !!str 1\n", "tags", 1);
    check_error("a: [1, 2\n", "", 2);
    check_error("a: *nothing\n", "unknown anchor", 1);
    check_error("? [a, b]\n: c\n", "plain text", 1);
}

#[test]
fn aliases_expand_within_limits() {
    let root = parse("base: &b {x: 1}\ncopy: *b\n");
    let Value::Map(entries) = &root.value else { panic!("not a map") };
    assert_eq!(entries[0].1.value, entries[1].1.value);

    // A "billion laughs" document is stopped by the expansion limit, not by memory.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let previous = level - 1;
        bomb.push_str(&format!("a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"));
    }
    check_error(&bomb, "expands to more than", 5);

    let long = "x".repeat(500_000);
    let text_bomb = format!("a: &a {long}\nb: [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n");
    check_error(&text_bomb, "bytes of text", 2);
}

#[test]
fn deep_nesting_is_refused_without_overflowing() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    check_error(&deep, "recursion limit", 1);
    let deep_map = (0..200).map(|depth| format!("{}k:\n", "  ".repeat(depth))).collect::<String>();
    check_error(&deep_map, "nest deeper", MAX_DEPTH as u32 + 1);
}

#[test]
fn large_documents_are_refused() {
    let big = format!("a: \"{}\"\n", "x".repeat(MAX_DOCUMENT_BYTES));
    check_error(&big, "over the limit", 1);
}
