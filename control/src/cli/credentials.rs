//! `dari credentials list|add|remove`: the organization's stored secrets, by name.

use std::io::{IsTerminal, Read};

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use super::ExitCode;
use super::client::{ApiArgs, ApiClient, print_json};

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// List credential names (values are never returned).
    List,
    /// Store a credential, or replace its value.
    Add {
        /// `^[A-Z_][A-Z0-9_]*$`
        name: String,
        /// The value. Prefer the hidden prompt or --value-stdin: arguments end up in shell history.
        value: Option<String>,
        /// Read the value from stdin.
        #[arg(long, conflicts_with = "value")]
        value_stdin: bool,
    },
    /// Remove a credential.
    Remove { name: String },
}

pub(crate) async fn run(command: CredentialsCommand, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(api)?;
    let org_id = client.org_id().await?;
    let base = format!("/v1/organizations/{org_id}/credentials");
    let output = match command {
        CredentialsCommand::List => client.get(&base).await?,
        CredentialsCommand::Add { name, value, value_stdin } => {
            let value = read_value(&name, value, value_stdin)?;
            client.put(&format!("{base}/{name}"), &json!({"value": value})).await?
        }
        CredentialsCommand::Remove { name } => {
            client.delete(&format!("{base}/{name}")).await?;
            json!({"name": name, "removed": true})
        }
    };
    print_json(&output)?;
    Ok(ExitCode::Success)
}

fn read_value(name: &str, value: Option<String>, value_stdin: bool) -> anyhow::Result<String> {
    if let Some(value) = value {
        eprintln!("warning: a value on the command line stays in your shell history; prefer --value-stdin");
        return Ok(value);
    }
    if value_stdin || !std::io::stdin().is_terminal() {
        let mut value = String::new();
        std::io::stdin().read_to_string(&mut value).context("read the value from stdin")?;
        let value = value.strip_suffix('\n').map(|value| value.strip_suffix('\r').unwrap_or(value)).unwrap_or(&value);
        return Ok(value.to_owned());
    }
    rpassword::prompt_password(format!("value for {name} (hidden): ")).context("read the value")
}
