//! HTTPS for `dari server`: the certificate chain and key from PEM files, and a listener whose
//! TLS handshakes run beside the accept loop, so that a slow or silent client holds up no one.
//!
//! rustls with the `ring` provider, the one the rest of the workspace already uses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::TlsConfig;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections past their handshake that wait for the server to take them.
const HANDSHAKEN_BACKLOG: usize = 64;

/// Reads the certificate chain and key and makes the server's TLS configuration (TLS 1.2 and
/// 1.3, HTTP/1.1).
pub fn server_config(config: &TlsConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let cert_path = &config.cert_path;
    let key_path = &config.key_path;
    let chain = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("read TLS certificate {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("read TLS certificate {}", cert_path.display()))?;
    anyhow::ensure!(!chain.is_empty(), "TLS certificate {} holds no PEM CERTIFICATE block", cert_path.display());
    let key = PrivateKeyDer::from_pem_file(key_path).with_context(|| {
        format!("read TLS private key {} (a PEM PRIVATE KEY, RSA or EC key block)", key_path.display())
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choose TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "use TLS certificate {} with private key {} (does the key belong to the certificate?)",
                cert_path.display(),
                key_path.display()
            )
        })?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server_config))
}

/// A listener of TLS connections for `axum::serve`: a task accepts TCP connections and starts a
/// handshake task for each; finished handshakes wait in a channel for [`TlsListener::accept`].
/// Dropping the listener stops the accepting and the handshakes in progress.
#[derive(Debug)]
pub struct TlsListener {
    local_addr: SocketAddr,
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    stop: CancellationToken,
}

impl TlsListener {
    /// Starts accepting on `listener`. Needs a Tokio runtime.
    pub fn new(listener: TcpListener, tls: Arc<rustls::ServerConfig>) -> anyhow::Result<TlsListener> {
        let local_addr = listener.local_addr().context("read the bound address")?;
        let (sender, handshaken) = mpsc::channel(HANDSHAKEN_BACKLOG);
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(tls), sender, stop.clone()));
        Ok(TlsListener { local_addr, handshaken, stop })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when this listener is dropped, so this is never reached;
            // waiting forever is what a listener with no more connections does.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    acceptor: TlsAcceptor,
    handshaken: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    stop: CancellationToken,
) {
    let handshakes = TaskTracker::new();
    loop {
        // axum's accept retries failed accepts (after a pause when out of file descriptors).
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, handshaken, stop) = (acceptor.clone(), handshaken.clone(), stop.clone());
        handshakes.spawn(async move {
            let handshake = tokio::select! {
                () = stop.cancelled() => return,
                handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => handshake,
            };
            match handshake {
                Ok(Ok(tls_stream)) => {
                    let _ = handshaken.send((tls_stream, peer)).await;
                }
                // A client's failed handshake (plain HTTP on this port, an untrusted certificate)
                // is the client's problem, not the server's.
                Ok(Err(error)) => tracing::debug!(%peer, "TLS handshake failed: {error}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    handshakes.close();
    handshakes.wait().await;
}
