//! Kernel-side decisions of agentgate's connect hooks, kept free of helpers so they can be unit
//! tested on the host.
//!
//! The aya-ebpf programs (cgroup connect4/6, sock_ops, getpeername4/6) that call into this module
//! land with transparent interception; until then this crate holds the pure logic they share and
//! the map sizes userspace must agree with. It never touches sockets itself.
#![no_std]

use gateway_common::{ConnectRecord, Destination};

/// Capacity of the map of configured MCP destinations.
pub const MAX_DESTINATIONS: u32 = 1024;
/// Capacity of the per-connection record maps (LRU, so a leak cannot exhaust them).
pub const MAX_RECORDS: u32 = 65_536;

/// `SOCK_STREAM`, the only socket type that is ever redirected.
const SOCK_STREAM: u32 = 1;

/// Whether a connect to `dest` must be redirected: only TCP, only configured destinations, and
/// never when the gateway listener itself is the destination (that would loop).
pub fn should_redirect(
    sock_type: u32,
    dest: &Destination,
    listener: &Destination,
    is_configured: impl Fn(&Destination) -> bool,
) -> bool {
    sock_type == SOCK_STREAM && dest != listener && is_configured(dest)
}

/// The record the connect hook stores for a redirected socket.
pub fn record(
    original: Destination,
    socket_cookie: u64,
    pid_tgid: u64,
    uid_gid: u64,
    cgroup_id: u64,
) -> ConnectRecord {
    ConnectRecord {
        original,
        socket_cookie,
        cgroup_id,
        // The helpers pack two u32 values into one u64: the casts pick the halves.
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_tcp_destinations_are_redirected() {
        let mcp = Destination::v4([10, 0, 0, 5], 8080);
        let other = Destination::v4([10, 0, 0, 5], 8081);
        let listener = Destination::v4([127, 0, 0, 1], 15001);
        let configured = |d: &Destination| *d == mcp || *d == listener;
        assert!(should_redirect(SOCK_STREAM, &mcp, &listener, configured));
        assert!(!should_redirect(SOCK_STREAM, &other, &listener, configured));
        assert!(!should_redirect(2, &mcp, &listener, configured));
        assert!(!should_redirect(
            SOCK_STREAM,
            &listener,
            &listener,
            configured
        ));
    }

    #[test]
    fn record_splits_the_packed_helper_values() {
        let r = record(
            Destination::v4([1, 2, 3, 4], 5),
            9,
            (7 << 32) | 8,
            (11 << 32) | 10,
            12,
        );
        assert_eq!(
            (r.pid, r.tgid, r.uid, r.gid, r.cgroup_id, r.socket_cookie),
            (8, 7, 10, 11, 12, 9)
        );
    }
}
