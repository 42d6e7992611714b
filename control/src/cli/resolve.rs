//! Agents and sessions named on the command line by id (`agt_…`, `sess_…`) or by a unique name.

use anyhow::Context;
use serde_json::Value;

use super::client::ApiClient;
use crate::ids::{looks_like, prefix};

/// An agent as the API lists it.
#[derive(Debug)]
pub struct ResolvedAgent {
    pub id: String,
    pub value: Value,
}

/// Finds an agent by id, or by name among the organization's live agents.
pub async fn resolve_agent(client: &ApiClient, id_or_name: &str) -> anyhow::Result<ResolvedAgent> {
    if looks_like(id_or_name, prefix::AGENT) {
        let value = client.get(&format!("/v1/agents/{id_or_name}")).await?;
        return Ok(ResolvedAgent { id: id_or_name.to_owned(), value });
    }
    let listed = client.get("/v1/agents").await.context("list agents to find one by name")?;
    let mut matches: Vec<&Value> =
        listed["agents"].as_array().into_iter().flatten().filter(|agent| agent["name"] == id_or_name).collect();
    match matches.len() {
        0 => anyhow::bail!("no agent is named {id_or_name:?}; `dari agent list` shows the agents"),
        1 => {
            let value = matches.remove(0).clone();
            let id = value["id"].as_str().context("an agent without an id")?.to_owned();
            Ok(ResolvedAgent { id, value })
        }
        _ => {
            let ids: Vec<&str> = matches.iter().filter_map(|agent| agent["id"].as_str()).collect();
            anyhow::bail!("several agents are named {id_or_name:?} ({}); pass the id instead", ids.join(", "))
        }
    }
}
