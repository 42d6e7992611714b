use super::*;

#[track_caller]
fn check_name(given: Option<&str>, expect: &str) {
    assert_eq!(normalize_filename(given), expect, "{given:?}");
}

#[test]
fn names_are_reduced_to_a_readable_leaf() {
    check_name(Some("ticket.txt"), "ticket.txt");
    check_name(Some("../../etc/passwd"), "passwd");
    check_name(Some("/etc/passwd"), "passwd");
    check_name(Some("a\\b"), "b");
    check_name(Some("C:\\Users\\me\\report.pdf"), "report.pdf");
    check_name(Some("dir/"), "upload");
    check_name(Some(".."), "upload");
    check_name(Some("a/.."), "upload");
    check_name(Some("."), "upload");
    check_name(Some(""), "upload");
    check_name(None, "upload");
    check_name(Some("  spaced name.md  "), "spaced name.md");
    check_name(Some("bell\u{7}\r\nname\u{0}.txt"), "bellname.txt");
    check_name(Some("\u{85}\u{9b}x"), "x");
    check_name(Some("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
    check_name(Some(".env"), ".env");
    check_name(Some("résumé 😀.txt"), "résumé 😀.txt");
}

#[test]
fn long_names_are_cut_on_a_character_boundary_keeping_the_extension() {
    let long = format!("{}.txt", "a".repeat(10_000));
    let name = normalize_filename(Some(&long));
    assert_eq!(name.len(), MAX_FILENAME_BYTES);
    assert!(name.ends_with("aaa.txt"), "{name}");

    let wide = "é".repeat(200);
    let name = normalize_filename(Some(&wide));
    assert!(name.len() <= MAX_FILENAME_BYTES && name.len() >= MAX_FILENAME_BYTES - 1, "{}", name.len());
    assert!(name.chars().all(|character| character == 'é'));

    // An "extension" that is most of the name is not kept.
    let dotted = format!("x.{}", "b".repeat(400));
    assert_eq!(normalize_filename(Some(&dotted)).len(), MAX_FILENAME_BYTES);
}

#[track_caller]
fn check_type(head: &[u8], declared: Option<&str>, expect: &str) {
    assert_eq!(upload_content_type(head, declared), expect, "{head:?} declared {declared:?}");
}

#[test]
fn images_are_recognised_by_their_bytes_and_other_types_taken_when_well_formed() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    check_type(png, None, "image/png");
    check_type(png, Some("text/plain"), "image/png");
    check_type(b"\xff\xd8\xff\xe0\0\x10JFIF", Some("application/octet-stream"), "image/jpeg");
    check_type(b"GIF89a\x01\0\x01\0", None, "image/gif");
    check_type(b"GIF87a\x01\0\x01\0", None, "image/gif");
    check_type(b"RIFF\x24\0\0\0WEBPVP8 ", None, "image/webp");
    check_type(b"RIFF\x24\0\0\0WAVEfmt ", None, "application/octet-stream");
    // A declared image whose bytes are not one is not believed.
    check_type(b"hello", Some("image/png"), "application/octet-stream");
    check_type(b"hello", Some("image/webp; q=1"), "application/octet-stream");
    // Other declarations are kept when well-formed, lower-cased.
    check_type(b"hello", Some("text/plain; charset=utf-8"), "text/plain; charset=utf-8");
    check_type(b"hello", Some("Application/JSON"), "application/json");
    check_type(b"<svg/>", Some("image/svg+xml"), "image/svg+xml");
    check_type(b"hello", Some("text"), "application/octet-stream");
    check_type(b"hello", Some("text/plain\r\nX-Evil: 1"), "application/octet-stream");
    check_type(b"hello", Some("te xt/plain"), "application/octet-stream");
    check_type(b"hello", Some(&format!("text/{}", "x".repeat(300))), "application/octet-stream");
    check_type(b"", None, "application/octet-stream");
    check_type(b"\x89PN", None, "application/octet-stream");
}

#[test]
fn image_types_are_the_four_a_model_takes() {
    for content_type in IMAGE_MIME_TYPES {
        assert!(is_image_content_type(content_type));
    }
    assert!(is_image_content_type("image/png; x=y"));
    assert!(!is_image_content_type("image/svg+xml"));
    assert!(!is_image_content_type("application/octet-stream"));
}
