//! Checks of the files a manifest names: that they are in the bundle, and readable as text.

use super::reader::Reader;
use super::yaml::Pos;
use super::{BundleFiles, BundleReadError};

/// The largest file the validator reads: tool.yml, schemas, SKILL.md, package.json, tool.ts.
pub(crate) const MAX_READ_BYTES: u64 = 1024 * 1024;

/// Reports a missing file at the manifest field that names it.
pub(crate) fn require_file(
    reader: &mut Reader<'_>,
    files: &dyn BundleFiles,
    field: &str,
    pos: Pos,
    file: &str,
    hint: &str,
) -> Option<()> {
    if files.contains(file) {
        return Some(());
    }
    let message = if dir_exists(files, file) {
        format!("{file} is a directory, not a file")
    } else {
        format!("file {file} is not in the bundle")
    };
    reader.error(field, Some(pos), message, hint.to_owned());
    None
}

/// Whether any bundle file lies under `dir/`.
pub(crate) fn dir_exists(files: &dyn BundleFiles, dir: &str) -> bool {
    let prefix = format!("{dir}/");
    files.paths().any(|path| path.starts_with(&prefix))
}

/// Reads a bundle file as UTF-8 text, reporting why not at the manifest field that names it.
pub(crate) fn read_text(
    reader: &mut Reader<'_>,
    files: &dyn BundleFiles,
    field: &str,
    pos: Option<Pos>,
    file: &str,
) -> Option<String> {
    let bytes = match files.read(file, MAX_READ_BYTES) {
        Ok(bytes) => bytes,
        Err(BundleReadError::NotFound) => {
            reader.error(field, pos, format!("file {file} is not in the bundle"), "add the file, or fix the path");
            return None;
        }
        Err(error) => {
            reader.error(field, pos, format!("cannot read {file}: {error}"), "make the file smaller and readable");
            return None;
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(_) => {
            reader.error(field, pos, format!("{file} is not valid UTF-8 text"), "save it as UTF-8".to_owned());
            None
        }
    }
}

/// Whether `dir/package.json` declares entry points under `pi.extensions`, each present in the
/// bundle. A broken package.json is reported.
pub(crate) fn package_json_declares_extensions(reader: &mut Reader<'_>, files: &dyn BundleFiles, dir: &str) -> bool {
    let file = format!("{dir}/package.json");
    if !files.contains(&file) {
        return false;
    }
    let Some(text) = read_text(reader, files, "", None, &file) else { return false };
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(json) => json,
        Err(error) => {
            let at = error.line();
            let pos =
                Pos { line: u32::try_from(at).unwrap_or(u32::MAX), column: u32::try_from(error.column()).unwrap_or(0) };
            let mut file_reader = Reader { file: &file, diagnostics: reader.diagnostics };
            file_reader.error("", Some(pos), format!("invalid JSON: {error}"), "fix the JSON syntax at that position");
            return false;
        }
    };
    let Some(entries) = json.pointer("/pi/extensions").and_then(serde_json::Value::as_array) else { return false };
    let mut file_reader = Reader { file: &file, diagnostics: reader.diagnostics };
    let mut all_present = !entries.is_empty();
    for (index, entry) in entries.iter().enumerate() {
        let field = format!("pi.extensions[{index}]");
        let Some(entry) = entry.as_str() else {
            file_reader.error(&field, None, "must be a path to an entry point", "list paths such as \"./index.ts\"");
            all_present = false;
            continue;
        };
        let resolved = match super::names::bundle_path(&format!("{dir}/{entry}")) {
            Ok(resolved) if resolved.starts_with(&format!("{dir}/")) => resolved,
            _ => {
                file_reader.error(
                    &field,
                    None,
                    format!("{entry:?} is not a path inside {dir}"),
                    "list paths relative to package.json, inside its directory",
                );
                all_present = false;
                continue;
            }
        };
        if !files.contains(&resolved) {
            file_reader.error(
                &field,
                None,
                format!("entry point {resolved} is not in the bundle"),
                "add the file, or fix the path in package.json",
            );
            all_present = false;
        }
    }
    all_present
}
