//! `dari server --tls-cert --tls-key`: HTTPS with a self-signed certificate made by the `openssl`
//! command, handshakes that do not hold up other clients, and clear configuration errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dari_tests::binaries::dari;
use dari_tests::control::{ControlServer, Engine};
use reqwest::StatusCode;

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`; `None` when the
/// `openssl` command is missing.
fn self_signed_certificate(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    #[allow(clippy::disallowed_methods)] // The test makes its certificate with the openssl command.
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => Some((cert, key)),
        Ok(status) => panic!("openssl failed to make a certificate: {status}"),
        Err(error) => {
            eprintln!("the openssl command is not available ({error}): skipping the TLS test");
            None
        }
    }
}

#[tokio::test]
async fn the_server_speaks_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().expect("a directory");
    let Some((cert, key)) = self_signed_certificate(dir.path()) else { return };
    let cert_pem = std::fs::read(&cert).expect("read the certificate");
    for engine in Engine::available() {
        let control = ControlServer::builder(engine)
            .args(["--tls-cert".as_ref(), cert.as_os_str(), "--tls-key".as_ref(), key.as_os_str()])
            .trust(&cert_pem)
            .start()
            .await;
        let address = control.url.strip_prefix("https://").expect("listening on https://").to_owned();

        // A client that connects and never says hello holds up no one: the next client is
        // answered well within the 10 s the silent one has for its handshake.
        let stalled = tokio::net::TcpStream::connect(&address).await.expect("connect");
        let answered = tokio::time::timeout(Duration::from_secs(5), control.get("/v1/organizations")).await;
        let (status, body) = answered.expect("answered beside a stalled handshake");
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = control.get(&format!("/v1/organizations/{}/api-keys", control.org_id().await)).await;
        assert_eq!(status, StatusCode::OK);
        drop(stalled);

        // Plain HTTP on the TLS port gets no answer, and a client that does not trust the
        // certificate does not connect.
        let plain = reqwest::Client::new().get(format!("http://{address}/healthz")).send().await;
        assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
        let untrusting = reqwest::Client::new().get(format!("{}/healthz", control.url)).send().await;
        assert!(untrusting.is_err(), "an untrusted certificate was accepted: {untrusting:?}");
        let (status, _) = control.send(control.http.get(format!("{}/healthz", control.url))).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "the server still serves after the failed handshakes");
        assert!(control.unexpected_warnings(&[]).is_empty(), "{:?}", control.unexpected_warnings(&[]));
    }
}

#[test]
fn tls_needs_a_certificate_and_its_key() {
    let dir = tempfile::tempdir().expect("a directory");
    let data_dir = dir.path().to_str().expect("UTF-8 path");
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().expect("UTF-8 path");
    for (args, needle) in [
        (vec!["--tls-cert", missing], "--tls-cert (DARI_TLS_CERT) needs --tls-key (DARI_TLS_KEY)"),
        (vec!["--tls-key", missing], "--tls-key (DARI_TLS_KEY) needs --tls-cert (DARI_TLS_CERT)"),
        (vec!["--tls-cert", missing, "--tls-key", missing], "read TLS certificate"),
    ] {
        let mut command = vec!["server", "--listen", "127.0.0.1:0", "--data-dir", data_dir];
        command.extend(args);
        let output = dari(&command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(stderr.contains(needle), "{command:?}: {stderr}");
    }
    assert!(!dir.path().join("dari.db").exists(), "a configuration error opens nothing");
}
