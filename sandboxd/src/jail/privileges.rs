//! What the jail's processes may do: `no_new_privs` (no setuid binary or file capability raises
//! them) and a bounding set of only the [`KEPT`] capabilities, which is all that root gets in the
//! jail. Everything that could reach past the namespaces is gone: `CAP_SYS_ADMIN` (mounts),
//! `CAP_DAC_READ_SEARCH` (`open_by_handle_at`), `CAP_SYS_PTRACE`, `CAP_SYS_MODULE`,
//! `CAP_SYS_RAWIO`, `CAP_MKNOD`, `CAP_NET_ADMIN`, `CAP_NET_RAW`, `CAP_SYS_TIME`, `CAP_SYS_BOOT`,
//! `CAP_SYS_RESOURCE`, …

use anyhow::Context;
use caps::{CapSet, Capability, CapsHashSet};

/// What root in the jail keeps: enough to own, chmod and chown its files, switch users and bind
/// low ports (Docker's default set without `MKNOD` and `NET_RAW`).
pub const KEPT: [Capability; 10] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
];

/// Limits what every process the init starts from now on can hold.
pub fn restrict_children() -> anyhow::Result<()> {
    nix::sys::prctl::set_no_new_privs().context("set no_new_privs")?;
    let kept: CapsHashSet = KEPT.into_iter().collect();
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
