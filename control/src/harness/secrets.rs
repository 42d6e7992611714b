//! The secrets a session's sandbox gets: each name the version declares in `sandbox.secrets`,
//! taken from the session's own `secrets` when it has that name, else from the organization's
//! stored credential of that name. Names the version does not declare never leave the database.
//!
//! Values are opened only here, when a sandbox is provisioned or a runtime server starts, and go
//! only into their environments (`ProvisionRequest.env`, `RuntimeStart.env`): never into events,
//! logs or error messages, which name secrets, never their values. The model's keys are opened
//! here too, for the model calls only.

use std::collections::BTreeMap;

use dari_protocol::manifest::Sandbox;
use serde_json::{Value, json};

use crate::persistence::{SessionRecord, Store, TurnError};
use crate::sandboxes::SandboxEnv;
use crate::secrets::{MasterKey, credential_seal_context, llm_api_key_seal_context, session_secrets_seal_context};

/// Opens the secrets that sandboxes are given.
#[derive(Clone, Debug)]
pub struct SandboxSecrets {
    store: Store,
    master_key: MasterKey,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxSecretsError {
    /// Declared names that neither the session nor the organization holds.
    #[error(
        "sandbox.secrets declares {}, which neither the session's secrets nor the organization's credentials hold: store {} with {}, or give {} in the session's `secrets` when creating it",
        names.join(", "),
        if names.len() == 1 { "it" } else { "each" },
        names.iter().map(|name| format!("`dari credentials add {name}`")).collect::<Vec<_>>().join(" and "),
        if names.len() == 1 { "it" } else { "them" },
    )]
    Missing { names: Vec<String> },
    /// The database or the master key failed; the message names what was being read.
    #[error("read the secrets of session {session_id}: {source:#}")]
    Read {
        session_id: String,
        #[source]
        source: anyhow::Error,
    },
}

impl SandboxSecretsError {
    /// The message's error when a sandbox cannot get its secrets: it names them, never values.
    pub fn into_turn_error(self) -> TurnError {
        let details = match &self {
            SandboxSecretsError::Missing { names } => json!({"missing_secrets": names}),
            SandboxSecretsError::Read { .. } => Value::Null,
        };
        TurnError::new("sandbox_setup_failed", self.to_string(), details)
    }
}

impl SandboxSecrets {
    /// A sandbox's environment: `sandbox.env`'s literals and the declared secrets' values (a name
    /// cannot be in both: validation refuses it).
    pub async fn environment(
        &self,
        session: &SessionRecord,
        sandbox: &Sandbox,
    ) -> Result<SandboxEnv, SandboxSecretsError> {
        let mut env = sandbox.env.clone();
        env.extend(self.resolve(session, &sandbox.secrets).await?);
        Ok(SandboxEnv(env))
    }

    pub fn new(store: Store, master_key: MasterKey) -> SandboxSecrets {
        SandboxSecrets { store, master_key }
    }

    /// The value of each name in `declared` for `session`: the session's secret of that name,
    /// else the organization's credential. Every declared name must be found.
    pub async fn resolve(
        &self,
        session: &SessionRecord,
        declared: &[String],
    ) -> Result<BTreeMap<String, String>, SandboxSecretsError> {
        if declared.is_empty() {
            return Ok(BTreeMap::new());
        }
        let read = |source: anyhow::Error| SandboxSecretsError::Read { session_id: session.id.clone(), source };
        let mut session_secrets = self.session_secrets(session).await.map_err(read)?;
        let mut resolved = BTreeMap::new();
        let mut missing = Vec::new();
        for name in declared {
            if let Some(value) = session_secrets.remove(name) {
                resolved.insert(name.clone(), value);
            } else if let Some(value) = self.credential(&session.org_id, name).await.map_err(read)? {
                resolved.insert(name.clone(), value);
            } else {
                missing.push(name.clone());
            }
        }
        if !missing.is_empty() {
            return Err(SandboxSecretsError::Missing { names: missing });
        }
        Ok(resolved)
    }

    /// The session's own secrets, opened (empty when it has none).
    async fn session_secrets(&self, session: &SessionRecord) -> anyhow::Result<BTreeMap<String, String>> {
        let Some((Some(sealed), _)) = self.store.sealed_session_secrets(&session.org_id, &session.id).await? else {
            return Ok(BTreeMap::new());
        };
        let plaintext = self.master_key.open(&session_secrets_seal_context(&session.org_id, &session.id), &sealed)?;
        // The error of a failed parse would quote the text: say only that it is not an object.
        serde_json::from_slice(&plaintext)
            .map_err(|_| anyhow::anyhow!("the session's sealed secrets are not a JSON object of strings"))
    }

    /// The session's own `llm_api_key`, opened: for model calls only, never for the sandbox.
    pub async fn session_llm_api_key(&self, session: &SessionRecord) -> anyhow::Result<Option<String>> {
        let Some((_, Some(sealed))) = self.store.sealed_session_secrets(&session.org_id, &session.id).await? else {
            return Ok(None);
        };
        let plaintext = self.master_key.open(&llm_api_key_seal_context(&session.org_id, &session.id), &sealed)?;
        String::from_utf8(plaintext).map(Some).map_err(|_| anyhow::anyhow!("the session's llm_api_key is not UTF-8"))
    }

    /// The organization's credential `name`, opened.
    pub async fn credential(&self, org_id: &str, name: &str) -> anyhow::Result<Option<String>> {
        let Some(sealed) = self.store.sealed_credential(org_id, name).await? else { return Ok(None) };
        let plaintext = self.master_key.open(&credential_seal_context(org_id, name), &sealed)?;
        String::from_utf8(plaintext).map(Some).map_err(|_| anyhow::anyhow!("credential {name} is not UTF-8"))
    }
}
