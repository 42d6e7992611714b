//! The local jail, tried from the inside: each test runs a shell in `sandboxd jail` (the real
//! binary) and tries to break out — read a host file, see host processes, reach the network,
//! write outside /workspace, escape through /proc or a symlink, take more memory or processes
//! than allowed — and every attempt must fail. `jail/through_control.rs` does the same through a
//! whole session.
//!
//! These tests need root (mounts, cgroups), as CI runs them; elsewhere they fail saying so, unless
//! DARI_TEST_ALLOW_NO_ROOT=1 skips them.

mod layers;
mod runtimes;
mod through_control;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dari_tests::binaries::binary;
use dari_tests::control::ControlServer;
use dari_tests::fake_llm::{FakeLlm, Reply, ScriptedToolCall};

use crate::execution::{finished, send};

/// True when the test may run; panics with the reason when it needs root and is not allowed to
/// skip.
pub(crate) fn running_as_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("DARI_TEST_ALLOW_NO_ROOT").is_some(),
        "this test needs root (mounts and cgroups for the jail); run the tests as root, as CI does, or set \
         DARI_TEST_ALLOW_NO_ROOT=1 to skip it"
    );
    eprintln!("skipped: not root");
    false
}

/// Sends a message whose model answer is one `bash` call (then "done"), and returns the ended
/// message and the call's result as the model saw it (empty when the call never ran).
pub(crate) async fn bash_in_session(
    fake: &FakeLlm,
    control: &ControlServer,
    session_id: &str,
    command: &str,
) -> (serde_json::Value, String) {
    let before = fake.requests().len();
    let call = serde_json::json!({"command": command});
    fake.push(Reply::tool_calls([ScriptedToolCall::new("call_try", "bash", &call)]));
    fake.push(Reply::text("done"));
    let message_id = send(control, session_id, "try it").await;
    let message = finished(control, session_id, &message_id).await;
    let requests = fake.requests();
    let output = requests.get(before + 1).and_then(|request| request.tool_result_texts().pop()).unwrap_or_default();
    (message, output)
}

