//! `dari server`: the control plane as a process.
//!
//! Its lifecycle, in order: read the configuration and the TLS certificate, if any (no port bound
//! yet); open the data directory, the master key and the database (migrating it); bootstrap an
//! organization and an admin key when the database is empty; bind the listener; serve until a
//! shutdown signal; finish the requests in flight within a grace period; close the database.

mod bootstrap;
mod config;
mod models;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::blobs::{BlobStore, LocalBlobStore};
use crate::bus::EventBus;
use crate::harness::pi::PiHarness;
use crate::harness::secrets::SandboxSecrets;
use crate::http::{self, ApiSettings, AppState};
use crate::hub::{Hub, HubSettings};
use crate::persistence::Store;
use crate::sandboxes::e2b::E2bProvider;
use crate::sandboxes::local::{self, LocalJail, LocalProvider};
use crate::sandboxes::{PreparedRuntimes, SandboxProvider, SandboxSettings, Sandboxes};
use crate::secrets::MasterKey;
use crate::worker::{Worker, WorkerSettings};

pub use bootstrap::{BOOTSTRAP_KEY_FILE, Bootstrap};
pub use config::{
    ExecutionConfig, Isolation, JailConfig, ProviderConfig, ProviderKind, ServerArgs, ServerConfig, TlsConfig,
};

/// How long requests in flight may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A server that is set up and bound, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    /// The link's Unix socket, for jailed sandboxes (which may have no network).
    link_listener: Option<UnixListener>,
    /// HTTPS when set.
    tls: Option<Arc<rustls::ServerConfig>>,
    state: AppState,
    worker: Worker,
    pub local_addr: SocketAddr,
    /// The organization and key made on this start, when the database was empty.
    pub bootstrap: Option<Bootstrap>,
}

impl Server {
    /// Opens everything the server needs and binds its address.
    pub async fn start(config: &ServerConfig) -> anyhow::Result<Server> {
        let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data directory {}", config.data_dir.display()))?;
        let master_key = match &config.master_key {
            Some(key) => MasterKey::from_base64(key).context("read DARI_MASTER_KEY")?,
            None => {
                let path = config.data_dir.join("master.key");
                let (key, created) = MasterKey::load_or_create(&path)?;
                if created {
                    tracing::warn!(
                        path = %path.display(),
                        "created a master key for credentials; back it up, or set DARI_MASTER_KEY: without it stored credentials cannot be read"
                    );
                }
                key
            }
        };
        let store = Store::connect(&config.database_url()).await?;
        let blobs = Arc::new(LocalBlobStore::open(&config.data_dir.join("blobs"))?);
        let bootstrap = bootstrap::run(&store, &config.data_dir).await?;
        let listener =
            TcpListener::bind(config.listen).await.with_context(|| format!("listen on {}", config.listen))?;
        let local_addr = listener.local_addr().context("read the bound address")?;
        let settings = Arc::new(ApiSettings {
            public_url: config.public_url.clone(),
            tls: tls.is_some(),
            max_file_bytes: config.max_file_bytes,
            max_snapshot_bytes: config.max_snapshot_bytes,
            stream_keepalive: config.stream_keepalive,
            stream_poll_interval: config.stream_poll_interval,
        });
        let bus = EventBus::new(config.stream_limits);
        let (backend, link_listener) = backend(&config.execution, &config.data_dir, &store, blobs.clone()).await?;
        let (sandboxes, worker) = execution(
            &config.execution,
            backend,
            &store,
            &bus,
            &master_key,
            blobs.clone(),
            format!("{}://127.0.0.1:{}", if tls.is_some() { "wss" } else { "ws" }, local_addr.port()),
        )?;
        let adopted = sandboxes.adopt().await.context("adopt the sandboxes of an earlier run")?;
        if adopted > 0 {
            tracing::info!(adopted, "waiting for the sandboxes of an earlier run to dial in");
        }
        let execution = http::Execution { sandboxes, wake: worker.waker(), prewarm: config.execution.prewarm };
        let state = AppState { store, blobs, master_key, settings, bus, shutdown: CancellationToken::new(), execution };
        Ok(Server { listener, link_listener, tls, state, worker, local_addr, bootstrap })
    }

    /// The URL the server answers on: `https://…` with TLS, `http://…` without.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Server { listener, link_listener, tls, state, worker, .. } = self;
        let store = state.store.clone();
        let streams_end = state.shutdown.clone();
        let sandboxes = state.execution.sandboxes.clone();
        let work_end = CancellationToken::new();
        let working = tokio::spawn(worker.run(work_end.clone()));
        tokio::spawn(sandboxes.clone().reap(work_end.clone()));
        // Jailed sandboxes' links; they are closed by the sandboxes' shutdown, before the drain.
        let link_serving = link_listener.map(|listener| {
            let router = http::link_router(state.clone());
            AbortOnDropHandle::new(tokio::spawn(http::serve(listener, router, std::future::pending())))
        });
        let router = http::router(state);
        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            // Event streams never finish on their own: end them, so that the drain can.
            streams_end.cancel();
            // Turns in flight let go of their messages (a successor resumes them); then the
            // sandboxes stop, closing their links, which the drain would otherwise wait for.
            work_end.cancel();
            let _ = working.await;
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, sandboxes.shutdown_all()).await;
            let _ = drain_tx.send(());
        };
        let serving = match tls {
            // Small frames go out at once: an ack and the next request must not wait on the
            // peer's delayed ACK.
            None => tokio::spawn(http::serve(
                listener.tap_io(|stream| {
                    let _ = stream.set_nodelay(true);
                }),
                router,
                shutdown,
            )),
            Some(tls) => tokio::spawn(http::serve(tls::TlsListener::new(listener, tls)?, router, shutdown)),
        };
        tokio::pin!(serving);
        let result = tokio::select! {
            result = &mut serving => result,
            _ = drain_rx => match tokio::time::timeout(SHUTDOWN_GRACE, &mut serving).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!("requests still running after the shutdown grace period; stopping anyway");
                    serving.abort();
                    Ok(Ok(()))
                }
            },
        };
        drop(link_serving);
        store.close().await;
        result.context("the HTTP server task")?
    }
}

