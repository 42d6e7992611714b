//! The store on every engine this machine has: SQLite always, PostgreSQL when
//! `DARI_TEST_POSTGRES_URL` names a server (each test gets a database of its own there).

use super::*;

/// The engines to test: SQLite in a temporary directory, and PostgreSQL when configured.
pub(crate) async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite =
        Store::connect(&format!("sqlite://{}", dir.path().join("test.db").display())).await.expect("open SQLite");
    let mut stores = vec![(sqlite, Some(dir))];
    match std::env::var("DARI_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            stores.push((Store::connect(&fresh_postgres_database(&url).await).await.expect("open PostgreSQL"), None))
        }
        _ => eprintln!("DARI_TEST_POSTGRES_URL is not set: testing SQLite only"),
    }
    stores
}

/// Creates an empty database on the server at `admin_url` and returns its URL.
async fn fresh_postgres_database(admin_url: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = crate::ids::new_id("dari_test");
    let admin = AnyPoolOptions::new().max_connections(1).connect(admin_url).await.expect("connect to PostgreSQL");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create the test database");
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("a database in the URL");
    format!("{base}/{name}")
}

/// Organizations `a` and `b`.
async fn two_orgs(store: &Store) -> (OrgRecord, OrgRecord) {
    let mut tx = store.begin().await.expect("begin");
    let org_a = store.create_org(&mut tx, "a", false).await.expect("org a");
    let org_b = store.create_org(&mut tx, "b", false).await.expect("org b");
    tx.commit().await.expect("commit");
    (org_a, org_b)
}

#[tokio::test]
async fn migrations_apply_once_and_a_newer_schema_is_refused() {
    for (store, dir) in stores().await {
        // Connecting again finds the schema current and changes nothing.
        let url = match &dir {
            Some(dir) => format!("sqlite://{}", dir.path().join("test.db").display()),
            None => continue,
        };
        let again = Store::connect(&url).await.expect("reconnect");
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)")
            .execute(again.writer())
            .await
            .expect("pretend a newer dari migrated");
        let error = Store::connect(&url).await.expect_err("a newer schema");
        assert!(format!("{error:#}").contains("newer than this build"), "{error:#}");
        store.close().await;
    }
}

#[tokio::test]
async fn api_keys_authenticate_until_revoked_and_only_in_their_organization() {
    for (store, _dir) in stores().await {
        let mut tx = store.begin().await.expect("begin");
        let org_a = store.create_org(&mut tx, "a", false).await.expect("org a");
        let org_b = store.create_org(&mut tx, "b", false).await.expect("org b");
        let key_a = store.create_api_key(&mut tx, &org_a.id, "ci", "dari_key_a").await.expect("key a");
        tx.commit().await.expect("commit");
        let caller = store.authenticate("dari_key_a").await.expect("lookup").expect("a live key");
        assert_eq!(caller.org_id, org_a.id);
        assert_eq!(store.authenticate("dari_key_b").await.expect("lookup"), None);
        // Organization b cannot see or revoke a's key.
        assert!(store.list_api_keys(&org_b.id).await.expect("list").is_empty());
        assert_eq!(store.revoke_api_key(&org_b.id, &key_a.id).await.expect("revoke"), None);
        assert!(store.authenticate("dari_key_a").await.expect("lookup").is_some());
        let revoked = store.revoke_api_key(&org_a.id, &key_a.id).await.expect("revoke").expect("found");
        assert!(revoked.revoked_at.is_some());
        assert_eq!(store.authenticate("dari_key_a").await.expect("lookup"), None);
        // Revoking again keeps the first time.
        let again = store.revoke_api_key(&org_a.id, &key_a.id).await.expect("revoke").expect("found");
        assert_eq!(again.revoked_at, revoked.revoked_at);
    }
}

#[tokio::test]
async fn credentials_are_per_organization_and_replaced_in_place() {
    for (store, _dir) in stores().await {
        let (org_a, org_b) = two_orgs(&store).await;
        assert!(store.put_credential(&org_a.id, "TOKEN", "sealed-1").await.expect("put"));
        assert!(!store.put_credential(&org_a.id, "TOKEN", "sealed-2").await.expect("replace"));
        assert_eq!(store.sealed_credential(&org_a.id, "TOKEN").await.expect("read").as_deref(), Some("sealed-2"));
        assert_eq!(store.sealed_credential(&org_b.id, "TOKEN").await.expect("read"), None);
        assert!(store.list_credentials(&org_b.id).await.expect("list").is_empty());
        assert!(!store.delete_credential(&org_b.id, "TOKEN").await.expect("delete"));
        assert!(store.delete_credential(&org_a.id, "TOKEN").await.expect("delete"));
        assert!(store.list_credentials(&org_a.id).await.expect("list").is_empty());
    }
}

