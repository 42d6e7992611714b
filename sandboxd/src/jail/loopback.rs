//! Bringing up `lo` in a new network namespace: one rtnetlink `RTM_NEWLINK` request that sets
//! `IFF_UP` on interface 1 (the loopback device is always the first interface of a namespace),
//! and its acknowledgement. Built by hand: two fixed-size headers do not need a netlink crate.

use std::os::fd::AsRawFd;

use anyhow::Context;
use nix::sys::socket::{AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket};

const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 2;
const IFF_UP: u32 = 0x1;
const LOOPBACK_INDEX: i32 = 1;

/// Sets the loopback interface up.
pub fn bring_up() -> anyhow::Result<()> {
    let socket = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
        .context("open a netlink socket")?;
    let request = new_link_request(LOOPBACK_INDEX, IFF_UP, IFF_UP);
    sendto(socket.as_raw_fd(), &request, &NetlinkAddr::new(0, 0), MsgFlags::empty()).context("send RTM_NEWLINK")?;
    let mut answer = [0u8; 1024];
    let read = recv(socket.as_raw_fd(), &mut answer, MsgFlags::empty()).context("read the kernel's answer")?;
    match acknowledgement(&answer[..read]) {
        Some(0) => Ok(()),
        Some(errno) => Err(nix::errno::Errno::from_raw(-errno)).context("the kernel refused RTM_NEWLINK"),
        None => anyhow::bail!("the kernel's answer to RTM_NEWLINK is not an acknowledgement"),
    }
}

/// `nlmsghdr` (16 bytes) then `ifinfomsg` (16 bytes), in native byte order.
fn new_link_request(index: i32, flags: u32, change: u32) -> Vec<u8> {
    let mut message = Vec::with_capacity(32);
    message.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    message.extend_from_slice(&RTM_NEWLINK.to_ne_bytes()); // nlmsg_type
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes()); // nlmsg_flags
    message.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    message.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it in
    message.push(0); // ifi_family: AF_UNSPEC
    message.push(0); // padding
    message.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    message.extend_from_slice(&index.to_ne_bytes()); // ifi_index
    message.extend_from_slice(&flags.to_ne_bytes()); // ifi_flags
    message.extend_from_slice(&change.to_ne_bytes()); // ifi_change
    message
}

/// The error code of an `NLMSG_ERROR` answer (0 is the acknowledgement), if it is one.
fn acknowledgement(answer: &[u8]) -> Option<i32> {
    let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
    if kind != NLMSG_ERROR {
        return None;
    }
    Some(i32::from_ne_bytes(answer.get(16..20)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_two_headers_with_its_length_first() {
        let request = new_link_request(1, IFF_UP, IFF_UP);
        assert_eq!(request.len(), 32);
        assert_eq!(u32::from_ne_bytes(request[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(request[4..6].try_into().unwrap()), RTM_NEWLINK);
        assert_eq!(i32::from_ne_bytes(request[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(request[24..28].try_into().unwrap()), IFF_UP);
    }

    #[test]
    fn only_an_error_message_is_an_acknowledgement() {
        let mut answer = vec![0u8; 36];
        answer[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        answer[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(acknowledgement(&answer), Some(-1));
        answer[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        assert_eq!(acknowledgement(&answer), None);
        assert_eq!(acknowledgement(&answer[..3]), None);
    }
}
