//! The shapes names and paths must have in a manifest, each as a small pure check.

use serde::{Deserialize, Serialize};

/// The built-in tools every sandbox offers. Their names are reserved for custom tools, even when
/// an agent disables them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltInTool {
    Read,
    Bash,
    Edit,
    Write,
    Grep,
    Find,
    Ls,
}

// === impl BuiltInTool ===

impl BuiltInTool {
    pub const ALL: [BuiltInTool; 7] = [
        BuiltInTool::Read,
        BuiltInTool::Bash,
        BuiltInTool::Edit,
        BuiltInTool::Write,
        BuiltInTool::Grep,
        BuiltInTool::Find,
        BuiltInTool::Ls,
    ];

    /// What an agent gets when `built_in_tools` is omitted.
    pub const DEFAULT: [BuiltInTool; 4] = [BuiltInTool::Read, BuiltInTool::Bash, BuiltInTool::Edit, BuiltInTool::Write];

    pub fn name(self) -> &'static str {
        match self {
            BuiltInTool::Read => "read",
            BuiltInTool::Bash => "bash",
            BuiltInTool::Edit => "edit",
            BuiltInTool::Write => "write",
            BuiltInTool::Grep => "grep",
            BuiltInTool::Find => "find",
            BuiltInTool::Ls => "ls",
        }
    }

    pub fn from_name(name: &str) -> Option<BuiltInTool> {
        BuiltInTool::ALL.into_iter().find(|tool| tool.name() == name)
    }

    pub fn names() -> Vec<&'static str> {
        BuiltInTool::ALL.iter().map(|tool| tool.name()).collect()
    }
}

/// Stored credential and secret names: `^[A-Z_][A-Z0-9_]*$`.
pub fn is_credential_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z' | b'_'))
        && bytes.all(|byte| matches!(byte, b'A'..=b'Z' | b'0'..=b'9' | b'_'))
}

/// Environment variable names a shell can use: `^[A-Za-z_][A-Za-z0-9_]*$`.
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(byte) if byte.is_ascii_alphabetic() || byte == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// Why a sandbox may not have a variable of this name, if it may not: the dynamic loader's
/// (`LD_*`, `GLIBC_TUNABLES`) would reach the processes that build the sandbox, and `SANDBOXD_*`
/// configures its daemon.
pub fn reserved_env_name(name: &str) -> Option<&'static str> {
    if name.starts_with("LD_") || name == "GLIBC_TUNABLES" {
        Some("the dynamic loader's variables are not allowed in a sandbox's environment")
    } else if name.starts_with("SANDBOXD_") {
        Some("SANDBOXD_* configures the sandbox's daemon, which the platform sets")
    } else {
        None
    }
}

/// Tool names as model APIs accept them: `^[A-Za-z0-9_-]{1,64}$`.
pub(crate) fn is_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Skill and extension names after the Agent Skills standard: lower-case letters, digits and
/// single inner hyphens, at most 64 characters.
pub(crate) fn is_slug(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// A Debian package, optionally pinned: `name` or `name=version`, in the characters Debian
/// allows. Anything else could smuggle options or words into the install command.
pub(crate) fn is_apt_package(spec: &str) -> bool {
    let (name, version) = match spec.split_once('=') {
        Some((name, version)) => (name, Some(version)),
        None => (spec, None),
    };
    let name_ok = name.len() >= 2
        && name.len() <= 128
        && name.bytes().next().is_some_and(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"+-.:".contains(&byte));
    let version_ok = version.is_none_or(|version| {
        !version.is_empty()
            && version.len() <= 128
            && version.bytes().next().is_some_and(|byte| byte.is_ascii_digit())
            && version.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".+-~:".contains(&byte))
    });
    name_ok && version_ok
}

/// A runtime version such as `20`, `3.11`, `1.22.4` or `lts`.
pub(crate) fn is_runtime_version(version: &str) -> bool {
    (1..=32).contains(&version.len())
        && version.bytes().next().is_some_and(|byte| byte.is_ascii_alphanumeric())
        && version.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-_".contains(&byte))
}

/// A handler's function name: a Python or JavaScript identifier.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && name.len() <= 128
}

/// Normalises a repo-relative path written in a manifest to a bundle path, or says what is wrong.
/// `./prompts/system.md` becomes `prompts/system.md`; a trailing `/` is dropped.
pub(crate) fn bundle_path(written: &str) -> Result<String, String> {
    if written.starts_with('/') {
        return Err("must be relative to the project root, not absolute".to_owned());
    }
    if written.contains('\\') {
        return Err("must use `/` between directories, not `\\`".to_owned());
    }
    if written.len() > 1024 {
        return Err("is longer than 1024 bytes".to_owned());
    }
    let mut parts = Vec::new();
    for part in written.trim_end_matches('/').split('/') {
        match part {
            "." => {}
            "" => return Err("must not contain empty path segments (`//`)".to_owned()),
            ".." => return Err("must stay inside the project: `..` is not allowed".to_owned()),
            _ if part.chars().any(char::is_control) => {
                return Err("must not contain control characters".to_owned());
            }
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err("must name a file or directory inside the project".to_owned());
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_names() {
        for good in ["A", "_", "OPENAI_API_KEY", "K8S_TOKEN", "_X1"] {
            assert!(is_credential_name(good), "{good}");
        }
        for bad in ["", "a", "1A", "OPENAI-KEY", "A B", "Ä", "key"] {
            assert!(!is_credential_name(bad), "{bad}");
        }
    }

    #[test]
    fn apt_packages_refuse_option_smuggling() {
        for good in ["curl", "ca-certificates", "libssl3", "g++", "python3.11", "curl=7.88.1-10+deb12u5"] {
            assert!(is_apt_package(good), "{good}");
        }
        for bad in ["", "-y", "--allow-unauthenticated", "a", "curl;rm", "Curl", "curl wget", "curl=", "curl=$(id)"] {
            assert!(!is_apt_package(bad), "{bad}");
        }
    }

    #[test]
    fn bundle_paths() {
        assert_eq!(bundle_path("./prompts/system.md"), Ok("prompts/system.md".to_owned()));
        assert_eq!(bundle_path("tools/x/"), Ok("tools/x".to_owned()));
        for bad in ["/etc/passwd", "../x", "a/../../b", "a//b", ".", "", "a\\b", "a/\u{0}"] {
            assert!(bundle_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn slugs() {
        for good in ["review", "code-review", "a1"] {
            assert!(is_slug(good), "{good}");
        }
        for bad in ["", "Review", "-a", "a-", "a--b", "a_b", &"a".repeat(65)] {
            assert!(!is_slug(bad), "{bad}");
        }
    }
}