mod queue;
mod sessions;
#[tokio::test]
async fn files_are_per_organization_and_image_blocks_need_images() {
    for (store, _dir) in stores().await {
        let (org_a, org_b) = two_orgs(&store).await;
        let new_file = |id: &'static str, content_type: &'static str| NewFile {
            id,
            org_id: &org_a.id,
            filename: "x",
            content_type,
            size_bytes: 3,
            sha256: "abc",
        };
        let text = store.insert_file(&new_file("file_text", "text/plain")).await.expect("insert");
        let image = store.insert_file(&new_file("file_png", "image/png")).await.expect("insert");
        assert_eq!(store.file(&org_a.id, "file_text").await.expect("read"), Some(text.clone()));
        assert_eq!(store.file(&org_b.id, "file_text").await.expect("read"), None);

        let check = |org_id: String, file_id: &'static str, block: FileBlock| {
            let store = store.clone();
            async move { store.check_file_reference(&org_id, file_id, block).await }
        };
        assert_eq!(check(org_a.id.clone(), "file_text", FileBlock::File).await.expect("a file block"), text);
        assert_eq!(check(org_a.id.clone(), "file_png", FileBlock::Image).await.expect("an image block"), image);
        assert_eq!(check(org_a.id.clone(), "file_png", FileBlock::File).await.expect("a file block"), image);
        let not_image = check(org_a.id.clone(), "file_text", FileBlock::Image).await.expect_err("not an image");
        assert!(matches!(not_image, FileReferenceError::NotAnImage { .. }), "{not_image}");
        assert!(not_image.to_string().contains("text/plain"), "{not_image}");
        let elsewhere = check(org_b.id.clone(), "file_png", FileBlock::Image).await.expect_err("another org's");
        assert!(matches!(elsewhere, FileReferenceError::NotFound { .. }), "{elsewhere}");

        assert_eq!(store.delete_file(&org_b.id, "file_text").await.expect("delete"), None);
        assert_eq!(store.delete_file(&org_a.id, "file_text").await.expect("delete"), Some(text));
        assert_eq!(store.delete_file(&org_a.id, "file_text").await.expect("delete"), None);
        assert_eq!(store.file(&org_a.id, "file_text").await.expect("read"), None);
    }
}

#[tokio::test]
async fn a_session_keeps_its_last_workspace_archive_in_its_organization() {
    for (store, _dir) in stores().await {
        let (org_a, org_b) = two_orgs(&store).await;
        let session_id = store.create_test_session(&org_a.id).await.expect("a session");
        assert_eq!(store.session_workspace(&org_a.id, &session_id).await.expect("read"), SessionWorkspace::NotArchived);
        assert_eq!(
            store.session_workspace(&org_b.id, &session_id).await.expect("read"),
            SessionWorkspace::SessionNotFound
        );
        assert_eq!(
            store.session_workspace(&org_a.id, "sess_missing").await.expect("read"),
            SessionWorkspace::SessionNotFound
        );
        assert!(
            store.record_workspace_archive(&org_b.id, &session_id, 10, None).await.is_err(),
            "another org's session"
        );

        let first = store.record_workspace_archive(&org_a.id, &session_id, 10, None).await.expect("record");
        assert_eq!(first.blob_key, format!("workspaces/{session_id}.tar.gz"));
        let second = store.record_workspace_archive(&org_a.id, &session_id, 20, None).await.expect("replace");
        let SessionWorkspace::Archived(found) = store.session_workspace(&org_a.id, &session_id).await.expect("read")
        else {
            panic!("an archive");
        };
        assert_eq!(found, second);
        assert_eq!(found.size_bytes, 20);
        assert_eq!(
            store.session_workspace(&org_b.id, &session_id).await.expect("read"),
            SessionWorkspace::SessionNotFound
        );
    }
}
