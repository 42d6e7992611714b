//! The `sandbox` section: provider, image recipe, environment, secrets and resources.

use std::collections::BTreeMap;

use super::super::bundle_checks::require_file;
use super::super::names::{is_apt_package, is_env_name, is_runtime_version, reserved_env_name};
use super::super::reader::{Fields, OptionalField, Reader, child, describe, item};
use super::super::yaml::Node;
use super::super::{BundleFiles, Resources, Runtimes, Sandbox, SandboxProvider, WORKSPACE_PATH};
use super::llm::read_credential_name;
use super::read_bundle_path;

const SANDBOX_FIELDS: &[&str] = &[
    "provider",
    "provider_api_key_secret",
    "dockerfile",
    "env",
    "secrets",
    "resources",
    "runtimes",
    "packages",
    "setup",
    "internet_access",
    "storage_mount_path",
    "storage_binding",
];
/// Fields that describe a managed image, which a custom Dockerfile replaces.
const MANAGED_IMAGE_FIELDS: &[&str] = &["runtimes", "packages", "setup"];
const MAX_ENV_VALUE_BYTES: usize = 32 * 1024;

pub(crate) fn read_sandbox(reader: &mut Reader<'_>, node: Option<&Node>, files: &dyn BundleFiles) -> Option<Sandbox> {
    let Some(node) = node else { return Some(empty_sandbox()) };
    let fields = reader.map(node, "sandbox", SANDBOX_FIELDS)?;
    let mut valid = true;

    let provider = fields.get("provider").map(|node| {
        let provider = reader.string(node, "sandbox.provider")?;
        match provider.as_str() {
            "local" => Some(SandboxProvider::Local),
            "e2b" => Some(SandboxProvider::E2b),
            "modal" => Some(SandboxProvider::Modal),
            _ => {
                let hint = "use local, e2b or modal; leave it out for the server's default".to_owned();
                reader.error("sandbox.provider", Some(node.pos), format!("unknown provider {}", describe(node)), hint);
                None
            }
        }
    });
    let provider_api_key_secret = fields
        .get("provider_api_key_secret")
        .map(|node| read_credential_name(reader, node, "sandbox.provider_api_key_secret"));
    let dockerfile = fields.get("dockerfile").map(|node| {
        let path = read_bundle_path(reader, node, "sandbox.dockerfile")?;
        let hint = format!("add {path} to the project, or fix the path");
        require_file(reader, files, "sandbox.dockerfile", node.pos, &path, &hint)?;
        Some(path)
    });
    if let Some(dockerfile_pos) = fields.key_pos("dockerfile") {
        for key in MANAGED_IMAGE_FIELDS.iter().filter(|key| fields.has(key)) {
            let message = format!("sandbox.dockerfile cannot be combined with sandbox.{key}");
            let hint = format!(
                "either build the whole image with the Dockerfile (line {}), or remove dockerfile and keep {key}",
                dockerfile_pos.line
            );
            reader.error(&fields.path_of(key), fields.key_pos(key), message, hint);
            valid = false;
        }
    }
    let secrets = fields.get("secrets").map(|node| read_secrets(reader, node));
    let env = fields.get("env").map(|node| read_env(reader, node));
    if let (Some(Some(env)), Some(Some(secrets))) = (&env, &secrets) {
        for name in secrets.iter().filter(|name| env.contains_key(*name)) {
            let message = format!("{name} is both a literal in sandbox.env and a secret");
            let hint = "keep it in one place: secrets for sensitive values, env for the rest".to_owned();
            reader.error(&child("sandbox.env", name), fields.get("env").map(|node| node.pos), message, hint);
            valid = false;
        }
    }
    let resources = fields.get("resources").map(|node| read_resources(reader, node));
    let runtimes = fields.get("runtimes").map(|node| read_runtimes(reader, node));
    let apt_packages = fields.get("packages").map(|node| read_packages(reader, node));
    let setup_script = fields.get("setup").map(|node| {
        let setup = reader.map(node, "sandbox.setup", &["script"])?;
        let script_node = setup.required(reader, "script", "add script: scripts/setup.sh")?;
        let script = read_bundle_path(reader, script_node, "sandbox.setup.script")?;
        let hint = format!("add {script} to the project, or fix the path");
        require_file(reader, files, "sandbox.setup.script", script_node.pos, &script, &hint)?;
        Some(script)
    });
    let internet_access = fields.get("internet_access").map(|node| reader.boolean(node, "sandbox.internet_access"));
    let storage_mount_path = fields.get("storage_mount_path").map(|node| {
        let path = reader.string(node, "sandbox.storage_mount_path")?;
        if path.trim_end_matches('/') == WORKSPACE_PATH {
            return Some(WORKSPACE_PATH.to_owned());
        }
        let hint =
            format!("storage is always mounted at {WORKSPACE_PATH}; remove the field or set it to {WORKSPACE_PATH}");
        reader.error(
            "sandbox.storage_mount_path",
            Some(node.pos),
            format!("unsupported mount path {}", describe(node)),
            hint,
        );
        None
    });
    let storage_binding = fields.get("storage_binding").map(|node| read_binding_name(reader, node));

    let sandbox = Sandbox {
        provider: provider.valid()?,
        provider_api_key_secret: provider_api_key_secret.valid()?,
        dockerfile: dockerfile.valid()?,
        env: env.valid()?.unwrap_or_default(),
        secrets: secrets.valid()?.unwrap_or_default(),
        resources: resources.valid()?.unwrap_or_default(),
        runtimes: runtimes.valid()?.unwrap_or_default(),
        apt_packages: apt_packages.valid()?.unwrap_or_default(),
        setup_script: setup_script.valid()?,
        internet_access: internet_access.valid()?.unwrap_or(false),
        storage_mount_path: storage_mount_path.valid()?.unwrap_or_else(|| WORKSPACE_PATH.to_owned()),
        storage_binding: storage_binding.valid()?,
    };
    valid.then_some(sandbox)
}

