//! What the jail's processes may do: `no_new_privs` (no setuid binary or file capability raises
//! them), a bounding set of only the [`KEPT`] capabilities, which is all that root gets in the
//! jail, and a seccomp filter against the kernel interfaces that unprivileged code can still reach
//! and that container escapes go through ([`DENIED`]).
//!
//! Everything that could reach past the namespaces is gone: `CAP_SYS_ADMIN` (mounts),
//! `CAP_DAC_READ_SEARCH` (`open_by_handle_at`), `CAP_DAC_OVERRIDE` (reading the host files the
//! root shares, whatever their mode), `CAP_SYS_PTRACE`, `CAP_SYS_MODULE`, `CAP_SYS_RAWIO`,
//! `CAP_MKNOD`, `CAP_NET_ADMIN`, `CAP_NET_RAW`, `CAP_SYS_TIME`, `CAP_SYS_BOOT`,
//! `CAP_SYS_RESOURCE`, …

use std::collections::BTreeMap;

use anyhow::Context;
use caps::{CapSet, Capability, CapsHashSet};
use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

/// What root in the jail keeps: enough to chown its files, switch users and bind low ports
/// (Docker's default set without `DAC_OVERRIDE`, `FOWNER`, `MKNOD` and `NET_RAW`).
pub const KEPT: [Capability; 8] = [
    Capability::CAP_CHOWN,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
];

/// What a build of a prepared runtime keeps besides [`KEPT`]: apt and dpkg, as root, work on
/// files they gave to other users (`_apt`'s downloads). A build sees no more of the host than a
/// session does, and what it writes lands in its layer.
pub const KEPT_FOR_BUILDS: [Capability; 2] = [Capability::CAP_DAC_OVERRIDE, Capability::CAP_FOWNER];

/// System calls the jail's processes get `EPERM` for: new user namespaces (through which the
/// kernel's namespaced code, nf_tables among it, would be in reach), other namespaces, the kernel
/// keyring (shared with the host's root), `userfaultfd`, `io_uring`, `perf_event_open`, `bpf`, and
/// what the dropped capabilities already forbid.
const DENIED: [libc::c_long; 22] = [
    libc::SYS_setns,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_userfaultfd,
    libc::SYS_perf_event_open,
    libc::SYS_bpf,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_open_by_handle_at,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
];

/// Limits what every process the init starts from now on can hold and call; `build` keeps
/// [`KEPT_FOR_BUILDS`] too.
pub fn restrict_children(build: bool) -> anyhow::Result<()> {
    nix::sys::prctl::set_no_new_privs().context("set no_new_privs")?;
    install_seccomp_filter().context("install the seccomp filter")?;
    let for_builds = if build { &KEPT_FOR_BUILDS[..] } else { &[] };
    let kept: CapsHashSet = KEPT.into_iter().chain(for_builds.iter().copied()).collect();
    for capability in caps::all().difference(&kept) {
        // A capability this kernel does not know is not in the bounding set either.
        if caps::has_cap(None, CapSet::Bounding, *capability).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, *capability)
                .with_context(|| format!("drop {capability} from the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).context("clear the ambient capabilities")?;
    caps::clear(None, CapSet::Inheritable).context("clear the inheritable capabilities")?;
    Ok(())
}

/// Gives up every capability of the calling process, once it has started what needed them.
pub fn drop_own() -> anyhow::Result<()> {
    caps::clear(None, CapSet::Effective).context("clear the effective capabilities")?;
    caps::clear(None, CapSet::Permitted).context("clear the permitted capabilities")?;
    Ok(())
}

/// Installs the jail's two filters: [`DENIED`] and namespace flags give `EPERM`; `clone3`, whose
/// flags a filter cannot read, gives `ENOSYS`, so that the C library falls back to `clone`.
fn install_seccomp_filter() -> anyhow::Result<()> {
    let arch = std::env::consts::ARCH.try_into().context("seccomp does not know this architecture")?;
    // One rule per namespace flag: a rule's conditions must all hold, the rules of a call any.
    let with_namespace = |argument: u8| -> anyhow::Result<Vec<SeccompRule>> {
        [libc::CLONE_NEWUSER, libc::CLONE_NEWNS, libc::CLONE_NEWPID, libc::CLONE_NEWNET, libc::CLONE_NEWCGROUP]
            .into_iter()
            .map(|flag| {
                let flag = u64::try_from(flag).context("a namespace flag")?;
                let condition =
                    SeccompCondition::new(argument, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)?;
                Ok(SeccompRule::new(vec![condition])?)
            })
            .collect()
    };
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|call| (*call, Vec::new())).collect();
    denied.insert(libc::SYS_unshare, with_namespace(0)?);
    denied.insert(libc::SYS_clone, with_namespace(0)?);
    let eperm = u32::try_from(libc::EPERM).context("EPERM")?;
    let denied = SeccompFilter::new(denied, SeccompAction::Allow, SeccompAction::Errno(eperm), arch)?;
    let enosys = u32::try_from(libc::ENOSYS).context("ENOSYS")?;
    let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let clone3 = SeccompFilter::new(clone3, SeccompAction::Allow, SeccompAction::Errno(enosys), arch)?;
    for filter in [denied, clone3] {
        let program: BpfProgram = filter.try_into()?;
        seccompiler::apply_filter(&program)?;
    }
    Ok(())
}
