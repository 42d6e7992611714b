use super::{BundleLimits, Limit, Size};

#[track_caller]
fn check(bytes: u64, expect_size: &str, expect_limit: &str) {
    assert_eq!(Size(bytes).to_string(), expect_size);
    assert_eq!(Limit(bytes).to_string(), expect_limit);
}

#[test]
fn formats_sizes_and_limits() {
    check(0, "0 bytes", "0 bytes");
    check(1023, "1023 bytes", "1023 bytes");
    check(1024, "1.0 KiB", "1 KiB");
    check(1536, "1.5 KiB", "1.5 KiB");
    check(150 * 1024 * 1024, "150.0 MiB", "150 MiB");
    check(100 * 1024 * 1024 + 1, "100.0 MiB", "100.0 MiB");
    check(512 * 1024 * 1024, "512.0 MiB", "512 MiB");
    check(3 * 1024 * 1024 * 1024, "3.0 GiB", "3 GiB");
}

#[test]
fn default_limits_match_dari() {
    let limits = BundleLimits::DEFAULT;
    assert_eq!(limits.max_files, 20_000);
    assert_eq!(limits.max_file_bytes, 100 * 1024 * 1024);
    assert_eq!(limits.max_total_bytes, 512 * 1024 * 1024);
    assert_eq!(limits.max_archive_bytes, 100 * 1024 * 1024);
    assert_eq!(limits.max_path_bytes, 1024);
}
