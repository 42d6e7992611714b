//! The first start: an empty database gets organization `default` and an admin API key, written
//! to `<data-dir>/bootstrap-api-key` (mode 0600) so that the operator can start using the API.

use std::path::Path;

use anyhow::Context;

use crate::persistence::{Store, is_unique_violation};
use crate::secrets::{API_KEY_PREFIX, new_token, write_private_file};

/// The file, in the data directory, that holds the bootstrap key.
pub const BOOTSTRAP_KEY_FILE: &str = "bootstrap-api-key";
const DEFAULT_ORG_NAME: &str = "default";

/// What a first start made.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    pub org_id: String,
    pub api_key: String,
}

pub(super) async fn run(store: &Store, data_dir: &Path) -> anyhow::Result<Option<Bootstrap>> {
    if !store.is_empty().await? {
        return Ok(None);
    }
    let api_key = new_token(API_KEY_PREFIX);
    let mut tx = store.begin().await?;
    let org = match store.create_org(&mut tx, DEFAULT_ORG_NAME, true).await {
        Ok(org) => org,
        // Another replica sharing this database bootstrapped first.
        Err(error) if error.downcast_ref::<sqlx::Error>().is_some_and(is_unique_violation) => return Ok(None),
        Err(error) => return Err(error),
    };
    store.create_api_key(&mut tx, &org.id, "bootstrap", &api_key).await?;
    let path = data_dir.join(BOOTSTRAP_KEY_FILE);
    // A key file left from an earlier database names a key that no longer exists.
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("replace {}", path.display()));
        }
        _ => {}
    }
    write_private_file(&path, format!("{api_key}\n").as_bytes())?;
    tx.commit().await.context("commit the bootstrap organization")?;
    tracing::info!(org.id = %org.id, path = %path.display(), "bootstrapped organization `default`; its admin API key is in the file");
    Ok(Some(Bootstrap { org_id: org.id, api_key }))
}
