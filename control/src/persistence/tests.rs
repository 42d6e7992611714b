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
        let mut tx = store.begin().await.expect("begin");
        let org_a = store.create_org(&mut tx, "a", false).await.expect("org a");
        let org_b = store.create_org(&mut tx, "b", false).await.expect("org b");
        tx.commit().await.expect("commit");
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

mod sessions;
