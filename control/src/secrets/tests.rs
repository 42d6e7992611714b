use super::*;

fn key() -> MasterKey {
    MasterKey::from_base64(&STANDARD.encode([7u8; 32])).expect("a valid key")
}

#[test]
fn sealed_values_open_only_in_their_context_and_with_their_key() {
    let key = key();
    let sealed = key.seal("credential:org_a:TOKEN", b"hunter2");
    assert!(!sealed.contains("hunter2"));
    assert_eq!(key.open("credential:org_a:TOKEN", &sealed).expect("opens"), b"hunter2");
    // Moved to another organization or name: refused.
    assert!(key.open("credential:org_b:TOKEN", &sealed).is_err());
    assert!(key.open("credential:org_a:OTHER", &sealed).is_err());
    // Another master key: refused.
    let other = MasterKey::from_base64(&STANDARD.encode([8u8; 32])).expect("a valid key");
    assert!(other.open("credential:org_a:TOKEN", &sealed).is_err());
    // Altered: refused, whatever byte changed.
    let mut bytes = STANDARD.decode(&sealed).expect("base64");
    for index in 0..bytes.len() {
        bytes[index] ^= 1;
        assert!(key.open("credential:org_a:TOKEN", &STANDARD.encode(&bytes)).is_err(), "byte {index}");
        bytes[index] ^= 1;
    }
    assert!(key.open("credential:org_a:TOKEN", "not base64!").is_err());
    assert!(key.open("credential:org_a:TOKEN", "").is_err());
}

#[test]
fn the_same_value_seals_differently_each_time() {
    let key = key();
    assert_ne!(key.seal("c", b"v"), key.seal("c", b"v"));
}

#[test]
fn master_keys_of_the_wrong_shape_are_refused_with_a_way_out() {
    let short = MasterKey::from_base64(&STANDARD.encode([1u8; 16])).expect_err("16 bytes");
    assert!(format!("{short:#}").contains("16 bytes; it must be 32"), "{short:#}");
    let garbage = MasterKey::from_base64("%%%").expect_err("not base64");
    assert!(format!("{garbage:#}").contains("openssl rand -base64 32"), "{garbage:#}");
}

#[test]
fn a_created_master_key_file_is_private_and_reloads() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    let (first, created) = MasterKey::load_or_create(&path).expect("create");
    assert!(created);
    assert_eq!(std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
    let (second, created) = MasterKey::load_or_create(&path).expect("reload");
    assert!(!created);
    let sealed = first.seal("c", b"v");
    assert_eq!(second.open("c", &sealed).expect("same key"), b"v");
}

#[test]
fn tokens_are_long_random_and_stored_as_hashes() {
    let token = new_token(API_KEY_PREFIX);
    assert!(token.starts_with("dari_") && token.len() == 5 + 43, "{token}");
    assert_ne!(token, new_token(API_KEY_PREFIX));
    let hash = token_hash(&token);
    assert_eq!(hash.len(), 64);
    assert!(!hash.contains(&token[5..]));
}
