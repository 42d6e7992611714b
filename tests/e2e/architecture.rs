//! Architecture invariants, checked against the real dependency graph:
//! `protocol` does no I/O, and `sandboxd` knows nothing about SQL or the public API.

use std::process::Command;

use dari_tests::workspace_root;

/// The names of every crate a package depends on (normal dependencies, transitively).
fn dependencies(package: &str) -> Vec<String> {
    #[allow(clippy::disallowed_methods)] // The test asks cargo for the dependency graph.
    let output = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args(["tree", "--offline", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{lib}"])
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "cargo tree: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

#[track_caller]
fn check_absent(package: &str, forbidden: &[&str]) {
    let dependencies = dependencies(package);
    assert!(!dependencies.is_empty(), "cargo tree listed nothing for {package}");
    for name in forbidden {
        assert!(!dependencies.iter().any(|dependency| dependency == name), "{package} must not depend on {name}");
    }
}

const SQL: &[&str] = &["sqlx", "rusqlite", "tokio_postgres", "postgres", "diesel", "sea_orm"];
const SERVER_HTTP: &[&str] = &["axum", "actix_web", "warp", "tower_http", "dari_control"];

#[test]
fn protocol_does_no_io() {
    let mut forbidden = vec!["tokio", "reqwest", "hyper", "mio"];
    forbidden.extend_from_slice(SQL);
    forbidden.extend_from_slice(SERVER_HTTP);
    check_absent("dari-protocol", &forbidden);
}

#[test]
fn sandboxd_knows_nothing_about_sql_or_the_public_api() {
    let mut forbidden = SQL.to_vec();
    forbidden.extend_from_slice(SERVER_HTTP);
    check_absent("dari-sandboxd", &forbidden);
}

#[test]
fn nothing_outside_persistence_writes_sql() {
    fn visit(dir: &std::path::Path, offenders: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read control/src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name != "persistence") {
                    visit(&path, offenders);
                }
            } else if path.extension().is_some_and(|extension| extension == "rs")
                && path.file_name().is_some_and(|name| name != "persistence.rs")
            {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                if ["sqlx::query", "sqlx::raw_sql", "query_as(", "query_scalar("]
                    .iter()
                    .any(|needle| text.contains(needle))
                {
                    offenders.push(path.display().to_string());
                }
            }
        }
    }
    let mut offenders = Vec::new();
    visit(&workspace_root().join("control/src"), &mut offenders);
    assert!(offenders.is_empty(), "SQL outside control::persistence: {offenders:?}");
}