fn empty_sandbox() -> Sandbox {
    Sandbox {
        provider: None,
        provider_api_key_secret: None,
        dockerfile: None,
        env: BTreeMap::new(),
        secrets: Vec::new(),
        resources: Resources::default(),
        runtimes: Runtimes::default(),
        apt_packages: Vec::new(),
        setup_script: None,
        internet_access: false,
        storage_mount_path: WORKSPACE_PATH.to_owned(),
        storage_binding: None,
    }
}

fn read_secrets(reader: &mut Reader<'_>, node: &Node) -> Option<Vec<String>> {
    let items = reader.list(node, "sandbox.secrets", "list credential names, e.g. [OPENAI_API_KEY]")?;
    let mut secrets: Vec<String> = Vec::new();
    let mut valid = true;
    for (index, secret_node) in items.iter().enumerate() {
        let path = item("sandbox.secrets", index);
        match read_credential_name(reader, secret_node, &path) {
            Some(name) if secrets.contains(&name) => {
                reader.warning(
                    &path,
                    Some(secret_node.pos),
                    format!("{name} is listed twice"),
                    "remove the repeat".to_owned(),
                );
            }
            Some(name) if reserved_env_name(&name).is_some() => {
                let reason = reserved_env_name(&name).unwrap_or_default();
                let message = format!("`{name}` is reserved: {reason}");
                reader.error(
                    &path,
                    Some(secret_node.pos),
                    message,
                    "store the credential under another name".to_owned(),
                );
                valid = false;
            }
            Some(name) => secrets.push(name),
            None => valid = false,
        }
    }
    valid.then_some(secrets)
}

