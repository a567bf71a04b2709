//! Loads agentgate's kernel programs, attaches them to the agent cgroups, and reads the connect
//! records they leave. The only module that talks to the kernel's BPF interface.
//!
//! Attached programs are pinned on bpffs. If the gateway dies, they stay attached and keep
//! redirecting connects to a listener that is gone: agents fail closed instead of reaching MCP
//! servers directly. A clean shutdown unpins (detaches) them and removes the emptied pin directory;
//! a restart replaces stale pins.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
    programs::{
        CgroupAttachMode, CgroupSockAddr, SockOps,
        links::{FdLink, PinnedLink},
    },
};
use gateway_common::{
    ConnectRecord, DESTINATION_PRESENT, Destination, FourTuple, MAP_BY_CLIENT, MAP_DESTINATIONS,
    MAP_REDIRECT, Redirect,
};

/// The compiled programs, built by `build.rs` from gateway-ebpf.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agentgate"));

const SOCK_ADDR_PROGRAMS: [&str; 4] = ["connect4", "connect6", "getpeername4", "getpeername6"];
const SOCK_OPS_PROGRAM: &str = "agentgate_sock_ops";

/// Why interception could not start. Each names what is missing.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("transparent interception needs root (CAP_BPF and CAP_NET_ADMIN); running as uid {0}")]
    NotRoot(u32),
    #[error("no cgroup2 file system is mounted (looked in /proc/self/mountinfo)")]
    NoCgroup2,
    #[error("cannot prepare cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot prepare the bpffs pin directory {path}: {detail}")]
    Bpffs { path: PathBuf, detail: String },
    #[error("the kernel refused the eBPF programs (kernel too old, or BPF disabled?): {0}")]
    Load(String),
    #[error("this build has no kernel programs (built with AYA_BUILD_SKIP=1)")]
    NotBuilt,
    #[error("eBPF map {0} missing from the programs")]
    MissingMap(&'static str),
}

/// The reader of the programs' aya-log ring buffer.
pub type KernelLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// Loaded and attached programs, and the maps the daemon reads and writes.
pub struct Interceptor {
    by_cookie: HashMap<MapData, u64, ConnectRecord>,
    destinations: HashMap<MapData, Destination, u8>,
    by_client: HashMap<MapData, FourTuple, ConnectRecord>,
    links: Vec<PinnedLink>,
    /// Where the links are pinned; removed again, once empty, on a clean shutdown.
    pin_dir: PathBuf,
    logger: Option<KernelLogger>,
    /// cgroup2 mount point.
    pub cgroup_root: PathBuf,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interceptor")
            .field("links", &self.links.len())
            .field("cgroup_root", &self.cgroup_root)
            .finish_non_exhaustive()
    }
}

/// Where interception attaches, and where its redirected connects go.
#[derive(Debug)]
pub struct Plan<'a> {
    /// cgroup paths relative to the cgroup2 mount. The first is the gateway-owned subtree,
    /// created if missing; the rest must exist.
    pub cgroups: Vec<String>,
    /// Agent cgroups to create under the subtree.
    pub agent_cgroups: Vec<String>,
    pub listener_port: u16,
    pub pin_dir: &'a Path,
}

impl Interceptor {
    /// Loads the programs, fills their configuration and attaches them.
    pub fn start(plan: &Plan<'_>) -> Result<Self, EbpfError> {
        if PROGRAMS.is_empty() {
            return Err(EbpfError::NotBuilt);
        }
        let uid = effective_uid();
        if uid != 0 {
            return Err(EbpfError::NotRoot(uid));
        }
        let cgroup_root = cgroup2_mount().ok_or(EbpfError::NoCgroup2)?;
        for rel in plan.cgroups.iter().take(1).chain(plan.agent_cgroups.iter()) {
            let path = cgroup_root.join(rel);
            fs::create_dir_all(&path).map_err(|source| EbpfError::Cgroup { path, source })?;
        }
        prepare_pin_dir(plan.pin_dir)?;

        let load = |e: &dyn std::fmt::Display| EbpfError::Load(e.to_string());
        let mut ebpf = Ebpf::load(PROGRAMS).map_err(|e| load(&e))?;
        // The logger owns the log ring buffer the programs reference: it must live as long as
        // they do. It forwards to `log`, which tracing-subscriber bridges into tracing.
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(error) => {
                tracing::debug!(%error, "Kernel-side logging is not available.");
                None
            }
        };

