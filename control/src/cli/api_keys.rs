//! `dari api-keys list|create|revoke`: the organization's API keys.

use clap::Subcommand;
use serde_json::json;

use super::ExitCode;
use super::client::{ApiArgs, ApiClient, print_json};

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// List the organization's keys (never their values).
    List,
    /// Create a key; its value is printed once and cannot be shown again.
    Create {
        /// A name to tell the key apart.
        #[arg(long)]
        name: String,
    },
    /// Revoke a key: requests with it fail from now on.
    Revoke {
        /// The key's id (`key_…`).
        key_id: String,
    },
}

pub(crate) async fn run(command: ApiKeysCommand, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(api)?;
    let org_id = client.org_id().await?;
    let base = format!("/v1/organizations/{org_id}/api-keys");
    let output = match command {
        ApiKeysCommand::List => client.get(&base).await?,
        ApiKeysCommand::Create { name } => {
            let created = client.post(&base, &json!({"label": name})).await?;
            eprintln!("this is the only time the key is shown; store it now");
            created
        }
        ApiKeysCommand::Revoke { key_id } => client.delete(&format!("{base}/{key_id}")).await?,
    };
    print_json(&output)?;
    Ok(ExitCode::Success)
}
