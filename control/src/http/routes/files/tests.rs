use super::*;

#[track_caller]
fn check_attachment(filename: &str, expect: &str) {
    assert_eq!(attachment(filename).to_str().expect("ASCII"), expect);
}

#[test]
fn attachment_names_are_quoted_safely() {
    check_attachment("report.pdf", r#"attachment; filename="report.pdf""#);
    check_attachment("two words.txt", r#"attachment; filename="two words.txt""#);
    check_attachment(r#"say "hi".txt"#, r#"attachment; filename="say _hi_.txt"; filename*=UTF-8''say%20%22hi%22.txt"#);
    check_attachment(r"back\slash", r#"attachment; filename="back_slash"; filename*=UTF-8''back%5Cslash"#);
    check_attachment("résumé.txt", r#"attachment; filename="r_sum_.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"#);
    check_attachment("a;b=c", r#"attachment; filename="a;b=c""#);
}