/// Where the server's sandboxes run, and for jailed local sandboxes the link's Unix socket.
async fn backend(
    config: &ExecutionConfig,
    data_dir: &Path,
    store: &Store,
    blobs: Arc<dyn BlobStore>,
) -> anyhow::Result<(SandboxBackend, Option<UnixListener>)> {
    match &config.provider {
        ProviderConfig::E2b(e2b) => {
            Ok((SandboxBackend { provider: Arc::new(E2bProvider::new(e2b.clone())?), runtimes: None }, None))
        }
        ProviderConfig::Local => {
            let sandboxes_root = data_dir.join("sandboxes");
            local::prepare_root(&sandboxes_root)?;
            let jail = local_jail(config, &sandboxes_root).await?;
            let link_listener = match &jail {
                Some(_) => Some(bind_link_socket(&local::link_dir(&sandboxes_root))?),
                None => None,
            };
            let runtimes = PreparedRuntimes::new(
                store.clone(),
                blobs,
                config.sandboxd.clone(),
                data_dir.join("runtimes"),
                jail.clone(),
                config.skip_sandbox_setup,
            );
            let provider =
                LocalProvider::new(config.sandboxd.clone(), sandboxes_root, config.sandbox_env.clone(), jail);
            Ok((SandboxBackend { provider: Arc::new(provider), runtimes: Some(runtimes) }, link_listener))
        }
    }
}

/// Whether local sandboxes are jailed: `--sandbox-isolation jail` insists (and fails to start
/// when this machine cannot make a jail), `auto` takes the jail where it works.
async fn local_jail(config: &ExecutionConfig, sandboxes_root: &Path) -> anyhow::Result<Option<LocalJail>> {
    let jail = LocalJail {
        root_fs: config.jail.root.clone(),
        pids_max: config.jail.pids_max,
        default_memory_mb: config.jail.default_memory_mb,
    };
    match config.jail.isolation {
        Isolation::None => Ok(None),
        Isolation::Jail => {
            local::probe_jail(&config.sandboxd, sandboxes_root, &jail).await.context(
                "--sandbox-isolation jail: this machine cannot make a jail (run as root, allow unprivileged user \
                 namespaces, or use --sandbox-isolation none)",
            )?;
            Ok(Some(jail))
        }
        Isolation::Auto => match local::probe_jail(&config.sandboxd, sandboxes_root, &jail).await {
            Ok(()) => Ok(Some(jail)),
            Err(error) => {
                tracing::warn!(
                    "local sandboxes run WITHOUT isolation: this machine cannot make a jail ({error:#}); run as root \
                     or allow unprivileged user namespaces, or pass --sandbox-isolation none to silence this"
                );
                Ok(None)
            }
        },
    }
}

/// Listens on the link's Unix socket, replacing the socket a previous run left.
fn bind_link_socket(dir: &Path) -> anyhow::Result<UnixListener> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(local::LINK_SOCKET);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("remove the old socket {}", path.display())),
    }
    UnixListener::bind(&path).with_context(|| {
        format!("listen on {} (a socket path may be at most 107 bytes: choose a shorter --data-dir)", path.display())
    })
}

/// Where a server's sandboxes run: the provider, and the prepared runtimes of versions with a
/// sandbox setup (where the provider has them).
struct SandboxBackend {
    provider: Arc<dyn SandboxProvider>,
    runtimes: Option<PreparedRuntimes>,
}

/// The sandbox hub, the sandboxes on the backend's provider and the worker of a server.
fn execution(
    config: &ExecutionConfig,
    backend: SandboxBackend,
    store: &Store,
    bus: &EventBus,
    master_key: &MasterKey,
    blobs: Arc<LocalBlobStore>,
    local_link_url: String,
) -> anyhow::Result<(Sandboxes, Worker)> {
    let hub = Hub::new(HubSettings { lost_grace: config.lost_grace, ..HubSettings::default() });
    let link_url = config.link_url.clone().unwrap_or(local_link_url);
    let settings = SandboxSettings { idle_timeout: config.idle_timeout, ..SandboxSettings::new(link_url) };
    let sandboxes = Sandboxes::new(store.clone(), hub, backend.provider, bus.clone(), backend.runtimes, settings);
    let worker_settings = WorkerSettings {
        concurrency: config.workers,
        lease: config.message_lease,
        runtime: config.runtime,
        ..WorkerSettings::default()
    };
    let secrets = SandboxSecrets::new(store.clone(), master_key.clone());
    let pi = PiHarness::new(config.pi.clone(), blobs)?;
    let worker = Worker::new(store.clone(), sandboxes.clone(), bus.clone(), secrets, pi, worker_settings);
    Ok((sandboxes, worker))
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("received shutdown signal");
}
