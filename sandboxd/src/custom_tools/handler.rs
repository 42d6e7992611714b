//! Finding a custom tool's handler: the file inside the source bundle, the language it is written
//! in, and the function it exports.

use std::path::{Component, Path, PathBuf};

/// The language of a handler, from the request's `runtime` and the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Language {
    Python,
    /// `.ts`, `.mts` or `.cts`: needs tsx or a node that strips types.
    TypeScript,
    /// `.js`, `.mjs` or `.cjs` of a `typescript` tool: plain node is enough.
    JavaScript,
}

/// A handler file that exists inside the source bundle.
#[derive(Clone, Debug)]
pub(super) struct Handler {
    /// Canonical absolute path of the file.
    pub(super) path: PathBuf,
    /// The tool's directory (the file's parent): the working directory of the handler.
    pub(super) dir: PathBuf,
    /// The path as the request wrote it, for messages.
    pub(super) shown: String,
    pub(super) language: Language,
}

/// Resolves `handler_file`, relative to `bundle_root`, for a tool of `runtime`. The error is the
/// message for a bad request.
pub(super) fn resolve(bundle_root: &Path, handler_file: &str, runtime: &str) -> Result<Handler, String> {
    let written = Path::new(handler_file);
    if handler_file.is_empty() || handler_file.contains('\0') {
        return Err(format!("the handler file {handler_file:?} is empty or contains a NUL byte"));
    }
    if !written.components().all(|component| matches!(component, Component::Normal(_) | Component::CurDir)) {
        return Err(format!(
            "the handler file {handler_file} must be a path relative to the source bundle, without `..`"
        ));
    }
    let language = language(runtime, written)?;
    let root = std::fs::canonicalize(bundle_root)
        .map_err(|error| format!("the source bundle {} is not there: {error}", bundle_root.display()))?;
    let path = std::fs::canonicalize(root.join(written)).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => format!("the handler file {handler_file} does not exist in the source bundle"),
        _ => format!("cannot resolve the handler file {handler_file}: {error}"),
    })?;
    if !path.starts_with(&root) {
        return Err(format!("the handler file {handler_file} leads out of the source bundle"));
    }
    let metadata =
        std::fs::metadata(&path).map_err(|error| format!("cannot read the handler file {handler_file}: {error}"))?;
    if !metadata.is_file() {
        return Err(format!("the handler file {handler_file} is not a regular file"));
    }
    let dir = path.parent().expect("a file inside the bundle root has a parent").to_path_buf();
    Ok(Handler { path, dir, shown: handler_file.to_owned(), language })
}

/// Checks that `function` can name a function of a handler in `language`: an identifier, with
/// `$` allowed in JavaScript and TypeScript.
pub(super) fn check_function(language: Language, function: &str) -> Result<(), String> {
    let allowed = |c: char, first: bool| {
        c == '_'
            || c.is_ascii_alphabetic()
            || (!first && c.is_ascii_digit())
            || (c == '$' && language != Language::Python)
    };
    let mut chars = function.chars();
    let valid = chars.next().is_some_and(|first| allowed(first, true)) && chars.all(|c| allowed(c, false));
    if valid && function.len() <= 256 {
        Ok(())
    } else {
        Err(format!("the handler function {function:?} is not an identifier"))
    }
}

fn language(runtime: &str, written: &Path) -> Result<Language, String> {
    let extension = written.extension().and_then(|extension| extension.to_str()).unwrap_or("");
    match (runtime, extension) {
        ("python", _) => Ok(Language::Python),
        ("typescript", "ts" | "mts" | "cts") => Ok(Language::TypeScript),
        ("typescript", "js" | "mjs" | "cjs") => Ok(Language::JavaScript),
        ("typescript", _) => Err(format!(
            "the handler file {} of a typescript tool must end in .ts, .mts, .cts, .js, .mjs or .cjs",
            written.display()
        )),
        _ => Err(format!("unknown runtime {runtime:?}; custom tools run python or typescript")),
    }
}
