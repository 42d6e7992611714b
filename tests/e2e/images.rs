//! The recipes in `images/`: the rootfs script parses and refuses bad arguments, the Dockerfiles
//! agree with how sandboxd is built and with the server's default E2B template, and (with
//! `DARI_TEST_ROOTFS=1`, since it downloads Debian packages; CI sets it) the script builds a root
//! in which sandboxd runs, under chroot and as the local jail's root.

use std::process::{Command, Output};

use dari_tests::binaries::{SANDBOXD_PROFILE, binary};
use dari_tests::{chroot_program, is_root, workspace_root};

/// Set to 1 to build a root file system from a Debian mirror (network, a few minutes).
const ENV_TEST_ROOTFS: &str = "DARI_TEST_ROOTFS";
/// The packages the base image and the rootfs both hold.
const PACKAGES: [&str; 4] = ["bash", "coreutils", "python3", "ca-certificates"];

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|error| panic!("read {path}: {error}"))
}

fn rootfs_script(args: &[&str]) -> Output {
    #[allow(clippy::disallowed_methods)] // The script is what is under test.
    let output = Command::new("bash").arg(workspace_root().join("images/rootfs.sh")).args(args).output();
    output.expect("run bash")
}

#[test]
fn the_rootfs_script_parses_and_refuses_bad_arguments() {
    #[allow(clippy::disallowed_methods)] // `bash -n` checks the script's syntax.
    let syntax = Command::new("bash").arg("-n").arg(workspace_root().join("images/rootfs.sh")).output();
    let syntax = syntax.expect("run bash -n");
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));

    let help = rootfs_script(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("OUTPUT_DIR"));

    let stderr = |output: &Output| String::from_utf8_lossy(&output.stderr).into_owned();
    let missing = rootfs_script(&[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("name the output directory"), "{}", stderr(&missing));
    let unknown = rootfs_script(&["--bogus", "/tmp/x"]);
    assert!(stderr(&unknown).contains("unknown option --bogus"), "{}", stderr(&unknown));

    let occupied = tempfile::tempdir().expect("a directory");
    std::fs::write(occupied.path().join("keep.txt"), "mine").expect("write");
    let refused = rootfs_script(&[occupied.path().to_str().expect("a UTF-8 path")]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("is not empty"), "{}", stderr(&refused));
    assert!(occupied.path().join("keep.txt").exists(), "nothing of an occupied directory is touched");
}

