use std::io::Cursor;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::*;

/// One entry of a test archive. Names are written raw, so that hostile ones can be made.
enum Item<'a> {
    Directory(&'a str),
    File(&'a str, &'a [u8]),
    Executable(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    Fifo(&'a str),
}

fn archive(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for item in items {
        let mut header = tar::Header::new_gnu();
        let (name, entry_type, mode, data, link): (&str, _, _, &[u8], Option<&str>) = match item {
            Item::Directory(name) => (name, tar::EntryType::Directory, 0o755, b"", None),
            Item::File(name, data) => (name, tar::EntryType::Regular, 0o644, data, None),
            Item::Executable(name, data) => (name, tar::EntryType::Regular, 0o755, data, None),
            Item::Symlink(name, target) => (name, tar::EntryType::Symlink, 0o777, b"", Some(target)),
            Item::HardLink(name, target) => (name, tar::EntryType::Link, 0o644, b"", Some(target)),
            Item::Fifo(name) => (name, tar::EntryType::Fifo, 0o644, b"", None),
        };
        let raw_name = &mut header.as_gnu_mut().expect("a GNU header").name;
        raw_name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(target) = link {
            let raw_link = &mut header.as_gnu_mut().expect("a GNU header").linkname;
            raw_link[..target.len()].copy_from_slice(target.as_bytes());
        }
        header.set_entry_type(entry_type);
        header.set_mode(mode);
        header.set_mtime(1_700_000_000);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).expect("append");
    }
    builder.into_inner().expect("finish tar").finish().expect("finish gzip")
}

/// The zip's entries as (name, unix mode, contents), or the error's text.
fn zip_of(archive: &[u8], filters: &[&str]) -> Result<Vec<(String, u32, Vec<u8>)>, String> {
    let filters: Vec<String> = filters.iter().map(|filter| parse_filter(filter).expect("a valid filter")).collect();
    let plan = plan(archive, &filters, ARCHIVE_LIMITS).map_err(|error| error.to_string())?;
    let mut zip_bytes = Vec::new();
    write_zip(archive, &plan, &mut zip_bytes).expect("write the zip");
    let mut zip = zip::ZipArchive::new(Cursor::new(zip_bytes)).expect("a readable zip");
    let mut entries = Vec::new();
    for index in 0..zip.len() {
        let mut file = zip.by_index(index).expect("an entry");
        let mut contents = Vec::new();
        file.read_to_end(&mut contents).expect("read an entry");
        entries.push((
            file.name().expect("a UTF-8 name").into_owned(),
            file.unix_mode().unwrap_or(0) & 0o777,
            contents,
        ));
    }
    Ok(entries)
}

#[track_caller]
fn check(archive: &[u8], filters: &[&str], expect: &[&str]) {
    let names: Vec<String> = zip_of(archive, filters).expect("a zip").into_iter().map(|(name, ..)| name).collect();
    assert_eq!(names, expect, "filters {filters:?}");
}

fn project() -> Vec<u8> {
    archive(&[
        Item::Directory("./"),
        Item::Directory("./src/"),
        Item::File("./src/main.rs", b"fn main() {}\n"),
        Item::Directory("./src/bin/"),
        Item::Executable("./src/bin/run.sh", b"#!/bin/sh\necho hi\n"),
        Item::File("./srcfoo/x.txt", b"not src"),
        Item::File("./README.md", b"# readme\n"),
        Item::Directory("./empty/"),
        Item::File("./data.bin", b"\0\x01\x02\xff binary \0"),
    ])
}

#[test]
fn the_whole_workspace_keeps_contents_modes_and_empty_directories() {
    let entries = zip_of(&project(), &[]).expect("a zip");
    let by_name =
        |name: &str| entries.iter().find(|entry| entry.0 == name).unwrap_or_else(|| panic!("{name} in {entries:?}"));
    assert_eq!(by_name("src/main.rs").2, b"fn main() {}\n");
    assert_eq!(by_name("data.bin").2, b"\0\x01\x02\xff binary \0");
    assert_eq!(by_name("src/bin/run.sh").1, 0o755);
    assert_eq!(by_name("README.md").1, 0o644);
    assert!(by_name("empty/").2.is_empty());
    check(
        &project(),
        &[],
        &["src/", "src/main.rs", "src/bin/", "src/bin/run.sh", "srcfoo/x.txt", "README.md", "empty/", "data.bin"],
    );
    check(
        &project(),
        &["."],
        &["src/", "src/main.rs", "src/bin/", "src/bin/run.sh", "srcfoo/x.txt", "README.md", "empty/", "data.bin"],
    );
}

#[test]
fn filters_select_directories_and_everything_under_them() {
    check(&project(), &["src"], &["src/", "src/main.rs", "src/bin/", "src/bin/run.sh"]);
    check(&project(), &["./src/bin/"], &["src/bin/", "src/bin/run.sh"]);
    check(&project(), &["src/bin", "srcfoo"], &["src/bin/", "src/bin/run.sh", "srcfoo/x.txt"]);
    check(&project(), &["src", "src/bin"], &["src/", "src/main.rs", "src/bin/", "src/bin/run.sh"]);
    check(&project(), &["empty"], &["empty/"]);
}

#[test]
fn a_filter_must_name_a_directory_of_the_archive() {
    for filter in ["README.md", "missing", "src/main.rs", "sr"] {
        assert_eq!(
            zip_of(&project(), &[filter]).expect_err(filter),
            format!("path {filter:?} is not a directory in the workspace")
        );
    }
    // A link to a directory is not one: links are never followed.
    let linked = archive(&[Item::Directory("real/"), Item::File("real/a", b"a"), Item::Symlink("alias", "real")]);
    assert!(zip_of(&linked, &["alias"]).is_err());
}

#[test]
fn links_special_files_and_escaping_paths_are_left_out() {
    let hostile = archive(&[
        Item::File("ok.txt", b"ok"),
        Item::File("../escape.txt", b"x"),
        Item::File("a/../../escape.txt", b"x"),
        Item::File("/etc/passwd", b"x"),
        Item::File("..\\..\\windows.txt", b"x"),
        Item::Symlink("link", "/etc/passwd"),
        Item::Symlink("dir/link", "../../.."),
        Item::HardLink("hard", "/etc/shadow"),
        Item::Fifo("pipe"),
    ]);
    let filters: Vec<String> = Vec::new();
    let plan = plan(&hostile, &filters, ARCHIVE_LIMITS).expect("a plan");
    assert_eq!(plan.skipped, 8);
    check(&hostile, &[], &["ok.txt"]);
}

#[test]
fn archives_over_the_limits_are_refused() {
    let items: Vec<Item<'_>> = (0..5).map(|_| Item::File("f", b"0123456789")).collect();
    let many = archive(&items);
    let few_entries = ArchiveLimits { max_entries: 4, max_total_bytes: 1 << 20 };
    assert!(matches!(plan(&many, &[], few_entries), Err(WorkspaceZipError::TooManyEntries { limit: 4 })));
    let few_bytes = ArchiveLimits { max_entries: 100, max_total_bytes: 49 };
    assert!(matches!(plan(&many, &[], few_bytes), Err(WorkspaceZipError::TooLarge { limit: 49 })));
    let enough = ArchiveLimits { max_entries: 5, max_total_bytes: 50 };
    // The same name twice keeps the first.
    assert_eq!(plan(&many, &[], enough).expect("a plan").len(), 1);
}

#[test]
fn unreadable_archives_are_errors() {
    for bytes in [&b"not gzip"[..], &[], &archive(&[Item::File("a", b"a")])[..20]] {
        assert!(matches!(plan(bytes, &[], ARCHIVE_LIMITS), Err(WorkspaceZipError::Read(_))), "{bytes:?}");
    }
}

#[test]
fn filters_are_relative_directories() {
    assert_eq!(parse_filter("src").as_deref(), Ok("src"));
    assert_eq!(parse_filter("./src//bin/").as_deref(), Ok("src/bin"));
    assert_eq!(parse_filter(".").as_deref(), Ok(""));
    for (raw, needle) in [
        ("", "empty"),
        ("/workspace/src", "absolute"),
        ("../etc", ".."),
        ("src/../..", ".."),
        ("src\0", "NUL"),
        ("a\\b", "backslash"),
    ] {
        let detail = parse_filter(raw).expect_err(raw);
        assert!(detail.contains(needle), "{raw:?}: {detail}");
    }
    assert!(parse_filter(&"a/".repeat(3000)).is_err());
}

#[test]
fn times_become_zip_dates() {
    let time = zip_time(1_700_000_000);
    assert_eq!(
        (time.year(), time.month(), time.day(), time.hour(), time.minute(), time.second()),
        (2023, 11, 14, 22, 13, 20)
    );
    let leap_day = zip_time(951_782_400);
    assert_eq!((leap_day.year(), leap_day.month(), leap_day.day()), (2000, 2, 29));
    assert_eq!(zip_time(0), zip::DateTime::default(), "1970 is before a zip can say");
    assert_eq!(zip_time(u64::MAX), zip::DateTime::default());
    let last = zip_time(4_354_819_199);
    assert_eq!((last.year(), last.month(), last.day(), last.hour(), last.minute()), (2107, 12, 31, 23, 59));
}
