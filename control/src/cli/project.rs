//! A project directory as the CLI sees it: the files its bundle would hold, and its validated
//! manifest.

use std::path::{Path, PathBuf};

use dari_bundle::{BundleLimits, SelectedFiles, select_files};
use dari_protocol::manifest::{self, BundleFiles, Diagnostic, MANIFEST_FILE, Severity, Validation};

pub(crate) struct Project {
    pub root: PathBuf,
    pub files: Option<SelectedFiles>,
    pub validation: Validation,
}

/// The largest dari.yml we read.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Selects the project's files as `dari deploy` would and validates dari.yml against them. A
/// project that cannot be bundled (a symlink, a file over a limit) is reported as a diagnostic.
pub(crate) fn load(dir: &Path) -> anyhow::Result<Project> {
    let root = std::fs::canonicalize(dir)
        .map_err(|error| anyhow::anyhow!("open project directory {}: {error}", dir.display()))?;
    if !root.is_dir() {
        anyhow::bail!("{} is not a directory; pass the directory that holds dari.yml", dir.display());
    }
    let files = match select_files(&root, &BundleLimits::DEFAULT) {
        Ok(files) => files,
        Err(error) => {
            let diagnostic = project_error(error.to_string(), None);
            return Ok(Project {
                root,
                files: None,
                validation: Validation { manifest: None, diagnostics: vec![diagnostic] },
            });
        }
    };
    let validation = match files.read(MANIFEST_FILE, MAX_MANIFEST_BYTES) {
        Ok(bytes) => manifest::validate(&bytes, &files),
        Err(manifest::BundleReadError::NotFound) => {
            let message = if root.join(MANIFEST_FILE).exists() {
                "dari.yml is excluded from the bundle (is it ignored by .gitignore?)".to_owned()
            } else {
                format!("no dari.yml in {}", root.display())
            };
            let hint = "run dari in the directory that holds dari.yml, or pass that directory as an argument";
            Validation { manifest: None, diagnostics: vec![project_error(message, Some(hint))] }
        }
        Err(error) => {
            Validation { manifest: None, diagnostics: vec![project_error(format!("read dari.yml: {error}"), None)] }
        }
    };
    Ok(Project { root, files: Some(files), validation })
}

fn project_error(message: String, hint: Option<&str>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: MANIFEST_FILE.to_owned(),
        path: String::new(),
        line: None,
        column: None,
        message,
        hint: hint.map(str::to_owned),
    }
}

/// Counts errors and warnings for a summary line.
pub(crate) fn counts(diagnostics: &[Diagnostic]) -> (usize, usize) {
    let errors = diagnostics.iter().filter(|diagnostic| diagnostic.severity == Severity::Error).count();
    (errors, diagnostics.len() - errors)
}

pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("{n} {word}") } else { format!("{n} {word}s") }
}