#[test]
fn the_dockerfiles_build_sandboxd_as_it_ships_and_name_the_default_template() {
    let dockerfile = read("images/Dockerfile");
    let cargo_toml = read("Cargo.toml");
    assert!(dockerfile.contains(&format!("--profile {SANDBOXD_PROFILE}")), "the shipping profile");
    assert!(cargo_toml.contains(&format!("[profile.{SANDBOXD_PROFILE}]")));
    assert!(dockerfile.contains("-C target-feature=+crt-static"), "a static daemon");
    assert!(dockerfile.contains("-unknown-linux-gnu"), "an explicit target, so build scripts stay dynamic");
    let rust_version = cargo_toml
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .expect("the workspace's rust-version")
        .trim_matches('"');
    assert!(dockerfile.contains(&format!("FROM rust:{rust_version}-")), "the workspace's toolchain");
    let last_stage = dockerfile.rsplit("\nFROM ").next().expect("stages");
    assert!(last_stage.contains(r#"ENTRYPOINT ["/usr/local/bin/sandboxd", "run"]"#), "{last_stage}");
    assert!(last_stage.contains("COPY --from=build /out/sandboxd /usr/local/bin/sandboxd"));
    for package in PACKAGES {
        assert!(last_stage.contains(package), "the base image has {package}");
        assert!(read("images/rootfs.sh").contains(package), "the rootfs has {package}");
    }

    // The E2B template is built from the base image, under the name the server uses by default.
    let e2b_dockerfile = read("images/e2b/e2b.Dockerfile");
    let tag = dockerfile
        .lines()
        .find_map(|line| line.split_once(" -t ").map(|(_, rest)| rest.split_whitespace().next().unwrap_or("")))
        .expect("the Dockerfile says how to tag the base image");
    assert!(e2b_dockerfile.lines().any(|line| line == format!("FROM {tag}")), "{e2b_dockerfile}");
    let e2b_toml = read("images/e2b/e2b.toml");
    let default_template = dari_control::sandboxes::e2b::DEFAULT_TEMPLATE;
    assert!(e2b_toml.contains(&format!("template_name = \"{default_template}\"")), "{e2b_toml}");
    assert!(e2b_toml.contains("dockerfile = \"e2b.Dockerfile\""), "{e2b_toml}");
    assert!(workspace_root().join("images/e2b/e2b.Dockerfile").is_file());
}

#[test]
fn the_rootfs_script_builds_a_root_in_which_sandboxd_runs() {
    if std::env::var(ENV_TEST_ROOTFS).as_deref() != Ok("1") {
        eprintln!("skipped: set {ENV_TEST_ROOTFS}=1 to build a root file system from a Debian mirror");
        return;
    }
    let scratch = tempfile::tempdir().expect("a directory");
    let root = scratch.path().join("rootfs");
    let sandboxd = binary("sandboxd");
    let built = rootfs_script(&["--sandboxd", sandboxd.to_str().expect("a UTF-8 path"), root.to_str().expect("UTF-8")]);
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    for path in ["usr/local/bin/sandboxd", "bin/bash", "usr/bin/python3", "etc/ssl/certs/ca-certificates.crt"] {
        assert!(root.join(path).exists(), "the root has {path}");
    }
    for dir in ["workspace", "tmp", "proc", "dev", "run/dari"] {
        let entries = std::fs::read_dir(root.join(dir)).unwrap_or_else(|error| panic!("{dir}: {error}")).count();
        assert_eq!(entries, 0, "{dir} is an empty mount point");
    }
    assert_eq!(std::fs::read(root.join("etc/resolv.conf")).expect("resolv.conf"), b"", "a placeholder");

    if !is_root() {
        eprintln!("skipped the chroot check: it needs root (CI runs as root)");
        return;
    }
    let Some(chroot) = chroot_program() else {
        eprintln!("skipped the chroot check: chroot is not installed");
        return;
    };
    std::fs::write(root.join("workspace/hello.txt"), "hello from the rootfs\n").expect("write");
    #[allow(clippy::disallowed_methods)] // chroot runs the daemon inside the new root.
    let output = Command::new(&chroot)
        .arg(&root)
        .args(["/usr/local/bin/sandboxd", "tool", "read", r#"{"path":"hello.txt"}"#, "--workspace", "/workspace"])
        .env_clear()
        .output()
        .expect("run chroot");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("hello from the rootfs"));
    #[allow(clippy::disallowed_methods)] // The root's python3 runs: its libraries are there too.
    let python = Command::new(&chroot)
        .arg(&root)
        .args(["/usr/bin/python3", "-c", "import ssl; print(ssl.OPENSSL_VERSION)"])
        .env_clear()
        .output()
        .expect("run chroot");
    assert!(python.status.success(), "{}", String::from_utf8_lossy(&python.stderr));

    // The same root as the local jail's (`--sandbox-root`): bash and python3 run, read-only.
    let workspace = scratch.path().join("workspace");
    std::fs::create_dir(&workspace).expect("a workspace");
    let script =
        "echo hello > /workspace/made.txt; python3 -c 'print(40 + 2)'; (: > /usr/x) 2>/dev/null || echo read-only";
    #[allow(clippy::disallowed_methods)] // The jail is the real binary's.
    let jailed = Command::new(binary("sandboxd"))
        .args(["jail", "--sandbox-id", "sbx_images_rootfs", "--workspace"])
        .arg(&workspace)
        .arg("--root")
        .arg(&root)
        .args(["--", "/bin/bash", "-c", script])
        .output()
        .expect("run sandboxd jail --root");
    let stdout = String::from_utf8_lossy(&jailed.stdout);
    assert!(jailed.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&jailed.stderr));
    assert_eq!(stdout, "42\nread-only\n");
    assert_eq!(std::fs::read_to_string(workspace.join("made.txt")).expect("the file on the host"), "hello\n");
}
