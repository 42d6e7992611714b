//! Agents and sessions named on the command line by id (`agt_…`, `sess_…`) or by a unique name.

use anyhow::Context;
use serde_json::{Value, json};

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

/// A session's id, from its id or its name (among the agent's sessions, or all of them).
pub async fn resolve_session(client: &ApiClient, session: &str, agent: Option<&str>) -> anyhow::Result<String> {
    if looks_like(session, prefix::SESSION) {
        return Ok(session.to_owned());
    }
    let path = match agent {
        Some(agent) => format!("/v1/agents/{}/sessions", resolve_agent(client, agent).await?.id),
        None => "/v1/sessions".to_owned(),
    };
    let sessions = all_sessions(client, &path).await?;
    let ids: Vec<&str> = sessions
        .iter()
        .filter(|listed| listed["name"].as_str() == Some(session))
        .filter_map(|listed| listed["id"].as_str())
        .collect();
    match ids.as_slice() {
        [id] => Ok((*id).to_owned()),
        [] => anyhow::bail!("no session is named {session:?}; `dari session list --agent AGENT` shows them"),
        several => {
            anyhow::bail!("several sessions are named {session:?} ({}); pass the id instead", several.join(", "))
        }
    }
}

/// Every session of a list, page by page.
pub async fn all_sessions(client: &ApiClient, path: &str) -> anyhow::Result<Vec<Value>> {
    let mut sessions = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let query = match &after {
            Some(cursor) => format!("?limit=1000&after={cursor}"),
            None => "?limit=1000".to_owned(),
        };
        let page = client.get(&format!("{path}{query}")).await?;
        sessions.extend(
            page["sessions"].as_array().context("the server's session list has no `sessions`")?.iter().cloned(),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) if page["has_more"] == json!(true) => after = Some(cursor.to_owned()),
            _ => return Ok(sessions),
        }
    }
}
