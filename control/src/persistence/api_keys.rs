//! API keys: stored as SHA-256 hashes, found by hash when a request arrives.

use anyhow::Context;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, Tx, now_millis};
use crate::ids::{new_id, prefix};
use crate::secrets::token_hash;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub org_id: String,
    pub label: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Who a request's key speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatedKey {
    pub key_id: String,
    pub org_id: String,
}

/// How many characters of a key lists show.
const SHOWN_PREFIX_LEN: usize = 12;

/// `last_used_at` is written at most this often per key, so reads stay reads.
const LAST_USED_RESOLUTION_MILLIS: i64 = 60_000;

const COLUMNS: &str = "id, org_id, label, prefix, created_at, last_used_at, revoked_at";

impl Store {
    /// Records a key whose plaintext the caller made and will show once.
    pub async fn create_api_key(
        &self,
        tx: &mut Tx,
        org_id: &str,
        label: &str,
        plaintext: &str,
    ) -> anyhow::Result<ApiKeyRecord> {
        let record = ApiKeyRecord {
            id: new_id(prefix::API_KEY),
            org_id: org_id.to_owned(),
            label: label.to_owned(),
            prefix: plaintext.chars().take(SHOWN_PREFIX_LEN).collect(),
            created_at: now_millis(),
            last_used_at: None,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, label, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&record.id)
        .bind(&record.org_id)
        .bind(&record.label)
        .bind(&record.prefix)
        .bind(token_hash(plaintext))
        .bind(record.created_at)
        .execute(&mut **tx)
        .await
        .context("create API key")?;
        Ok(record)
    }

    /// The live key with this plaintext, if any.
    pub async fn authenticate(&self, plaintext: &str) -> anyhow::Result<Option<AuthenticatedKey>> {
        let Some(row) =
            sqlx::query("SELECT id, org_id, last_used_at FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
                .bind(token_hash(plaintext))
                .fetch_optional(self.reader())
                .await
                .context("look up API key")?
        else {
            return Ok(None);
        };
        let key = AuthenticatedKey { key_id: row.try_get("id")?, org_id: row.try_get("org_id")? };
        let last_used_at: Option<i64> = row.try_get("last_used_at")?;
        let now = now_millis();
        if last_used_at.is_none_or(|last| now - last >= LAST_USED_RESOLUTION_MILLIS) {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&key.key_id)
                .execute(self.writer())
                .await
                .context("record API key use")?;
        }
        Ok(Some(key))
    }

    /// The organization's keys, revoked ones included, oldest first.
    pub async fn list_api_keys(&self, org_id: &str) -> anyhow::Result<Vec<ApiKeyRecord>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 ORDER BY created_at, id"))
            .bind(org_id)
            .fetch_all(self.reader())
            .await
            .context("list API keys")?
            .iter()
            .map(api_key_from_row)
            .collect()
    }

    /// Revokes a key; revoking a revoked key keeps its first revocation time. `None` when the
    /// organization has no such key.
    pub async fn revoke_api_key(&self, org_id: &str, key_id: &str) -> anyhow::Result<Option<ApiKeyRecord>> {
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE org_id = $2 AND id = $3 AND revoked_at IS NULL")
            .bind(now_millis())
            .bind(org_id)
            .bind(key_id)
            .execute(self.writer())
            .await
            .context("revoke API key")?;
        sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 AND id = $2"))
            .bind(org_id)
            .bind(key_id)
            .fetch_optional(self.reader())
            .await
            .context("read API key")?
            .map(|row| api_key_from_row(&row))
            .transpose()
    }
}

fn api_key_from_row(row: &AnyRow) -> anyhow::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        label: row.try_get("label")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}