struct Jailed {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `sh -c script` in a new jail around `workspace`, with `flags` for `sandboxd jail`.
fn in_jail(sandbox_id: &str, workspace: &Path, flags: &[&str], script: &str) -> Jailed {
    let output = jail_command(sandbox_id, workspace, flags, script).output().expect("run sandboxd jail");
    jailed(output)
}

fn jail_command(sandbox_id: &str, workspace: &Path, flags: &[&str], script: &str) -> Command {
    #[allow(clippy::disallowed_methods)] // The test starts the real binary.
    let mut command = Command::new(binary("sandboxd"));
    command
        .args(["jail", "--sandbox-id", sandbox_id, "--workspace"])
        .arg(workspace)
        .args(flags)
        .args(["--", "/bin/sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn jailed(output: Output) -> Jailed {
    Jailed {
        status: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A host directory with a secret file and, inside it, the workspace.
fn host_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let host = tempfile::tempdir().expect("a host directory");
    std::fs::write(host.path().join("secret.txt"), "host-secret-5d1f").expect("write the host's secret");
    let workspace = host.path().join("workspace");
    std::fs::create_dir(&workspace).expect("create the workspace");
    (host, workspace)
}

#[test]
fn the_jail_has_its_own_hostname_processes_and_read_only_root() {
    if !running_as_root() {
        return;
    }
    let (_host, workspace) = host_dir();
    let script = r#"
        echo "hostname=$(hostname)"
        echo "pid=$$"
        n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo "processes=$n"
        grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status
        for target in /x /usr/x /etc/x /run/dari/x /proc/sys/kernel/hostname; do
            (echo x > "$target") 2>/dev/null && echo "wrote $target"
        done
        echo inside > /workspace/made-inside && echo "wrote /workspace"
        echo private > /tmp/made-inside && echo "wrote /tmp"
        ls /sys >/dev/null 2>&1 && echo "sys is there"
        mount -t tmpfs none /tmp 2>/dev/null && echo "mounted"
        # The init and the daemon cannot be traced or read, though they run as the same user.
        head -c 1 /proc/1/environ >/dev/null 2>&1 && echo "read the init's environment"
        ls -l /proc/1/exe >/dev/null 2>&1 && readlink /proc/1/exe >/dev/null 2>&1 && echo "saw the init's binary"
        # No new namespaces (seccomp), no keyring, no terminal of the host.
        unshare -U true 2>/dev/null && echo "made a user namespace"
        python3 -c 'import ctypes, sys; sys.exit(0 if ctypes.CDLL(None).syscall(250, 0, 0, 0, 0, 0) != -1 else 1)' && echo "used the keyring"
        (: > /dev/tty) 2>/dev/null && echo "opened a terminal"
        (echo 1 > /proc/irq/default_smp_affinity) 2>/dev/null && echo "wrote /proc/irq"
        echo "etc: $(ls /etc | tr '\n' ' ')"
        true
    "#;
    let jailed = in_jail("sbx_jail_view", &workspace, &[], script);
    assert_eq!(jailed.status, Some(0), "{}\n{}", jailed.stdout, jailed.stderr);
    let out = &jailed.stdout;
    assert!(out.contains("hostname=sbx_jail_view"), "{out}");
    assert!(out.contains("pid=2"), "the program is pid 2, under the jail's init: {out}");
    let processes: usize =
        out.lines().find_map(|line| line.strip_prefix("processes=")).and_then(|n| n.parse().ok()).expect("a count");
    assert!(processes <= 3, "only the jail's processes are visible, not the host's: {out}");
    // CHOWN, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT: nothing that
    // mounts, traces, loads modules, opens files by handle or reads files whatever their mode.
    assert!(out.contains("CapEff:\t00000000000405f1"), "{out}");
    for escape in ["read the init", "saw the init", "made a user namespace", "used the keyring", "opened a terminal"] {
        assert!(!out.contains(escape), "{escape}: {out}");
    }
    assert!(!out.contains("wrote /proc/irq"), "{out}");
    let etc = out.lines().find_map(|line| line.strip_prefix("etc: ")).expect("the list of /etc");
    assert!(etc.contains("passwd") && etc.contains("ssl"), "{etc}");
    for private in ["shadow", "sudoers", "ssh", "postgresql", "cron"] {
        assert!(!etc.split(' ').any(|entry| entry.starts_with(private)), "/etc/{private} is in the jail: {etc}");
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(!out.contains("wrote /x") && !out.contains("wrote /usr") && !out.contains("wrote /etc"), "{out}");
    assert!(!out.contains("wrote /run") && !out.contains("wrote /proc"), "{out}");
    assert!(out.contains("wrote /workspace") && out.contains("wrote /tmp"), "{out}");
    assert!(!out.contains("sys is there") && !out.contains("mounted"), "{out}");
    assert_eq!(std::fs::read_to_string(workspace.join("made-inside")).expect("the file on the host"), "inside\n");
    assert!(!Path::new("/tmp/made-inside").exists(), "the jail's /tmp is its own");
}

#[test]
fn host_files_stay_out_of_reach_by_path_symlink_or_proc() {
    if !running_as_root() {
        return;
    }
    let (host, workspace) = host_dir();
    let secret = host.path().join("secret.txt");
    // A link planted in the workspace (as a restored archive could) points at the host's file.
    std::os::unix::fs::symlink(&secret, workspace.join("planted-link")).expect("plant a symlink");
    let script = format!(
        r#"
        for path in {secret} /workspace/planted-link /workspace/../secret.txt /proc/1/root{secret} \
                    /proc/self/root{secret} /proc/1/cwd/../secret.txt /etc/shadow; do
            content=$(cat "$path" 2>/dev/null) && echo "read $path: $content"
        done
        ls /proc/1/root/ | tr '\n' ' '; echo
        ls / | tr '\n' ' '; echo
        cat /proc/kcore 2>/dev/null | head -c 1 | wc -c
        "#,
        secret = secret.display()
    );
    let jailed = in_jail("sbx_jail_files", &workspace, &[], &script);
    assert_eq!(jailed.status, Some(0), "{}\n{}", jailed.stdout, jailed.stderr);
    let out = &jailed.stdout;
    assert!(!out.contains("host-secret"), "the host's file was read: {out}");
    assert!(!out.lines().any(|line| line.starts_with("read /etc/shadow: ") && line.len() > 18), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let (proc_root, root) = (lines[lines.len() - 3], lines[lines.len() - 2]);
    assert!(
        proc_root.is_empty() || proc_root == root,
        "/proc/1/root is closed to the jail (the init is not dumpable), or at most the jail's root: {proc_root}"
    );
    assert!(root.contains("workspace") && !root.contains("root ") && !root.contains("home"), "{root}");
    assert_eq!(lines[lines.len() - 1].trim(), "0", "/proc/kcore is hidden");
}

#[test]
fn without_host_network_only_loopback_exists() {
    if !running_as_root() {
        return;
    }
    let (_host, workspace) = host_dir();
    let listener = TcpListener::bind("127.0.0.1:0").expect("a host listener");
    let port = listener.local_addr().expect("its address").port();
    let script = format!(
        r#"
        for interface in /proc/sys/net/ipv4/conf/*; do echo "interface ${{interface##*/}}"; done
        (echo hello > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo "reached the host"
        (echo hello > /dev/tcp/10.0.0.1/80) 2>&1 | head -1
        true
        "#
    );
    let jailed = in_jail("sbx_jail_net", &workspace, &[], &format!("exec bash -c '{}'", script.replace('\'', "'\\''")));
    assert_eq!(jailed.status, Some(0), "{}\n{}", jailed.stdout, jailed.stderr);
    let out = &jailed.stdout;
    let interfaces: Vec<&str> = out.lines().filter_map(|line| line.strip_prefix("interface ")).collect();
    assert_eq!(interfaces, ["all", "default", "lo"], "{out}");
    assert!(!out.contains("reached the host"), "{out}");
    assert!(out.contains("Network is unreachable"), "{out}");

    // With the host's network, the same connection arrives.
    listener.set_nonblocking(false).expect("blocking");
    let script = format!("exec bash -c 'echo hello > /dev/tcp/127.0.0.1/{port} && echo reached'");
    let jailed = in_jail("sbx_jail_net2", &workspace, &["--host-network"], &script);
    assert!(jailed.stdout.contains("reached"), "{}\n{}", jailed.stdout, jailed.stderr);
    let (mut stream, _) = listener.accept().expect("the jail's connection");
    let mut received = String::new();
    stream.read_to_string(&mut received).expect("read");
    assert_eq!(received, "hello\n");
}

#[test]
fn memory_past_the_limit_is_killed_and_counted() {
    if !running_as_root() {
        return;
    }
    let (_host, workspace) = host_dir();
    let script = r#"
        python3 -c 'block = bytearray(256 * 1024 * 1024); print("allocated", len(block))'
        echo "python=$?"
        echo "events=$SANDBOXD_MEMORY_EVENTS limit=$SANDBOXD_MEMORY_LIMIT_MB"
        grep oom_kill "$SANDBOXD_MEMORY_EVENTS"
    "#;
    let jailed = in_jail("sbx_jail_mem", &workspace, &["--memory-mb", "64"], script);
    let out = &jailed.stdout;
    assert!(!out.contains("allocated"), "{out}");
    assert!(out.contains("python=137"), "killed by SIGKILL: {out}\n{}", jailed.stderr);
    assert!(out.contains("events=/run/dari/memory.events limit=64"), "{out}");
    let kills: u64 = out
        .lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|count| count.trim().parse().ok())
        .expect("an oom_kill count");
    assert!(kills >= 1, "{out}");
    assert_eq!(std::fs::read_dir(&workspace).expect("the workspace").count(), 0);
    assert!(cgroup_gone("sbx_jail_mem"), "the sandbox's cgroups are removed when it ends");
}

#[test]
fn processes_are_bounded_and_a_fork_bomb_ends_with_the_jail() {
    if !running_as_root() {
        return;
    }
    let (_host, workspace) = host_dir();
    // First a bounded count, so that a missing limit fails here and never meets the bomb.
    // The loop runs in a subshell: dash gives up on a failed fork.
    let script = r#"
        (for i in $(seq 60); do sleep 300 & done) 2>/dev/null
        n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo "processes=$n"
    "#;
    let started = Instant::now();
    let jailed = in_jail("sbx_jail_pids", &workspace, &["--pids-max", "32"], script);
    let processes: usize = jailed
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("processes="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count: {}\n{}", jailed.stdout, jailed.stderr));
    assert!(processes <= 32, "at most pids-max processes: {}", jailed.stdout);
    assert!(started.elapsed() < Duration::from_secs(60), "the sleeps ended with the jail, not after 300 s");

    let bomb = r#"
        bomb() { bomb | bomb & }
        bomb
        i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done
        n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo "processes=$n"
    "#;
    let started = Instant::now();
    let jailed = in_jail("sbx_jail_bomb", &workspace, &["--pids-max", "64"], bomb);
    assert!(started.elapsed() < Duration::from_secs(60), "the bomb ended with the jail");
    if let Some(count) = jailed.stdout.lines().find_map(|line| line.strip_prefix("processes=")) {
        assert!(count.parse::<usize>().expect("a count") <= 64, "{}", jailed.stdout);
    }
    assert!(cgroup_gone("sbx_jail_bomb"));
}

#[test]
fn an_unprivileged_user_gets_the_jail_in_a_user_namespace() {
    if !running_as_root() {
        return;
    }
    let setpriv = Path::new("/usr/bin/setpriv");
    let userns_allowed =
        std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone").map_or(true, |value| value.trim() == "1");
    if !setpriv.exists() || !userns_allowed {
        eprintln!("skipped: no setpriv, or unprivileged user namespaces are disabled on this machine");
        return;
    }
    let (host, workspace) = host_dir();
    let nobody = "65534";
    nix::unistd::chown(&workspace, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown the workspace");
    // The binary must be reachable by nobody: copy it next to the workspace.
    let sandboxd = host.path().join("sandboxd");
    std::fs::copy(binary("sandboxd"), &sandboxd).expect("copy sandboxd");
    std::fs::set_permissions(host.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    #[allow(clippy::disallowed_methods)] // The test starts the real binary as another user.
    let output = Command::new(setpriv)
        .args(["--reuid", nobody, "--regid", nobody, "--clear-groups"])
        .arg(&sandboxd)
        .args(["jail", "--sandbox-id", "sbx_jail_userns", "--workspace"])
        .arg(&workspace)
        .args(["--", "/bin/sh", "-c", "id -u; hostname; echo made > /workspace/by-nobody; cat /etc/shadow | wc -c"])
        .stdin(Stdio::null())
        .output()
        .expect("run sandboxd jail as nobody");
    let jailed = jailed(output);
    assert_eq!(jailed.status, Some(0), "{}\n{}", jailed.stdout, jailed.stderr);
    let lines: Vec<&str> = jailed.stdout.lines().collect();
    assert_eq!(lines[..2], ["0", "sbx_jail_userns"], "root of its own user namespace: {}", jailed.stdout);
    assert_eq!(lines[2].trim(), "0", "/etc/shadow is hidden");
    let made = std::fs::metadata(workspace.join("by-nobody")).expect("the file on the host");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&made), 65534, "owned by nobody on the host");
    assert!(jailed.stderr.is_empty() || !jailed.stderr.contains("error"), "{}", jailed.stderr);
}

#[test]
fn a_root_file_system_directory_is_the_whole_read_only_root() {
    if !running_as_root() {
        return;
    }
    let sandboxd = binary("sandboxd");
    if has_interpreter(&std::fs::read(&sandboxd).expect("read sandboxd")) {
        // The root below holds no libraries: only the static daemon (as built for the tests
        // unless DARI_TEST_SANDBOXD_PROFILE=dev) runs in it.
        eprintln!("skipped: the tests' sandboxd is not static");
        return;
    }
    let (host, workspace) = host_dir();
    let root = host.path().join("rootfs");
    for dir in ["workspace", "tmp", "dev", "proc", "run/dari", "etc"] {
        std::fs::create_dir_all(root.join(dir)).expect("a mount point");
    }
    std::fs::write(root.join("etc/marker"), "from the root directory\n").expect("a marker");
    std::fs::write(root.join("etc/shadow"), "root:secret-hash").expect("a shadow file");
    let run = |arguments: &str, tool_workspace: &str| {
        #[allow(clippy::disallowed_methods)] // The test starts the real binary.
        let output = Command::new(&sandboxd)
            .args(["jail", "--sandbox-id", "sbx_jail_rootfs", "--workspace"])
            .arg(&workspace)
            .arg("--root")
            .arg(&root)
            .args(["--", "/run/dari/sandboxd", "tool"])
            .args(arguments.split('|'))
            .args(["--workspace", tool_workspace])
            .output()
            .expect("run sandboxd jail --root");
        jailed(output)
    };
    let read = run(r#"read|{"path":"/etc/marker"}"#, "/");
    assert!(read.stdout.contains("from the root directory"), "{}\n{}", read.stdout, read.stderr);
    let shadow = run(r#"read|{"path":"/etc/shadow"}"#, "/");
    assert!(!shadow.stdout.contains("secret-hash"), "/etc/shadow is hidden: {}", shadow.stdout);
    let listed = run(r#"ls|{"path":"/"}"#, "/");
    for entry in ["workspace", "etc", "run", "proc"] {
        assert!(listed.stdout.contains(entry), "{entry}: {}", listed.stdout);
    }
    assert!(!listed.stdout.contains("usr"), "nothing of the host's root: {}", listed.stdout);
    let write = run(r#"write|{"path":"/etc/new","content":"x"}"#, "/");
    assert!(write.stdout.contains("\"is_error\":true"), "the root is read-only: {}", write.stdout);
    let write = run(r#"write|{"path":"new","content":"x"}"#, "/workspace");
    assert!(write.stdout.contains("\"is_error\":false"), "{}\n{}", write.stdout, write.stderr);
    assert_eq!(std::fs::read_to_string(workspace.join("new")).expect("the file on the host"), "x");
}

/// True when an ELF64 executable names a dynamic loader (a `PT_INTERP` program header).
fn has_interpreter(elf: &[u8]) -> bool {
    let read = |at: usize, len: usize| {
        elf.get(at..at + len).map(|bytes| bytes.iter().rev().fold(0u64, |n, b| n << 8 | u64::from(*b)))
    };
    let (Some(table), Some(entry_size), Some(entries)) = (read(32, 8), read(54, 2), read(56, 2)) else { return true };
    (0..entries).any(|index| read((table + index * entry_size) as usize, 4) == Some(3))
}

/// True when no cgroup directory of the sandbox is left on the host.
fn cgroup_gone(sandbox_id: &str) -> bool {
    let mut found = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                if path.ends_with(Path::new("dari-sandboxes").join(sandbox_id)) {
                    found.push(path.clone());
                }
                if path.components().count() < 12 {
                    stack.push(path);
                }
            }
        }
    }
    found.is_empty()
}
