//! Kernel-side decisions of agentgate's connect hooks, kept free of helpers so they can be unit
//! tested on the host. The programs in `main.rs` call into this; it never touches sockets itself.
#![no_std]

use gateway_common::{ConnectRecord, Destination};

/// `SOCK_STREAM`, the only socket type that is ever redirected.
pub const SOCK_STREAM: u32 = 1;

/// The record the connect hook stores for a redirected socket.
pub fn record(
    original: Destination,
    socket_cookie: u64,
    pid_tgid: u64,
    uid_gid: u64,
    cgroup_id: u64,
    connect_boot_ns: u64,
) -> ConnectRecord {
    ConnectRecord {
        connect_boot_ns,
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

/// An IPv6 socket address as the kernel hands it over (four u32 in network byte order) as bytes.
pub fn ip6_bytes(words: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

/// The inverse of [`ip6_bytes`].
pub fn ip6_words(bytes: [u8; 16]) -> [u32; 4] {
    let w = |i: usize| u32::from_ne_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_splits_the_packed_helper_values() {
        let r = record(
            Destination::v4([1, 2, 3, 4], 5),
            9,
            (7 << 32) | 8,
            (11 << 32) | 10,
            12,
            13,
        );
        assert_eq!(
            (r.pid, r.tgid, r.uid, r.gid, r.cgroup_id, r.socket_cookie),
            (8, 7, 10, 11, 12, 9)
        );
    }

    #[test]
    fn ip6_round_trips() {
        let b = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
        assert_eq!(ip6_bytes(ip6_words(b)), b);
    }
}
