//! `dari session create|get|list|send|events`: sessions of an agent, through the public API.
//!
//! Agents and sessions are named by id (`agt_…`, `sess_…`) or by name; a session's name is
//! resolved with the session lists, and a name that several share is refused with their ids.

use std::io::Read;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::ExitCode;
use super::client::{ApiArgs, ApiClient, print_json, print_stdout};
use super::follow;
use super::resolve::{all_sessions, resolve_agent, resolve_session};

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Create a session of an agent, pinned to its active version.
    Create {
        /// The agent, by id or name.
        #[arg(long)]
        agent: String,
        #[command(flatten)]
        options: SessionOptions,
    },
    /// Show a session.
    Get {
        /// The session, by id or name.
        session: String,
        /// The agent whose sessions a name is looked up in (default: all sessions).
        #[arg(long)]
        agent: Option<String>,
    },
    /// List an agent's sessions, newest first.
    List {
        /// The agent, by id or name.
        #[arg(long)]
        agent: String,
    },
    /// Send a user message to a session, or with --agent and no session, to a new session; then
    /// follow the session until the message ends and print the assistant's reply.
    Send {
        /// The session, by id or name; leave it out with --agent to create a session.
        session: Option<String>,
        /// The message's text.
        text: Option<String>,
        /// Read the message's text from stdin.
        #[arg(long, conflicts_with = "text")]
        stdin: bool,
        /// The agent: creates a session when no session is given, else resolves a session name.
        #[arg(long)]
        agent: Option<String>,
        /// Print the accepted message (JSON) and return at once, without waiting for the reply.
        #[arg(long)]
        no_wait: bool,
        /// Print the finished message as JSON instead of the reply's text.
        #[arg(long)]
        json: bool,
        /// Options of the session to create (only when one is created).
        #[command(flatten)]
        options: SessionOptions,
    },
    /// List a session's events, oldest first.
    Events {
        /// The session, by id or name.
        session: String,
        /// How many events (0: the server's default).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// The agent whose sessions a name is looked up in (default: all sessions).
        #[arg(long)]
        agent: Option<String>,
    },
}

/// The options of a new session.
#[derive(Debug, Default, Args)]
pub struct SessionOptions {
    /// A name for the session.
    #[arg(long)]
    name: Option<String>,
    /// A session secret, NAME=VALUE (repeatable). Prefer --secret-env: arguments stay in shell
    /// history.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    secrets: Vec<String>,
    /// A session secret read from this environment variable (repeatable).
    #[arg(long = "secret-env", value_name = "NAME")]
    secret_envs: Vec<String>,
    /// The llm.options entry to use.
    #[arg(long = "llm", value_name = "ID")]
    llm_id: Option<String>,
    /// An LLM provider key for this session.
    #[arg(long, conflicts_with = "llm_api_key_env")]
    llm_api_key: Option<String>,
    /// Read the session's LLM provider key from this environment variable.
    #[arg(long, value_name = "ENV")]
    llm_api_key_env: Option<String>,
    /// Let the sandbox reach the internet.
    #[arg(long, conflicts_with = "no_internet_access")]
    internet_access: bool,
    /// Keep the sandbox off the internet.
    #[arg(long)]
    no_internet_access: bool,
}

pub(crate) async fn run(command: SessionCommand, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(api)?;
    let output = match command {
        SessionCommand::Create { agent, options } => {
            let agent_id = resolve_agent(&client, &agent).await?.id;
            client.post(&format!("/v1/agents/{agent_id}/sessions"), &Value::Object(options.body()?)).await?
        }
        SessionCommand::Get { session, agent } => {
            let session_id = resolve_session(&client, &session, agent.as_deref()).await?;
            client.get(&format!("/v1/sessions/{session_id}")).await?
        }
        SessionCommand::List { agent } => {
            let agent_id = resolve_agent(&client, &agent).await?.id;
            json!({"sessions": all_sessions(&client, &format!("/v1/agents/{agent_id}/sessions")).await?})
        }
        SessionCommand::Send { session, text, stdin, agent, no_wait, json, options } => {
            let accepted = send(&client, session, text, stdin, agent.as_deref(), options).await?;
            if no_wait {
                accepted
            } else {
                return follow_reply(&client, &accepted, json).await;
            }
        }
        SessionCommand::Events { session, limit, agent } => {
            let session_id = resolve_session(&client, &session, agent.as_deref()).await?;
            let query = if limit > 0 { format!("?limit={limit}") } else { String::new() };
            client.get(&format!("/v1/sessions/{session_id}/events{query}")).await?
        }
    };
    print_json(&output)?;
    Ok(ExitCode::Success)
}

