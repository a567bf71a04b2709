//! agentgate's kernel programs, attached to the agent cgroup subtree.
//!
//! - `connect4` / `connect6`: a TCP connect to a configured MCP destination is rewritten to the
//!   gateway listener, and a record of who made it is stored under the socket cookie.
//! - `sock_ops`: once established, the record is re-keyed by the connection's 4-tuple (what the
//!   gateway sees on accept); when the socket closes, both entries are deleted.
//! - `getpeername4` / `getpeername6`: the client sees the destination it asked for.
//!
//! Every error path lets the connect proceed unchanged only when the destination is not an MCP
//! destination; for MCP destinations a failure to record refuses the connect, so an agent can
//! never reach an MCP server around the gateway.
//!
//! The programs exist for the BPF target only (build.rs of the gateway builds them); on the host
//! this binary is an empty stub so that workspace-wide checks and tests build.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[allow(unsafe_code)] // eBPF context access and helpers are unsafe by nature.
mod kernel {

    use aya_ebpf::{
        EbpfContext as _,
        bindings::{
            BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
            BPF_TCP_CLOSE,
        },
        helpers::{
            bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
            generated::{
                bpf_get_current_cgroup_id, bpf_get_netns_cookie, bpf_get_socket_cookie,
                bpf_ktime_get_boot_ns,
            },
        },
        macros::{cgroup_sock_addr, map, sock_ops},
        maps::{Array, HashMap, LruHashMap},
        programs::{SockAddrContext, SockOpsContext},
    };
    use aya_log_ebpf::warn;
    use gateway_common::{
        ConnectRecord, Destination, FourTuple, MAX_DESTINATIONS, MAX_RECORDS, Redirect,
    };
    use gateway_ebpf::{SOCK_STREAM, ip6_bytes, ip6_words, record};

    const AF_INET: u32 = 2;
    const AF_INET6: u32 = 10;
    /// Return values of cgroup sock_addr programs.
    const ALLOW: i32 = 1;
    const REFUSE: i32 = 0;

    #[map]
    static DESTINATIONS: HashMap<Destination, u8> = HashMap::with_max_entries(MAX_DESTINATIONS, 0);

    #[map]
    static REDIRECT: Array<Redirect> = Array::with_max_entries(1, 0);

    #[map]
    static BY_COOKIE: LruHashMap<u64, ConnectRecord> = LruHashMap::with_max_entries(MAX_RECORDS, 0);

    #[map]
    // A plain (preallocated) hash: cheaper per insert than LRU. Entries are only added for
    // established connections, whose close callback deletes them if the gateway never took them.
    static BY_CLIENT: HashMap<FourTuple, ConnectRecord> = HashMap::with_max_entries(MAX_RECORDS, 0);

    #[cgroup_sock_addr(connect4)]
    pub fn connect4(ctx: SockAddrContext) -> i32 {
        let sa = unsafe { &mut *ctx.sock_addr };
        if sa.type_ != SOCK_STREAM {
            return ALLOW;
        }
        let dest = Destination::v4(sa.user_ip4.to_ne_bytes(), u16::from_be(sa.user_port as u16));
        match decide(&ctx, &dest) {
            Verdict::Pass => ALLOW,
            Verdict::Refuse => REFUSE,
            Verdict::Redirect(r) => {
                sa.user_ip4 = u32::from_ne_bytes(r.addr4);
                sa.user_port = u32::from(r.port.to_be());
                ALLOW
            }
        }
    }

    #[cgroup_sock_addr(connect6)]
    pub fn connect6(ctx: SockAddrContext) -> i32 {
        let sa = unsafe { &mut *ctx.sock_addr };
        if sa.type_ != SOCK_STREAM {
            return ALLOW;
        }
        let dest = Destination::v6(ip6_bytes(sa.user_ip6), u16::from_be(sa.user_port as u16));
        match decide(&ctx, &dest) {
            Verdict::Pass => ALLOW,
            Verdict::Refuse => REFUSE,
            Verdict::Redirect(r) => {
                // An IPv4-mapped destination stays IPv4-mapped: the socket may be dual-stack only.
                let target = if dest.as_v4().is_some() {
                    Destination::v4(r.addr4, r.port).addr
                } else {
                    r.addr6
                };
                sa.user_ip6 = ip6_words(target);
                sa.user_port = u32::from(r.port.to_be());
                ALLOW
            }
        }
    }

    enum Verdict {
        Pass,
        Refuse,
        Redirect(Redirect),
    }

