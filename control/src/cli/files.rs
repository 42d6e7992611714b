//! `dari files upload PATH`: upload a file, to reference it by id from `file` and `image` content
//! blocks. Prints the stored file as JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use reqwest::multipart::{Form, Part};

use super::ExitCode;
use super::client::{ApiArgs, ApiClient, print_json};

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Upload a file; prints its id, name, size, content type and sha256.
    Upload {
        /// The file to upload. Its name (without directories) becomes the file's name.
        path: PathBuf,
    },
}

pub(crate) async fn run(command: FilesCommand, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(api)?;
    let output = match command {
        FilesCommand::Upload { path } => {
            // Streamed from disk, with a content type guessed from the extension (the server
            // reads images' types from their bytes).
            let part = Part::file(&path).await.with_context(|| format!("open {}", path.display()))?;
            let part = match path.file_name() {
                Some(name) => part.file_name(form_filename(&name.to_string_lossy())),
                None => part,
            };
            // The name goes as UTF-8, as browsers send it, not percent-encoded.
            let form = Form::new().percent_encode_noop().part("file", part);
            client.send(client.request(Method::POST, "/v1/files").multipart(form)).await?
        }
    };
    print_json(&output)?;
    Ok(ExitCode::Success)
}

/// A name fit for the quoted `filename` of a form part: what HTML forms escape, escaped alike.
fn form_filename(name: &str) -> String {
    name.replace('"', "%22").replace('\r', "%0D").replace('\n', "%0A")
}
