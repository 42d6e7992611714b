//! `dari validate [DIR] [--json]`: checks a project the way `dari deploy` and the server will.

use std::path::Path;

use dari_protocol::manifest::{Harness, Manifest};
use serde_json::json;

use super::ExitCode;
use super::project::{self, counts, plural};

pub(crate) fn run(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let project = project::load(dir)?;
    let validation = &project.validation;
    let code = if validation.manifest.is_some() { ExitCode::Success } else { ExitCode::Invalid };
    if json {
        let output = json!({
            "valid": validation.manifest.is_some(),
            "project_root": project.root,
            "diagnostics": validation.diagnostics,
            "manifest": validation.manifest,
        });
        println!("{}", serde_json::to_string_pretty(&output)?);
        return Ok(code);
    }
    for diagnostic in &validation.diagnostics {
        println!("{diagnostic}");
    }
    let (errors, warnings) = counts(&validation.diagnostics);
    match &validation.manifest {
        Some(manifest) => println!("{}", summary(manifest, warnings)),
        None => println!("dari.yml is invalid: {}, {}", plural(errors, "error"), plural(warnings, "warning")),
    }
    Ok(code)
}

/// One line that says what the agent is: `dari.yml is valid: agent echo (customRuntimeServer), ...`.
fn summary(manifest: &Manifest, warnings: usize) -> String {
    let harness = match manifest.harness {
        Harness::Pi => "pi",
        Harness::CustomRuntimeServer(_) => "customRuntimeServer",
    };
    let mut line = format!(
        "dari.yml is valid: agent {} ({harness}), {}, {}, {}, {}",
        manifest.name,
        plural(manifest.built_in_tools.len(), "built-in tool"),
        plural(manifest.custom_tools.len(), "custom tool"),
        plural(manifest.skills.len(), "skill"),
        plural(manifest.extensions.len(), "extension"),
    );
    if warnings > 0 {
        line.push_str(&format!("; {}", plural(warnings, "warning")));
    }
    line
}
