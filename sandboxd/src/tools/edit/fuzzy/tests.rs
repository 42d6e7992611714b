//! Tests of the fuzzy normalisation, the mapping back to original lines, and the hint.

use super::*;

#[track_caller]
fn check_normalize(line: &str, expect: &str) {
    assert_eq!(normalize_line(line), expect);
}

/// Fuzzy-finds `old_text` in `content`; `expect` is the content after replacing the match with
/// `new_text`, or `missing` / `many N`.
#[track_caller]
fn check_replace(content: &str, old_text: &str, new_text: &str, expect: &str) {
    let normalized = NormalizedText::new(content);
    let actual = match normalized.find(old_text) {
        FuzzyFound::Missing => "missing".to_owned(),
        FuzzyFound::Many(count) => format!("many {count}"),
        FuzzyFound::Unique(found) => {
            let (range, replacement) = normalized.to_original(found, new_text);
            format!("{}{replacement}{}", &content[..range.start], &content[range.end..])
        }
    };
    assert_eq!(actual, expect);
}

#[track_caller]
fn check_hint(content: &str, old_text: &str, expect: Option<&str>) {
    assert_eq!(NormalizedText::new(content).closest_match(old_text).as_deref(), expect);
}

#[test]
fn normalization_follows_pi() {
    check_normalize("plain", "plain");
    check_normalize("trailing \t ", "trailing");
    check_normalize("‘single’ ‛x‚", "'single' 'x'");
    check_normalize("“double” „x‟", "\"double\" \"x\"");
    check_normalize("a‐b‑c‒d–e—f―g−h", "a-b-c-d-e-f-g-h");
    check_normalize("a\u{a0}b\u{2003}c\u{202f}d\u{205f}e\u{3000}f", "a b c d e f");
    check_normalize("\u{a0}\u{a0}indent", "  indent");
    check_normalize("ﬁ ① Ａ", "fi 1 A");
    check_normalize("e\u{301}", "é");
}

#[test]
fn matches_map_back_to_whole_original_lines() {
    check_replace("a “b” c\nnext\n", "\"b\"", "B", "a B c\nnext\n");
    check_replace("keep ‘x’\nit’s here  \nkeep ‘y’\n", "it's here", "done", "keep ‘x’\ndone  \nkeep ‘y’\n");
    check_replace("one  \ntwo  \nthree\n", "one\ntwo\n", "1\n2\n", "1\n2\nthree\n");
    check_replace("one  \ntwo  \nthree\n", "one\ntwo", "1\n2", "1\n2  \nthree\n");
    check_replace("x = ‘a’ — y\n", "'a' -", "b +", "x = b + y\n");
    check_replace("same ‘q’\nsame ‘q’\n", "same 'q'", "z", "many 2");
    check_replace("abc\n", "xyz", "z", "missing");
    check_replace("abc\n", "   \n  ", "z", "missing");
}

#[test]
fn closest_match_uses_a_shrinking_prefix() {
    let content = "fn main() {\n    let value = 1;\n    run(value);\n}\n";
    check_hint(content, "let valeu = 2;", Some("Closest match is around line 2:\n    let value = 1;"));
    check_hint(content, "\n  run(valeu);\n}", Some("Closest match is around line 3:\n    run(value);\n}\n"));
    check_hint(content, "zzz", None);
    check_hint(content, "fx", None);
    check_hint(content, "   \n", None);
    check_hint(
        &format!("{}\n", "x".repeat(500)),
        "xxxxy",
        Some(&format!("Closest match is around line 1:\n{}... [truncated]", "x".repeat(200))),
    );
}
