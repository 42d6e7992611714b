use dari_protocol::manifest::{Resources, Runtimes, Sandbox as SandboxSection};

use super::{SetupInputs, build_script, needs_setup, setup_digest};

fn section(apt: &[&str], runtimes: Runtimes, script: Option<&str>) -> SandboxSection {
    SandboxSection {
        provider: None,
        provider_api_key_secret: None,
        dockerfile: None,
        env: Default::default(),
        secrets: Vec::new(),
        resources: Resources::default(),
        runtimes,
        apt_packages: apt.iter().map(|package| (*package).to_owned()).collect(),
        setup_script: script.map(str::to_owned),
        internet_access: false,
        storage_mount_path: "/workspace".to_owned(),
        storage_binding: None,
    }
}

fn digest(org_id: &str, section: &SandboxSection, script: Option<&[u8]>) -> String {
    setup_digest(&SetupInputs { org_id, base: "host", section, script })
}

#[track_caller]
fn check_script(section: &SandboxSection, expect: &[&str], absent: &[&str]) {
    let script = build_script(section);
    for line in expect {
        assert!(script.lines().any(|candidate| candidate == *line), "missing {line:?} in:\n{script}");
    }
    for text in absent {
        assert!(!script.contains(text), "unexpected {text:?} in:\n{script}");
    }
}

#[test]
fn digest_names_the_setup_and_nothing_else() {
    let setup = section(&["curl", "git"], Runtimes::default(), Some("setup.sh"));
    let same = digest("org_a", &setup, Some(b"echo hi\n"));
    assert_eq!(same.len(), 64);
    // The packages' order and repeats do not matter; the rest of the section does not either.
    let mut reordered = section(&["git", "curl", "git"], Runtimes::default(), Some("setup.sh"));
    reordered.env.insert("A".to_owned(), "1".to_owned());
    reordered.resources.memory_mb = Some(64);
    assert_eq!(digest("org_a", &reordered, Some(b"echo hi\n")), same);
    // The script's bytes, its path, the packages, the runtimes, the organization and the base do.
    assert_ne!(digest("org_a", &setup, Some(b"echo hi \n")), same);
    assert_ne!(
        digest("org_a", &section(&["curl", "git"], Runtimes::default(), Some("s.sh")), Some(b"echo hi\n")),
        same
    );
    assert_ne!(digest("org_a", &section(&["curl"], Runtimes::default(), Some("setup.sh")), Some(b"echo hi\n")), same);
    let node = Runtimes { node: Some("18".to_owned()), ..Runtimes::default() };
    assert_ne!(digest("org_a", &section(&["curl", "git"], node, Some("setup.sh")), Some(b"echo hi\n")), same);
    assert_ne!(digest("org_b", &setup, Some(b"echo hi\n")), same);
    let other_base = SetupInputs { org_id: "org_a", base: "/srv/rootfs", section: &setup, script: Some(b"echo hi\n") };
    assert_ne!(setup_digest(&other_base), same);
    // Field boundaries are part of the digest: "ab" + "c" is not "a" + "bc".
    assert_ne!(
        digest("org_a", &section(&["ab", "c"], Runtimes::default(), None), None),
        digest("org_a", &section(&["a", "bc"], Runtimes::default(), None), None)
    );
}

#[test]
fn a_section_needs_setup_when_it_asks_for_packages_runtimes_or_a_script() {
    assert!(!needs_setup(&section(&[], Runtimes::default(), None)));
    assert!(needs_setup(&section(&["hello"], Runtimes::default(), None)));
    assert!(needs_setup(&section(&[], Runtimes { go: Some("1.19".to_owned()), ..Runtimes::default() }, None)));
    assert!(needs_setup(&section(&[], Runtimes::default(), Some("setup.sh"))));
}

#[test]
fn build_script_installs_packages_then_runtimes_then_runs_the_script() {
    check_script(
        &section(&["hello", "curl=7.88.1-10"], Runtimes::default(), None),
        &[
            "set -eu",
            "apt-get -q -o APT::Sandbox::User=root update",
            "apt-get -q -o APT::Sandbox::User=root install -y --no-install-recommends 'hello' 'curl=7.88.1-10'",
        ],
        &["check_runtime node", "/bundle"],
    );
    check_script(
        &section(&[], Runtimes { python: Some("3.11".to_owned()), ..Runtimes::default() }, None),
        &[
            "apt-get -q -o APT::Sandbox::User=root install -y --no-install-recommends 'python3' 'python3-pip' 'python3-venv'",
            "check_runtime python '3.11' \"$(python3 -c 'import platform; print(platform.python_version())')\"",
        ],
        &[],
    );
    check_script(
        &section(&[], Runtimes::default(), Some("scripts/it's.sh")),
        &[
            "cd /bundle",
            "if [ -x './scripts/it'\\''s.sh' ] && [ \"$(head -c 2 './scripts/it'\\''s.sh')\" = '#!' ]; then './scripts/it'\\''s.sh'; else /bin/sh './scripts/it'\\''s.sh'; fi",
        ],
        &["apt-get"],
    );
}