/// Follows the session until the accepted message ends, then prints the reply (or the message as
/// JSON). A failed message prints its error and exits with [`ExitCode::Failure`].
async fn follow_reply(client: &ApiClient, accepted: &Value, json: bool) -> anyhow::Result<ExitCode> {
    let field = |pointer: &str| {
        accepted
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("the server's answer to the message has no {pointer}: {accepted}"))
    };
    let (session_id, message_id, event_id) = (field("/session/id")?, field("/message/id")?, field("/event/id")?);
    eprintln!("session {session_id} · message {message_id}");
    let ended = follow::until_message_ends(client, &session_id, &message_id, event_id).await?;
    if json {
        print_json(&ended.message)?;
    } else if !ended.reply.is_empty() {
        print_stdout(&format!("{}\n", ended.reply.trim_end()))?;
    }
    if ended.message["status"] == "failed" {
        let error = &ended.message["output"]["error"];
        let kind = error["type"].as_str().unwrap_or("error");
        let reason = error["message"].as_str().unwrap_or("no reason given");
        eprintln!("error: message {message_id} failed: {kind}: {reason}");
        return Ok(ExitCode::Failure);
    }
    Ok(ExitCode::Success)
}

async fn send(
    client: &ApiClient,
    session: Option<String>,
    text: Option<String>,
    stdin: bool,
    agent: Option<&str>,
    options: SessionOptions,
) -> anyhow::Result<Value> {
    // One positional with --agent (and no --stdin) is the text of a message to a new session.
    let (session, text) = match (session, text) {
        (Some(only), None) if agent.is_some() && !stdin => (None, Some(only)),
        other => other,
    };
    let text = match (text, stdin) {
        (Some(text), _) => text,
        (None, true) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("read the message from stdin")?;
            text
        }
        (None, false) => anyhow::bail!("no message: give its text as an argument, or pass --stdin"),
    };
    anyhow::ensure!(!text.trim().is_empty(), "the message is empty");
    let message = json!({"type": "user.message", "content": [{"type": "text", "text": text}]});
    match (session, agent) {
        (Some(session), agent) => {
            anyhow::ensure!(
                options.is_empty(),
                "session options (--name, --secret, --llm, …) apply only when `send` creates a session: give --agent and no session"
            );
            let session_id = resolve_session(client, &session, agent).await?;
            client.post(&format!("/v1/sessions/{session_id}/events"), &message).await
        }
        (None, Some(agent)) => {
            let agent_id = resolve_agent(client, agent).await?.id;
            let mut body = message;
            let session = options.body()?;
            if !session.is_empty() {
                body["session"] = Value::Object(session);
            }
            client.post(&format!("/v1/agents/{agent_id}/messages"), &body).await
        }
        (None, None) => anyhow::bail!("no session: name one, or pass --agent to start a new session"),
    }
}

impl SessionOptions {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.secrets.is_empty()
            && self.secret_envs.is_empty()
            && self.llm_id.is_none()
            && self.llm_api_key.is_none()
            && self.llm_api_key_env.is_none()
            && !self.internet_access
            && !self.no_internet_access
    }

    /// The session fields of a create request.
    fn body(&self) -> anyhow::Result<Map<String, Value>> {
        let mut body = Map::new();
        if let Some(name) = &self.name {
            body.insert("name".to_owned(), json!(name));
        }
        let mut secrets = Map::new();
        for secret in &self.secrets {
            let (name, value) =
                secret.split_once('=').with_context(|| format!("--secret {secret:?}: write it as NAME=VALUE"))?;
            secrets.insert(name.to_owned(), json!(value));
        }
        for name in &self.secret_envs {
            let value = std::env::var(name).with_context(|| format!("--secret-env {name}: the variable is not set"))?;
            secrets.insert(name.clone(), json!(value));
        }
        if !secrets.is_empty() {
            body.insert("secrets".to_owned(), Value::Object(secrets));
        }
        if let Some(llm_id) = &self.llm_id {
            body.insert("llm_id".to_owned(), json!(llm_id));
        }
        let llm_api_key = match (&self.llm_api_key, &self.llm_api_key_env) {
            (Some(key), _) => Some(key.clone()),
            (None, Some(env)) => {
                Some(std::env::var(env).with_context(|| format!("--llm-api-key-env {env}: the variable is not set"))?)
            }
            (None, None) => None,
        };
        if let Some(key) = llm_api_key {
            body.insert("llm_api_key".to_owned(), json!(key));
        }
        if self.internet_access || self.no_internet_access {
            body.insert("internet_access".to_owned(), json!(self.internet_access));
        }
        Ok(body)
    }
}
