//! The jail's `/etc` in the skeleton mode: a copy of the host's entries that programs need to run
//! (users and groups, names, the dynamic linker's cache, certificates, locales, interpreters'
//! settings, apt's and dpkg's for builds), never a service's configuration or keys, and never
//! [`SECRETS`]. A copy on the staging tmpfs, not bind mounts, so that a prepared runtime's overlay
//! over the skeleton sees it (an overlay's lower layer never shows what is mounted in it).

use std::os::unix::fs::symlink;
use std::path::Path;

use anyhow::Context;

use super::mounts::make_dir;

/// What of the host's `/etc` a skeleton root gets: what programs read to run (users, names,
/// libraries, certificates, locales, interpreters' settings), never a service's configuration or
/// keys.
const ALLOWED: [&str; 50] = [
    "adduser.conf",
    "alternatives",
    "apt",
    "bash.bashrc",
    "bindresvport.blacklist",
    "ca-certificates",
    "ca-certificates.conf",
    "debconf.conf",
    "debian_version",
    "deluser.conf",
    "dpkg",
    "environment",
    "fonts",
    "gai.conf",
    "gitconfig",
    "group",
    "host.conf",
    "hosts",
    "inputrc",
    "issue",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "locale.conf",
    "locale.gen",
    "localtime",
    "login.defs",
    "magic",
    "magic.mime",
    "mailcap",
    "manpath.config",
    "mime.types",
    "netconfig",
    "networks",
    "nsswitch.conf",
    "npmrc",
    "os-release",
    "passwd",
    "perl",
    "profile",
    "profile.d",
    "protocols",
    "resolv.conf",
    "rpc",
    "services",
    "shells",
    "ssl",
    "timezone",
    "ucf.conf",
];
/// Names of `/etc` entries a skeleton root gets by prefix (`python3.11`, `java-17-openjdk`).
const ALLOWED_PREFIXES: [&str; 3] = ["python3", "java-", "terminfo"];
/// Under `/etc`: what root in the jail could otherwise read, hidden even in a root file system
/// directory.
pub const SECRETS: [&str; 7] = ["shadow", "shadow-", "gshadow", "gshadow-", "ssh", "ssl/private", "sudoers.d"];
/// Entries copied with what their symlink points at, not as the symlink: `resolv.conf` is often a
/// link into `/run` (systemd-resolved), which the jail does not have.
const FOLLOWED: [&str; 1] = ["resolv.conf"];
/// How deep a copied directory may go.
const MAX_DEPTH: usize = 8;

/// Copies the allowed entries of `host_etc` into `etc`.
pub fn copy_allowed(host_etc: &Path, etc: &Path) -> anyhow::Result<()> {
    make_dir(etc)?;
    let entries = std::fs::read_dir(host_etc).with_context(|| format!("read {}", host_etc.display()))?;
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let allowed =
            ALLOWED.contains(&name.as_str()) || ALLOWED_PREFIXES.iter().any(|prefix| name.starts_with(prefix));
        if !allowed {
            continue;
        }
        if FOLLOWED.contains(&name.as_str()) {
            // A dangling link (no resolver configured) leaves the entry out.
            if std::fs::metadata(entry.path()).is_ok_and(|metadata| metadata.is_file()) {
                std::fs::copy(entry.path(), etc.join(&name)).with_context(|| format!("copy /etc/{name}"))?;
            }
            continue;
        }
        copy_tree(&entry.path(), &etc.join(&name), Path::new(&name), 0)?;
    }
    Ok(())
}

/// Copies `source` to `target`: directories recursively (at most [`MAX_DEPTH`] deep), files with
/// their mode, symlinks as symlinks, nothing else; `shown` is the path under `/etc`, checked
/// against [`SECRETS`].
fn copy_tree(source: &Path, target: &Path, shown: &Path, depth: usize) -> anyhow::Result<()> {
    if SECRETS.iter().any(|secret| shown == Path::new(secret)) || depth > MAX_DEPTH {
        return Ok(());
    }
    let metadata = std::fs::symlink_metadata(source).with_context(|| format!("read {}", source.display()))?;
    if metadata.file_type().is_symlink() {
        let link = std::fs::read_link(source).with_context(|| format!("read {}", source.display()))?;
        symlink(link, target).with_context(|| format!("link {}", target.display()))?;
    } else if metadata.is_dir() {
        make_dir(target)?;
        for entry in std::fs::read_dir(source).with_context(|| format!("read {}", source.display()))?.flatten() {
            let name = entry.file_name();
            copy_tree(&entry.path(), &target.join(&name), &shown.join(&name), depth + 1)?;
        }
    } else if metadata.is_file() {
        std::fs::copy(source, target).with_context(|| format!("copy {}", source.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::copy_allowed;

    #[test]
    fn only_allowed_entries_are_copied_without_secrets_and_resolv_conf_is_followed() {
        let host = tempfile::tempdir().expect("a host /etc");
        let run = tempfile::tempdir().expect("a host /run");
        let etc = host.path();
        std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\n").expect("passwd");
        std::fs::write(etc.join("shadow"), "root:hash").expect("shadow");
        std::fs::write(etc.join("service.env"), "DATABASE_PASSWORD=x").expect("a service's file");
        std::fs::create_dir_all(etc.join("ssl/private")).expect("ssl/private");
        std::fs::create_dir_all(etc.join("ssl/certs")).expect("ssl/certs");
        std::fs::write(etc.join("ssl/private/key.pem"), "KEY").expect("a key");
        std::fs::write(etc.join("ssl/certs/ca.pem"), "CA").expect("a certificate");
        symlink("/usr/bin/python3.11", etc.join("python3-link-is-kept")).expect("a link");
        std::fs::write(run.path().join("stub-resolv.conf"), "nameserver 127.0.0.53\n").expect("resolver");
        symlink(run.path().join("stub-resolv.conf"), etc.join("resolv.conf")).expect("resolv.conf link");

        let copy = tempfile::tempdir().expect("the jail's /etc");
        let jail_etc = copy.path().join("etc");
        copy_allowed(etc, &jail_etc).expect("copy");
        let mut names: Vec<String> = std::fs::read_dir(&jail_etc)
            .expect("read the copy")
            .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["passwd", "python3-link-is-kept", "resolv.conf", "ssl"]);
        assert!(!jail_etc.join("ssl/private").exists(), "ssl/private is never copied");
        assert_eq!(std::fs::read_to_string(jail_etc.join("ssl/certs/ca.pem")).expect("the certificate"), "CA");
        let resolv = std::fs::symlink_metadata(jail_etc.join("resolv.conf")).expect("resolv.conf");
        assert!(resolv.is_file(), "resolv.conf is copied as a file, not as a link into /run");
        assert_eq!(std::fs::read_to_string(jail_etc.join("resolv.conf")).expect("read"), "nameserver 127.0.0.53\n");
        assert!(
            std::fs::symlink_metadata(jail_etc.join("python3-link-is-kept")).expect("link").file_type().is_symlink()
        );
    }
}
