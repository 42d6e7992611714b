use super::{BundlePathError, check_bundle_path, display_path};

#[track_caller]
fn check(input: &[u8], expect: Result<&str, BundlePathError>) {
    assert_eq!(check_bundle_path(input, 16), expect);
}

#[test]
fn accepts_plain_relative_paths() {
    check(b"dari.yml", Ok("dari.yml"));
    check(b"src/main.py", Ok("src/main.py"));
    check(b".hidden/..x/y.", Ok(".hidden/..x/y."));
    check(b"0123456789abcdef", Ok("0123456789abcdef"));
}

#[test]
fn refuses_unsafe_paths() {
    check(b"", Err(BundlePathError::Empty));
    check(b"/etc/evil", Err(BundlePathError::Absolute));
    check(b"../evil", Err(BundlePathError::ParentDir));
    check(b"a/../../evil", Err(BundlePathError::ParentDir));
    check(b"a/..", Err(BundlePathError::ParentDir));
    check(b"./a", Err(BundlePathError::CurrentDir));
    check(b"a/./b", Err(BundlePathError::CurrentDir));
    check(b"a//b", Err(BundlePathError::EmptyComponent));
    check(b"a/", Err(BundlePathError::EmptyComponent));
    check(b"a\0b", Err(BundlePathError::Nul));
    check(b"a\\b", Err(BundlePathError::Backslash));
    check(b"a\xffb", Err(BundlePathError::NotUtf8));
    check(b"0123456789abcdefg", Err(BundlePathError::TooLong { bytes: 17, limit: 16 }));
}

#[test]
fn display_escapes_control_characters() {
    assert_eq!(display_path(b"a\nb\xff"), "a\\nb\u{fffd}");
}