        let mut redirect: Array<_, Redirect> = Array::try_from(
            ebpf.map_mut(MAP_REDIRECT)
                .ok_or(EbpfError::MissingMap("REDIRECT"))?,
        )
        .map_err(|e| load(&e))?;
        let config = Redirect {
            addr6: std::net::Ipv6Addr::LOCALHOST.octets(),
            addr4: [127, 0, 0, 1],
            port: plan.listener_port,
            _pad: 0,
            gateway_tgid: std::process::id(),
            _pad2: 0,
            netns_cookie: own_netns_cookie().unwrap_or_else(|error| {
                tracing::warn!(%error, "Cannot read the gateway's network namespace cookie: connects from other namespaces are not refused.");
                0
            }),
        };
        redirect.set(0, config, 0).map_err(|e| load(&e))?;

        // Loads (first cgroup only), attaches and pins one program; the two program types share
        // this shape but no trait, hence a macro.
        macro_rules! attach_pinned {
            ($ty:ty, $name:expr, $index:expr, $cgroup:expr) => {{
                let prog: &mut $ty = ebpf
                    .program_mut($name)
                    .ok_or(EbpfError::MissingMap("program"))?
                    .try_into()
                    .map_err(|e| load(&e))?;
                if $index == 0 {
                    prog.load().map_err(|e| load(&e))?;
                }
                let id = prog
                    .attach($cgroup, CgroupAttachMode::Single)
                    .map_err(|e| load(&e))?;
                let link = FdLink::try_from(prog.take_link(id).map_err(|e| load(&e))?)
                    .map_err(|e| load(&e))?;
                link.pin(plan.pin_dir.join(format!("{}-{}", $index, $name)))
                    .map_err(|e| load(&e))?
            }};
        }
        let mut links = Vec::new();
        for (index, rel) in plan.cgroups.iter().enumerate() {
            let path = cgroup_root.join(rel);
            let cgroup = fs::File::open(&path).map_err(|source| EbpfError::Cgroup {
                path: path.clone(),
                source,
            })?;
            for name in SOCK_ADDR_PROGRAMS {
                links.push(attach_pinned!(CgroupSockAddr, name, index, &cgroup));
            }
            links.push(attach_pinned!(SockOps, SOCK_OPS_PROGRAM, index, &cgroup));
            tracing::info!(cgroup = %path.display(), "Interception attached.");
        }
        let destinations: HashMap<MapData, Destination, u8> = HashMap::try_from(
            ebpf.take_map(MAP_DESTINATIONS)
                .ok_or(EbpfError::MissingMap("DESTINATIONS"))?,
        )
        .map_err(|e| load(&e))?;
        let by_client: HashMap<MapData, FourTuple, ConnectRecord> = HashMap::try_from(
            ebpf.take_map(MAP_BY_CLIENT)
                .ok_or(EbpfError::MissingMap("BY_CLIENT"))?,
        )
        .map_err(|e| load(&e))?;
        let by_cookie: HashMap<MapData, u64, ConnectRecord> = HashMap::try_from(
            ebpf.take_map(gateway_common::MAP_BY_COOKIE)
                .ok_or(EbpfError::MissingMap("BY_COOKIE"))?,
        )
        .map_err(|e| load(&e))?;
        // The pinned links keep the programs (and through them the maps) alive; the loader's
        // parsed object and the kernel BTF it read are no longer needed.
        drop(ebpf);
        release_freed_memory();
        Ok(Self {
            by_cookie,
            destinations,
            by_client,
            links,
            pin_dir: plan.pin_dir.to_owned(),
            cgroup_root,
            logger,
        })
    }

    /// The kernel-side log reader, to be polled by a task (once).
    pub fn take_logger(&mut self) -> Option<KernelLogger> {
        self.logger.take()
    }

    /// Replaces the set of intercepted destinations.
    pub fn set_destinations(&mut self, wanted: &[Destination]) -> Result<(), EbpfError> {
        let present: Vec<Destination> = self.destinations.keys().filter_map(Result::ok).collect();
        for d in present.iter().filter(|d| !wanted.contains(d)) {
            let _ = self.destinations.remove(d);
        }
        for d in wanted.iter().filter(|d| !present.contains(d)) {
            self.destinations
                .insert(d, DESTINATION_PRESENT, 0)
                .map_err(|e| EbpfError::Load(e.to_string()))?;
        }
        Ok(())
    }

    /// The record of the redirected connection whose client side is `peer`, removed from the map
    /// (the accept side needs it once; the socket's cookie entry stays for getpeername).
    pub fn take_record(&mut self, peer: SocketAddr, local: SocketAddr) -> Option<ConnectRecord> {
        let key = four_tuple(peer, local);
        let record = self.by_client.get(&key, 0).ok()?;
        let _ = self.by_client.remove(&key);
        Some(record)
    }

    /// How many records the kernel maps hold: (by cookie, by 4-tuple). Closed sockets
    /// delete theirs, so on an idle host both are zero.
    pub fn record_counts(&self) -> (usize, usize) {
        (self.by_cookie.keys().count(), self.by_client.keys().count())
    }

    /// Detaches the programs (clean shutdown): unpins every link and drops it, then removes the
    /// pin directory (only when empty: a pin that could not be removed keeps its directory).
    pub fn detach(mut self) {
        for link in self.links.drain(..) {
            match link.unpin() {
                Ok(fd_link) => drop(fd_link),
                Err(error) => tracing::warn!(%error, "Cannot unpin an interception link."),
            }
        }
        let _ = fs::remove_dir(&self.pin_dir);
    }
}

