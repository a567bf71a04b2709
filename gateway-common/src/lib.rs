//! `#[repr(C)]` types and constants shared by the kernel programs (gateway-ebpf) and the daemon.
//!
//! Only plain `Copy` data lives here: no logic that needs `std`, no allocation. Every struct has a
//! compile-time size assertion so that the kernel and userspace layouts cannot drift apart.
#![no_std]

/// Address family values as the kernel reports them in `bpf_sock_addr.family`.
pub const AF_INET: u16 = 2;
/// See [`AF_INET`].
pub const AF_INET6: u16 = 10;

/// The destination an intercepted socket originally asked for.
///
/// IPv4 destinations are stored as IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) so that one
/// record type serves `connect4` and `connect6`. `addr` is in network byte order, exactly as the
/// kernel hands it over; `port` is in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Destination {
    /// IPv6 (or IPv4-mapped) address, network byte order.
    pub addr: [u8; 16],
    /// TCP port, host byte order.
    pub port: u16,
    /// Keeps the layout free of implicit padding.
    pub _pad: [u8; 6],
}

impl Destination {
    /// An IPv4 destination, stored IPv4-mapped.
    pub const fn v4(octets: [u8; 4], port: u16) -> Self {
        let [a, b, c, d] = octets;
        Self {
            addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d],
            port,
            _pad: [0; 6],
        }
    }

    /// An IPv6 destination.
    pub const fn v6(addr: [u8; 16], port: u16) -> Self {
        Self {
            addr,
            port,
            _pad: [0; 6],
        }
    }

    /// The IPv4 address when this destination is IPv4-mapped.
    pub const fn as_v4(&self) -> Option<[u8; 4]> {
        let a = &self.addr;
        let mapped = a[0] == 0
            && a[1] == 0
            && a[2] == 0
            && a[3] == 0
            && a[4] == 0
            && a[5] == 0
            && a[6] == 0
            && a[7] == 0
            && a[8] == 0
            && a[9] == 0
            && a[10] == 0xff
            && a[11] == 0xff;
        if mapped {
            Some([a[12], a[13], a[14], a[15]])
        } else {
            None
        }
    }
}

/// What the kernel knows about the process behind an intercepted connection, written by the
/// connect hook in the caller's own context.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectRecord {
    /// Where the process tried to connect.
    pub original: Destination,
    /// `bpf_get_socket_cookie`: stable for the socket's lifetime.
    pub socket_cookie: u64,
    /// cgroup v2 id (the inode number of the cgroup directory).
    pub cgroup_id: u64,
    /// Thread id (lower half of `bpf_get_current_pid_tgid`).
    pub pid: u32,
    /// Process id (upper half of `bpf_get_current_pid_tgid`).
    pub tgid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// `bpf_ktime_get_boot_ns` at connect: a process that started later cannot have made it.
    pub connect_boot_ns: u64,
}

/// Key of the record once the connection is established: its 4-tuple, client side first, as
/// the gateway sees it on accept (the server side is the listener the connect was redirected to).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FourTuple {
    /// Client address, IPv4-mapped for IPv4, network byte order.
    pub client: [u8; 16],
    /// Server (gateway listener) address, IPv4-mapped for IPv4, network byte order.
    pub server: [u8; 16],
    /// Client port, host byte order.
    pub client_port: u16,
    /// Server port, host byte order.
    pub server_port: u16,
    /// Keeps the layout free of implicit padding.
    pub _pad: [u8; 4],
}

/// Where redirected connects go, and who must never be redirected. One entry, written by the
/// daemon before it attaches the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Redirect {
    /// The gateway's IPv6 listener (`::1`), network byte order.
    pub addr6: [u8; 16],
    /// The gateway's IPv4 listener (`127.0.0.1`), network byte order.
    pub addr4: [u8; 4],
    /// Listener port, host byte order. 0 disables redirection.
    pub port: u16,
    /// Keeps the layout free of implicit padding.
    pub _pad: u16,
    /// The daemon's own process id: a second guard, besides running outside the agent cgroups.
    pub gateway_tgid: u32,
    /// Keeps `netns_cookie` aligned without implicit padding.
    pub _pad2: u32,
    /// The daemon's network namespace (`SO_NETNS_COOKIE`; 0: unknown, not checked). A connect
    /// from another namespace would be redirected to that namespace's loopback, where the
    /// gateway does not listen and anyone may: it is refused instead.
    pub netns_cookie: u64,
}

/// Value stored in the destinations map (presence is what matters).
pub const DESTINATION_PRESENT: u8 = 1;
/// Name of the map of configured MCP destinations.
pub const MAP_DESTINATIONS: &str = "DESTINATIONS";
/// Name of the single-entry redirect configuration map.
pub const MAP_REDIRECT: &str = "REDIRECT";
/// Name of the map of records by socket cookie.
pub const MAP_BY_COOKIE: &str = "BY_COOKIE";
/// Name of the map of records by 4-tuple, for the accept side.
pub const MAP_BY_CLIENT: &str = "BY_CLIENT";
/// Capacity of the map of configured MCP destinations.
pub const MAX_DESTINATIONS: u32 = 1024;
/// Capacity of the record maps (LRU: a leak cannot exhaust them; closed sockets free theirs).
pub const MAX_RECORDS: u32 = 65_536;

const _: () = assert!(core::mem::size_of::<Redirect>() == 40);
const _: () = assert!(core::mem::size_of::<Destination>() == 24);
const _: () = assert!(core::mem::align_of::<Destination>() == 2);
const _: () = assert!(core::mem::size_of::<ConnectRecord>() == 64);
const _: () = assert!(core::mem::size_of::<FourTuple>() == 40);

// SAFETY: plain `#[repr(C)]` data without padding (the size assertions above), valid for any bit
// pattern, which is what aya's `Pod` requires to copy it in and out of maps.
#[cfg(feature = "user")]
#[allow(unsafe_code)]
mod pod {
    unsafe impl aya::Pod for super::Destination {}
    unsafe impl aya::Pod for super::ConnectRecord {}
    unsafe impl aya::Pod for super::FourTuple {}
    unsafe impl aya::Pod for super::Redirect {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_round_trips_through_the_mapped_form() {
        let d = Destination::v4([127, 0, 0, 1], 8080);
        assert_eq!(d.as_v4(), Some([127, 0, 0, 1]));
        assert_eq!(d.port, 8080);
        let v6 = Destination::v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 80);
        assert_eq!(v6.as_v4(), None);
    }
}
