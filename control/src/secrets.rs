//! Secrets at rest and the bearer tokens we hand out.
//!
//! - Credentials, session secrets and per-session LLM keys are sealed with XChaCha20-Poly1305
//!   under the master key before they reach the database. Each sealed value is bound to where it
//!   belongs (its "context", e.g. `credential:org_…:OPENAI_API_KEY`) as associated data, so a
//!   value copied into another row or organization fails to open instead of leaking.
//! - API keys and other bearer tokens are 256 random bits. We store only their SHA-256: a
//!   stolen database yields no usable key, and a high-entropy key needs no slow hash.

use std::path::Path;

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// The prefix of every API key, as Dari's keys have.
pub const API_KEY_PREFIX: &str = "dari_";

/// The key that seals secrets at rest: 32 bytes, given to the server as base64.
#[derive(Clone)]
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("MasterKey(..)")
    }
}

/// A sealed value that did not open: the master key is not the one that sealed it, or the value
/// was moved or altered.
#[derive(Debug, thiserror::Error)]
#[error("open sealed {context}: wrong master key, or the stored value was altered")]
pub struct UnsealError {
    pub context: String,
}

/// The context a credential is sealed for: moved to another row, it does not open.
pub fn credential_seal_context(org_id: &str, name: &str) -> String {
    format!("credential:{org_id}:{name}")
}

/// The context a session's secrets (one JSON object of names to values) are sealed for.
pub fn session_secrets_seal_context(org_id: &str, session_id: &str) -> String {
    format!("session-secrets:{org_id}:{session_id}")
}

/// The context a session's LLM key is sealed for.
pub fn llm_api_key_seal_context(org_id: &str, session_id: &str) -> String {
    format!("session-llm-api-key:{org_id}:{session_id}")
}

const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

impl MasterKey {
    /// Parses a base64 key of 32 bytes.
    pub fn from_base64(text: &str) -> anyhow::Result<MasterKey> {
        let bytes = STANDARD
            .decode(text.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim()))
            .context("the master key is not base64; make one with `openssl rand -base64 32`")?;
        let key: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            anyhow::anyhow!(
                "the master key is {} bytes; it must be 32 (make one with `openssl rand -base64 32`)",
                bytes.len()
            )
        })?;
        Ok(MasterKey { cipher: XChaCha20Poly1305::new(&key.into()) })
    }

    /// Reads the key from `path`, or creates the file (mode 0600) with a new key when it does not
    /// exist. Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> anyhow::Result<(MasterKey, bool)> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((MasterKey::from_base64(&text).with_context(|| format!("read {}", path.display()))?, false)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                fill_random(&mut key);
                let text = format!("{}\n", STANDARD.encode(key));
                write_private_file(path, text.as_bytes())?;
                Ok((MasterKey::from_base64(&text)?, true))
            }
            Err(error) => Err(error).with_context(|| format!("read master key {}", path.display())),
        }
    }

    /// Seals `plaintext` for `context`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(SEALED_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        STANDARD.encode(sealed)
    }

    /// Opens a value sealed for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, UnsealError> {
        let error = || UnsealError { context: context.to_owned() };
        let bytes = STANDARD.decode(sealed).map_err(|_| error())?;
        if bytes.len() < 1 + NONCE_LEN || bytes[0] != SEALED_VERSION {
            return Err(error());
        }
        let (nonce, ciphertext) = bytes[1..].split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| error())
    }
}

/// Fills `buffer` from the operating system's random source.
pub fn fill_random(buffer: &mut [u8]) {
    getrandom::fill(buffer).expect("the operating system's random source is available");
}

/// A new bearer token: `prefix` then 256 random bits in URL-safe base64.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What we store of a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Writes a file only its owner can read, replacing none: fails if it exists.
pub fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(contents).and_then(|()| file.sync_all()).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests;