    fn decide(ctx: &SockAddrContext, dest: &Destination) -> Verdict {
        if unsafe { DESTINATIONS.get(dest) }.is_none() {
            return Verdict::Pass;
        }
        let Some(redirect) = REDIRECT.get(0).copied() else {
            return Verdict::Refuse;
        };
        let pid_tgid = bpf_get_current_pid_tgid();
        if redirect.port == 0 {
            // Loaded but not configured: fail closed.
            return Verdict::Refuse;
        }
        if (pid_tgid >> 32) as u32 == redirect.gateway_tgid {
            return Verdict::Pass;
        }
        // Another network namespace: its loopback is not where the gateway listens, and an
        // unprivileged user can listen there (and fill BY_CLIENT with connections to itself).
        if redirect.netns_cookie != 0
            && unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } != redirect.netns_cookie
        {
            return Verdict::Refuse;
        }
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        let now = unsafe { bpf_ktime_get_boot_ns() };
        let rec = record(
            *dest,
            cookie,
            pid_tgid,
            bpf_get_current_uid_gid(),
            cgroup_id,
            now,
        );
        if BY_COOKIE.insert(cookie, rec, 0).is_err() {
            // Without a record the gateway could not attribute the connection: refuse it
            // rather than let it through unattributed or around the gateway.
            warn!(
                ctx,
                "agentgate: refused a connect to port {}: no room for its record", dest.port
            );
            return Verdict::Refuse;
        }
        Verdict::Redirect(redirect)
    }

    #[sock_ops]
    pub fn agentgate_sock_ops(ctx: SockOpsContext) -> u32 {
        let op = ctx.op();
        if op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_STATE_CB {
            return 1;
        }
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        // References into the maps, not copies: the BPF stack is 512 bytes.
        let Some(rec) = (unsafe { BY_COOKIE.get(cookie) }) else {
            return 1;
        };
        let Some(redirect) = REDIRECT.get(0) else {
            return 1;
        };
        // The server side is the listener the connect hook chose (reading remote_* from the
        // context here makes LLVM emit ctx-pointer arithmetic the verifier refuses).
        // Volatile loads: plain ones from the two branches get merged by LLVM into one load through
        // a selected ctx pointer, which the verifier refuses ("modified ctx ptr").
        let ops = ctx.ops;
        let (client, server) = match ctx.family() {
            AF_INET => (
                Destination::v4(
                    unsafe { core::ptr::read_volatile(&raw const (*ops).local_ip4) }.to_ne_bytes(),
                    0,
                )
                .addr,
                Destination::v4(redirect.addr4, 0).addr,
            ),
            AF_INET6 => {
                let server = if rec.original.as_v4().is_some() {
                    Destination::v4(redirect.addr4, 0).addr
                } else {
                    redirect.addr6
                };
                (
                    ip6_bytes(unsafe { core::ptr::read_volatile(&raw const (*ops).local_ip6) }),
                    server,
                )
            }
            _ => return 1,
        };
        let key = FourTuple {
            client,
            server,
            client_port: unsafe { core::ptr::read_volatile(&raw const (*ops).local_port) } as u16,
            server_port: redirect.port,
            _pad: [0; 4],
        };
        if op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
            let _ = BY_CLIENT.insert(key, rec, 0);
            // Ask for state changes so the records go when the socket closes.
            let _ = ctx.set_cb_flags(BPF_SOCK_OPS_STATE_CB_FLAG as i32);
        } else if ctx.arg(1) == BPF_TCP_CLOSE {
            let _ = BY_CLIENT.remove(key);
            let _ = BY_COOKIE.remove(cookie);
        }
        1
    }

    #[cgroup_sock_addr(getpeername4)]
    pub fn getpeername4(ctx: SockAddrContext) -> i32 {
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        if let Some(rec) = unsafe { BY_COOKIE.get(cookie) }
            && let Some(v4) = rec.original.as_v4()
        {
            let sa = unsafe { &mut *ctx.sock_addr };
            sa.user_ip4 = u32::from_ne_bytes(v4);
            sa.user_port = u32::from(rec.original.port.to_be());
        }
        ALLOW
    }

    #[cgroup_sock_addr(getpeername6)]
    pub fn getpeername6(ctx: SockAddrContext) -> i32 {
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        if let Some(rec) = unsafe { BY_COOKIE.get(cookie) } {
            let sa = unsafe { &mut *ctx.sock_addr };
            sa.user_ip6 = ip6_words(rec.original.addr);
            sa.user_port = u32::from(rec.original.port.to_be());
        }
        ALLOW
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}