/// The cookie of the network namespace the gateway runs in (`SO_NETNS_COOKIE`, Linux 5.14),
/// as `bpf_get_netns_cookie` gives it to the programs.
pub(crate) fn own_netns_cookie() -> std::io::Result<u64> {
    /// Not in the libc crate yet; the same value on every architecture but a few the gateway
    /// does not run on.
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, which is that large, and
    // the descriptor is the socket above, open for the call.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

/// Hands memory freed after loading (kernel BTF, the parsed object: megabytes) back to the
/// system; glibc keeps it otherwise, and the daemon's resident size is a product figure.
fn release_freed_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Polls the programs' log ring buffer into tracing until draining starts.
pub async fn forward_kernel_logs(logger: KernelLogger, drain: crate::drain::Drain) {
    // SAFETY: the AsyncFd takes ownership of the logger, which owns the ring buffer's fd; the fd
    // therefore stays open for exactly as long as it is registered.
    #[allow(unsafe_code)]
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(error) => {
            tracing::debug!(%error, "Cannot poll kernel-side logs.");
            return;
        }
    };
    loop {
        let mut guard = tokio::select! {
            _ = drain.signaled() => return,
            ready = fd.readable_mut() => match ready {
                Ok(g) => g,
                Err(_) => return,
            },
        };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

/// The key the kernel side files an established redirected connection under.
pub fn four_tuple(client: SocketAddr, server: SocketAddr) -> FourTuple {
    FourTuple {
        client: destination(client).addr,
        server: destination(server).addr,
        client_port: client.port(),
        server_port: server.port(),
        _pad: [0; 4],
    }
}

/// A socket address as the kernel side stores destinations.
pub fn destination(addr: SocketAddr) -> Destination {
    match addr {
        SocketAddr::V4(v4) => Destination::v4(v4.ip().octets(), v4.port()),
        SocketAddr::V6(v6) => Destination::v6(v6.ip().octets(), v6.port()),
    }
}

/// The inverse of [`destination`]; IPv4-mapped destinations come back as IPv4.
pub fn socket_addr(d: &Destination) -> SocketAddr {
    match d.as_v4() {
        Some(v4) => SocketAddr::from((v4, d.port)),
        None => SocketAddr::from((d.addr, d.port)),
    }
}

/// The cgroup2 mount point, from /proc/self/mountinfo (hybrid hosts mount it at
/// /sys/fs/cgroup/unified, modern ones at /sys/fs/cgroup).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let mount = pre.split_whitespace().nth(4)?;
        (post.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
    })
}

pub(crate) fn effective_uid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// Makes sure `dir` is on a mounted bpffs and holds no stale pins (a previous gateway that died:
/// its programs are detached here, now that a new gateway takes over).
fn prepare_pin_dir(dir: &Path) -> Result<(), EbpfError> {
    let err = |detail: String| EbpfError::Bpffs {
        path: dir.to_owned(),
        detail,
    };
    let bpffs = Path::new("/sys/fs/bpf");
    let mounted = fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            t.lines()
                .any(|l| l.split(" - ").nth(1).is_some_and(|p| p.starts_with("bpf ")))
        })
        .unwrap_or(false);
    if !mounted {
        fs::create_dir_all(bpffs).map_err(|e| err(e.to_string()))?;
        let status = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(bpffs)
            .status()
            .map_err(|e| err(format!("cannot run mount: {e}")))?;
        if !status.success() {
            return Err(err("mounting bpffs at /sys/fs/bpf failed".into()));
        }
    }
    fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let entries = fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        match PinnedLink::from_pin(&path) {
            Ok(stale) => {
                tracing::warn!(pin = %path.display(), "Detaching programs a previous gateway left attached.");
                if let Ok(link) = stale.unpin() {
                    drop(link);
                }
            }
            Err(_) => {
                let _ = fs::remove_file(&path);
            }
        }
    }
    Ok(())
}
