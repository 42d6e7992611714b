use std::path::Path;

use super::{OpenRegularError, open_regular};
use crate::test_support::run;

#[test]
fn open_regular_refuses_symlinks_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("target"), b"x").unwrap();
    std::os::unix::fs::symlink("target", dir.path().join("link")).unwrap();

    let (_, metadata) = open_regular(&dir.path().join("target")).unwrap();
    assert_eq!(metadata.len(), 1);
    assert!(matches!(open_regular(&dir.path().join("link")), Err(OpenRegularError::Symlink)));
    assert!(matches!(open_regular(dir.path()), Err(OpenRegularError::NotRegular("directory"))));
    assert!(matches!(open_regular(&dir.path().join("missing")), Err(OpenRegularError::Io(_))));
}

#[test]
fn open_regular_refuses_a_fifo_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), "mkfifo", &["fifo"]);
    let result = open_regular(&dir.path().join("fifo"));
    assert!(matches!(result, Err(OpenRegularError::NotRegular("fifo"))), "{result:?}");
}

#[test]
fn open_regular_refuses_a_character_device() {
    let result = open_regular(Path::new("/dev/null"));
    assert!(matches!(result, Err(OpenRegularError::NotRegular("character device"))), "{result:?}");
}
