//! The managed pi harness (`harness: pi`): the control plane runs pi's coding-agent loop
//! (docs/pi-harness.md). It calls the model, runs each tool call in the session's sandbox through
//! sandboxd (or asks the client, for external tools), and commits every step before the next one
//! starts, so that a crash of the server resumes the loop where it stopped.
//!
//! - [`model`]: the conversation's entries and the types the providers share.
//! - [`provider`]: OpenAI chat completions and Anthropic messages, streamed.
//! - [`endpoint`]: which model a session uses, where, with which key.
//! - [`resources`], [`prompt`], [`tools`]: the agent as the model sees it (system prompt, skills,
//!   tools and their validation).
//! - [`turn`], [`user_message`], [`model_call`], [`tool_calls`], [`sandbox_calls`],
//!   [`compaction`], [`context`]: the loop.
//! - [`steps`]: what each step writes to the ledger, the conversation and the message.

pub mod backoff;
pub mod compaction;
pub mod context;
pub mod endpoint;
pub mod model;
pub mod model_call;
pub mod prompt;
pub mod provider;
pub mod resources;
pub mod sandbox_calls;
pub mod settings;
pub mod steps;
pub mod tool_calls;
pub mod tools;
pub mod turn;
pub mod user_message;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dari_protocol::manifest::Manifest;

use self::model::Usage;
use self::prompt::{PromptInputs, system_prompt};
use self::resources::{AgentResources, WORKSPACE_ROOT};
use self::settings::PiSettings;
use self::turn::{Held, Turn, internal};
use super::in_sandbox::PerBoot;
use super::{TurnContext, TurnFailure};
use crate::blobs::BlobStore;
use crate::persistence::TurnOutcome;
use crate::sync::lock;

/// How many versions' resources are kept in memory.
const RESOURCE_CACHE: usize = 256;

#[derive(Debug)]
pub struct PiHarness {
    settings: PiSettings,
    http: reqwest::Client,
    blobs: Arc<dyn BlobStore>,
    /// Version id → its resources.
    resources: Mutex<HashMap<String, Arc<AgentResources>>>,
    /// The daemon boots that have the bundle.
    bundles: PerBoot,
}

impl PiHarness {
    pub fn new(settings: PiSettings, blobs: Arc<dyn BlobStore>) -> anyhow::Result<PiHarness> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|error| anyhow::anyhow!("build the model providers' HTTP client: {error}"))?;
        Ok(PiHarness { settings, http, blobs, resources: Mutex::new(HashMap::new()), bundles: PerBoot::default() })
    }

    /// Runs the message's loop from its last committed step. `Ok(None)`: the message is parked
    /// waiting for external tool results, and nothing more is to be written now.
    pub async fn run_turn(
        &self,
        context: &TurnContext<'_>,
        manifest: &Manifest,
    ) -> Result<Option<TurnOutcome>, TurnFailure> {
        let resources = self.resources(context, manifest).await?;
        let secrets = context.secrets;
        let choice = endpoint::choose(&self.settings, secrets, &context.claimed.session, manifest.llm.as_ref())
            .await
            .map_err(TurnFailure::Final)?;
        let stored = context
            .store
            .conversation(&context.claimed.session.id)
            .await
            .map_err(|error| internal(format!("{error:#}")))?;
        let held = stored.into_iter().map(Held::from_stored).collect::<Result<Vec<_>, _>>()?;
        let system = system_prompt(&PromptInputs {
            instructions: &resources.instructions,
            tools: &resources.catalog,
            skills: &resources.skills,
            cwd: WORKSPACE_ROOT,
            date: &prompt::utc_date(std::time::SystemTime::now()),
        });
        let deadline = started_plus(context, self.settings.message_timeout);
        let turn = Turn {
            harness: self,
            context,
            manifest,
            resources,
            choice,
            system,
            held,
            usage: Usage::default(),
            attempt: context.attempt,
            sandbox: None,
            unparked_passes: 0,
        };
        // Every step is committed as it ends, so the loop may stop at any await: the deadline
        // holds while a model streams slowly or a retry sleeps, not only between steps.
        let timeout = self.settings.message_timeout;
        tokio::select! {
            ended = turn.run() => ended,
            () = tokio::time::sleep_until(deadline) => Err(TurnFailure::Final(turn::message_timeout(timeout))),
        }
    }

    fn stream_config(&self) -> provider::StreamConfig {
        provider::StreamConfig {
            idle_timeout: self.settings.stream_idle_timeout,
            max_event_bytes: provider::DEFAULT_MAX_EVENT_BYTES,
        }
    }

    async fn resources(
        &self,
        context: &TurnContext<'_>,
        manifest: &Manifest,
    ) -> Result<Arc<AgentResources>, TurnFailure> {
        let version = context.version;
        if let Some(cached) = lock(&self.resources).get(&version.id) {
            return Ok(cached.clone());
        }
        let loaded = Arc::new(resources::load(&self.blobs, version, manifest).await.map_err(TurnFailure::Final)?);
        let mut cache = lock(&self.resources);
        if cache.len() >= RESOURCE_CACHE {
            cache.clear();
        }
        cache.insert(version.id.clone(), loaded.clone());
        Ok(loaded)
    }
}

/// When the message must have ended, as a tokio instant: `timeout` after it started.
fn started_plus(context: &TurnContext<'_>, timeout: std::time::Duration) -> tokio::time::Instant {
    let started = context.claimed.message.started_at.unwrap_or_else(crate::persistence::now_millis);
    let elapsed = u64::try_from(crate::persistence::now_millis().saturating_sub(started)).unwrap_or(0);
    let left = timeout.saturating_sub(std::time::Duration::from_millis(elapsed));
    tokio::time::Instant::now() + left
}
