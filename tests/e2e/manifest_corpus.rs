//! The corpus of invalid manifests in `tests/manifests/invalid/`: each case must fail with the
//! field path its `expect:` lines name, both in the library and through `dari validate --json`.

use std::path::PathBuf;

use dari_protocol::manifest::{self, Diagnostic, MemoryFiles, Severity};
use dari_tests::binaries::dari;
use dari_tests::txtar::{self, Txtar};
use dari_tests::{workspace_root, write_tree};

/// Every case gets this system prompt unless it defines the file itself.
const DEFAULT_FILES: &[(&str, &str)] = &[("prompts/system.md", "You are helpful.\n")];

struct Case {
    name: String,
    archive: Txtar,
}

fn corpus() -> Vec<Case> {
    let dir = workspace_root().join("tests/manifests/invalid");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read the corpus directory")
        .map(|entry| entry.expect("read a corpus entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "txtar"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| Case {
            name: path.file_stem().expect("a file name").to_string_lossy().into_owned(),
            archive: txtar::parse(&std::fs::read_to_string(&path).expect("read a corpus case")),
        })
        .collect()
}

impl Case {
    fn files(&self) -> Vec<(&str, &str)> {
        let mut files: Vec<(&str, &str)> =
            self.archive.files.iter().map(|(path, text)| (path.as_str(), text.as_str())).collect();
        for (path, text) in DEFAULT_FILES {
            if !files.iter().any(|(existing, _)| existing == path) {
                files.push((path, text));
            }
        }
        files
    }

    /// Expected qualified field paths; `(document)` means the document as a whole.
    fn expected(&self) -> Vec<String> {
        let expected: Vec<String> = self
            .archive
            .values("expect")
            .map(|path| if path == "(document)" { String::new() } else { path.to_owned() })
            .collect();
        assert!(!expected.is_empty(), "case {} has no expect: line", self.name);
        expected
    }
}

fn error_paths(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics
        .iter()
        .filter(|diagnostic| diagnostic.severity == Severity::Error)
        .map(Diagnostic::qualified_path)
        .collect()
}

#[test]
fn the_corpus_covers_every_rule() {
    let cases = corpus();
    assert!(cases.len() >= 40, "the corpus has only {} cases", cases.len());
}

#[test]
fn every_invalid_manifest_fails_with_its_field_path() {
    let mut failures = Vec::new();
    for case in corpus() {
        let mut files = MemoryFiles::new();
        for (path, text) in case.files() {
            files.insert(path, text);
        }
        let dari_yml = files.get("dari.yml").unwrap_or_default().to_vec();
        let validation = manifest::validate(&dari_yml, &files);
        let found = error_paths(&validation.diagnostics);
        if validation.manifest.is_some() {
            failures.push(format!("{}: accepted", case.name));
            continue;
        }
        for expected in case.expected() {
            if !found.contains(&expected) {
                failures.push(format!("{}: expected an error at {expected:?}, found {found:?}", case.name));
            }
        }
        for diagnostic in &validation.diagnostics {
            let positioned = diagnostic.line.is_some() && diagnostic.column.is_some();
            if diagnostic.file == "dari.yml" && !diagnostic.path.is_empty() && !positioned {
                failures.push(format!("{}: no line and column for {diagnostic}", case.name));
            }
            if diagnostic.hint.as_deref().is_none_or(str::is_empty) {
                failures.push(format!("{}: no hint for {diagnostic}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn dari_validate_reports_the_corpus_with_exit_code_1() {
    let mut failures = Vec::new();
    for case in corpus() {
        let project = tempfile::tempdir().expect("create a project directory");
        write_tree(project.path(), case.files().into_iter().map(|(path, text)| (path, text.as_bytes())));
        let dir = project.path().to_str().expect("a UTF-8 temp path");
        let output = dari(&["validate", "--json", dir]);
        if output.status.code() != Some(1) {
            failures.push(format!("{}: exit code {:?}", case.name, output.status.code()));
            continue;
        }
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("validate --json prints JSON");
        let diagnostics: Vec<Diagnostic> = serde_json::from_value(report["diagnostics"].clone()).expect("diagnostics");
        let found = error_paths(&diagnostics);
        for expected in case.expected() {
            if !found.contains(&expected) {
                failures.push(format!("{}: expected {expected:?}, found {found:?}", case.name));
            }
        }
        assert_eq!(report["valid"], false);
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