fn read_env(reader: &mut Reader<'_>, node: &Node) -> Option<BTreeMap<String, String>> {
    let entries = reader.named_map(node, "sandbox.env")?;
    let mut env = BTreeMap::new();
    let mut valid = true;
    for (key, value_node) in entries {
        let path = child("sandbox.env", &key.text);
        if !is_env_name(&key.text) {
            let hint = "use letters, digits and _, not starting with a digit".to_owned();
            reader.error(&path, Some(key.pos), format!("invalid environment variable name `{}`", key.text), hint);
            valid = false;
            continue;
        }
        if let Some(reason) = reserved_env_name(&key.text) {
            reader.error(&path, Some(key.pos), format!("`{}` is reserved: {reason}", key.text), "rename it".to_owned());
            valid = false;
            continue;
        }
        if value_node.is_null() {
            env.insert(key.text.clone(), String::new());
            continue;
        }
        let Some(value) = reader.string(value_node, &path) else {
            valid = false;
            continue;
        };
        if value.contains('\0') || value.len() > MAX_ENV_VALUE_BYTES {
            let message = format!("must be text without NUL bytes, at most {MAX_ENV_VALUE_BYTES} bytes");
            reader.error(&path, Some(value_node.pos), message, "keep large or binary values in a file in the bundle");
            valid = false;
            continue;
        }
        env.insert(key.text.clone(), value);
    }
    valid.then_some(env)
}

fn read_resources(reader: &mut Reader<'_>, node: &Node) -> Option<Resources> {
    let fields = reader.map(node, "sandbox.resources", &["cpu", "memory_mb"])?;
    let cpu = fields.get("cpu").map(|node| reader.positive_int(node, "sandbox.resources.cpu"));
    let memory_mb = fields.get("memory_mb").map(|node| reader.positive_int(node, "sandbox.resources.memory_mb"));
    Some(Resources { cpu: cpu.valid()?, memory_mb: memory_mb.valid()? })
}

fn read_runtimes(reader: &mut Reader<'_>, node: &Node) -> Option<Runtimes> {
    let fields = reader.map(node, "sandbox.runtimes", &["node", "python", "go"])?;
    let mut version = |key: &str| fields.get(key).map(|node| read_version(reader, &fields, node, key));
    let node = version("node");
    let python = version("python");
    let go = version("go");
    Some(Runtimes { node: node.valid()?, python: python.valid()?, go: go.valid()? })
}

fn read_version(reader: &mut Reader<'_>, fields: &Fields<'_>, node: &Node, key: &str) -> Option<String> {
    let path = fields.path_of(key);
    let version = reader.string(node, &path)?;
    if is_runtime_version(&version) {
        return Some(version);
    }
    let hint = format!("write a version such as \"20\" or \"3.12\" for {key}");
    reader.error(&path, Some(node.pos), format!("invalid version {}", describe(node)), hint);
    None
}

fn read_packages(reader: &mut Reader<'_>, node: &Node) -> Option<Vec<String>> {
    let fields = reader.map(node, "sandbox.packages", &["apt"])?;
    let Some(apt_node) = fields.get("apt") else { return Some(Vec::new()) };
    let items = reader.list(apt_node, "sandbox.packages.apt", "list Debian package names, e.g. [curl, git]")?;
    let mut packages = Vec::new();
    let mut valid = true;
    for (index, package_node) in items.iter().enumerate() {
        let path = item("sandbox.packages.apt", index);
        match reader.string(package_node, &path) {
            Some(package) if is_apt_package(&package) => packages.push(package),
            Some(_) => {
                let hint = "write a Debian package name such as curl, optionally pinned as curl=7.88.1-10".to_owned();
                reader.error(
                    &path,
                    Some(package_node.pos),
                    format!("invalid package {}", describe(package_node)),
                    hint,
                );
                valid = false;
            }
            None => valid = false,
        }
    }
    valid.then_some(packages)
}

fn read_binding_name(reader: &mut Reader<'_>, node: &Node) -> Option<String> {
    let name = reader.text(node, "sandbox.storage_binding")?;
    let valid = name.len() <= 128 && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
    if valid {
        return Some(name);
    }
    let hint = "use the name given to `dari storage connect`: letters, digits, -, _ and .".to_owned();
    reader.error("sandbox.storage_binding", Some(node.pos), format!("invalid binding name {}", describe(node)), hint);
    None
}
