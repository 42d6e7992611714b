//! Prepared runtimes in `sandboxd jail` itself: `--build-layer` takes every write of the program
//! into the layer directory and none into the host's files, `--layer` shows that layer read-only,
//! over the host's system directories and over a `--root` directory alike.

use std::path::Path;

use super::{host_dir, in_jail, running_as_root};

#[test]
fn a_build_writes_only_its_layer_and_a_session_sees_it_read_only() {
    if !running_as_root() {
        return;
    }
    let (host, workspace) = host_dir();
    let layer = host.path().join("layer");
    let bundle = host.path().join("bundle");
    std::fs::create_dir(&bundle).expect("create the bundle directory");
    std::fs::write(bundle.join("setup.sh"), "echo from-the-bundle\n").expect("write the setup script");
    // A host file the build deletes: the session must not see it, the host must keep it.
    let doomed = Path::new("/usr/local/share").join(format!("dari-layer-test-{}", std::process::id()));
    std::fs::write(&doomed, "kept").expect("write a host file under /usr/local/share");
    let probe = format!("/usr/local/bin/dari-layer-probe-{}", std::process::id());

    let bind = format!("{}:/bundle", bundle.display());
    let build_flags = ["--build-layer", layer.to_str().expect("UTF-8"), "--bind-ro", &bind];
    let script = format!(
        "set -e; sh /bundle/setup.sh; echo probe > {probe}; mkdir -p /opt/tool; echo opt > /opt/tool/file; \
         echo etc > /etc/dari-layer-probe; rm {doomed}; test -s /var/lib/dpkg/status && echo dpkg-state-seen; \
         touch /bundle/x 2>/dev/null || echo bundle-read-only",
        doomed = doomed.display()
    );
    let built = in_jail("layer-build", &workspace, &build_flags, &script);
    assert_eq!(built.status, Some(0), "{}{}", built.stdout, built.stderr);
    assert_eq!(built.stdout, "from-the-bundle\ndpkg-state-seen\nbundle-read-only\n", "{}", built.stderr);
    assert!(!Path::new(&probe).exists() && !Path::new("/etc/dari-layer-probe").exists(), "the host is untouched");
    assert_eq!(std::fs::read_to_string(&doomed).expect("the host keeps its file"), "kept");
    assert!(layer.join("usr/upper/local/bin").is_dir() && layer.join("root/upper/opt/tool/file").is_file());
    assert!(!layer.join("root/upper/bundle").exists(), "the bundle's mount point is not left in the layer");

    let session_flags = ["--layer", layer.to_str().expect("UTF-8")];
    let script = format!(
        "cat {probe} /opt/tool/file /etc/dari-layer-probe; test -e {doomed} || echo deleted; \
         (echo x > {probe}) 2>&1 | grep -o 'Read-only file system'; ls /bundle 2>&1 | grep -o 'No such file'",
        doomed = doomed.display()
    );
    let session = in_jail("layer-session", &workspace, &session_flags, &script);
    assert_eq!(session.stdout, "probe\nopt\netc\ndeleted\nRead-only file system\nNo such file\n", "{}", session.stderr);

    let bare = in_jail("layer-bare", &workspace, &[], &format!("test -e {probe} || echo absent"));
    assert_eq!(bare.stdout, "absent\n", "a jail without the layer does not see it: {}", bare.stderr);
    std::fs::remove_file(&doomed).expect("remove the host file");
}

#[test]
fn a_root_directory_is_layered_as_a_whole() {
    if !running_as_root() {
        return;
    }
    let (host, workspace) = host_dir();
    let root = host.path().join("rootfs");
    for dir in ["workspace", "tmp", "dev", "proc", "run/dari", "usr/bin", "lib/x86_64-linux-gnu", "lib64"] {
        std::fs::create_dir_all(root.join(dir)).expect("create the root's directories");
    }
    for file in ["/usr/bin/sh", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"] {
        if !Path::new(file).exists() {
            eprintln!("skipped: {file} is not where a Debian amd64 system has it");
            return;
        }
        std::fs::copy(file, root.join(&file[1..])).expect("copy the shell and its libraries");
    }
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("link /bin");
    let layer = host.path().join("layer");
    let root_flag = root.to_str().expect("UTF-8");
    let build_flags = ["--root", root_flag, "--build-layer", layer.to_str().expect("UTF-8")];
    let built = in_jail("layer-root-build", &workspace, &build_flags, "echo made > /made-by-the-build");
    assert_eq!(built.status, Some(0), "{}{}", built.stdout, built.stderr);
    assert!(!root.join("made-by-the-build").exists(), "the root directory is untouched");

    let session_flags = ["--root", root_flag, "--layer", layer.to_str().expect("UTF-8")];
    let script = "read line < /made-by-the-build; echo $line; (echo x > /other) 2>&1";
    let session = in_jail("layer-root-session", &workspace, &session_flags, script);
    assert!(session.stdout.starts_with("made\n") && session.stdout.contains("Read-only"), "{}", session.stdout);
}
