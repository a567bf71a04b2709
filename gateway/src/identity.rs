//! Who is behind an intercepted connection: the kernel's connect record, enriched from /proc at
//! accept time, and mapped to a configured agent name.
//!
//! The kernel record (pid, uid, gid, cgroup id) was written in the caller's own context by the
//! connect hook, so the process cannot forge it. /proc adds what the hook cannot read cheaply
//! (executable, its hash, command line, cgroup path). The process start time is checked against
//! the connect time, so a pid reused since the connect cannot pass for the process that made it.

use std::{
    collections::HashMap,
    fs,
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use gateway_common::ConnectRecord;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Agent, Selectors};

/// The name an unmatched connection gets. Policy can refuse it by name.
pub const UNKNOWN_AGENT: &str = "unknown";

/// Who a verified client certificate says the caller is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateIdentity {
    /// The SPIFFE ID (its URI SAN), else the subject's CN.
    pub id: String,
    /// The `[[agents]]` entry whose `certificate` is `id`.
    pub agent: Option<String>,
}

/// An attested process identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProcessIdentity {
    /// The configured agent it matched, or [`UNKNOWN_AGENT`].
    pub agent: String,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    /// Where the process tried to connect.
    pub original_destination: SocketAddr,
    pub exe: Option<PathBuf>,
    pub exe_sha256: Option<String>,
    pub cmdline: Vec<String>,
    /// Process start time, in clock ticks since boot (/proc/PID/stat field 22).
    pub start_time: Option<u64>,
    /// cgroup path relative to the cgroup2 mount.
    pub cgroup: Option<String>,
    pub unit: Option<String>,
    pub container: Option<String>,
    /// False when /proc no longer shows the process that connected (it exited, or its pid was
    /// reused): only the kernel record's fields are then trustworthy.
    pub process_verified: bool,
}

/// Enriches kernel records and caches executable hashes by the file's identity and change
/// time.
#[derive(Debug, Default)]
pub struct Resolver {
    agents: Vec<Agent>,
    /// The gateway-owned subtree, relative to the cgroup2 mount.
    subtree: String,
    hashes: Mutex<HashMap<FileVersion, String>>,
}

/// What identifies one version of a file's content: device, inode, size, and the change time
/// to the nanosecond (which, unlike the modification time, `utimensat` cannot set back: a
/// binary rewritten in place gets a new one).
type FileVersion = (u64, u64, u64, i64, i64);

/// Executable hashes kept: cleared when full (a new binary per connection must not grow it).
const MAX_HASHES: usize = 1024;
/// Executables larger than this are not hashed (they fail `exe_sha256` selectors): a sparse
/// file of hundreds of GB still runs, and hashing it would hold a lookup slot for minutes.
pub const MAX_HASHED_BYTES: u64 = 1 << 30;
/// How long hashing one executable may take, checked between reads: a slow file system gets no
/// hash (a read that never returns is cut off by the lookup's own timeout instead).
const HASH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(4);

fn version(meta: &fs::Metadata) -> FileVersion {
    (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.ctime(),
        meta.ctime_nsec(),
    )
}

impl Resolver {
    pub fn new(agents: Vec<Agent>, subtree: String) -> Self {
        Self {
            agents,
            subtree,
            hashes: Mutex::default(),
        }
    }

    /// Builds the identity of the process behind `record`.
    pub fn resolve(&self, record: &ConnectRecord, original: SocketAddr) -> ProcessIdentity {
        let proc_dir = PathBuf::from(format!("/proc/{}", record.tgid));
        let start_time = read_start_time(&proc_dir);
        // Started after the connect: not the process that made it.
        let verified = start_time.is_some_and(|ticks| ticks_to_ns(ticks) <= record.connect_boot_ns);
        let (exe, exe_sha256, cmdline, cgroup) = if verified {
            let exe = fs::read_link(proc_dir.join("exe")).ok();
            let hash = self.exe_hash(&proc_dir.join("exe"));
            let cmdline = fs::read(proc_dir.join("cmdline"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            (exe, hash, cmdline, read_cgroup(&proc_dir))
        } else {
            (None, None, Vec::new(), None)
        };
        let unit = cgroup.as_deref().and_then(systemd_unit);
        let container = cgroup.as_deref().and_then(container_id);
        let mut identity = ProcessIdentity {
            agent: UNKNOWN_AGENT.to_owned(),
            pid: record.pid,
            tgid: record.tgid,
            uid: record.uid,
            gid: record.gid,
            cgroup_id: record.cgroup_id,
            original_destination: original,
            exe,
            exe_sha256,
            cmdline,
            start_time,
            cgroup,
            unit,
            container,
            process_verified: verified,
        };
        if let Some(agent) = self.agents.iter().find(|a| self.matches(a, &identity)) {
            identity.agent = agent.name.to_string();
        }
        identity
    }

    fn matches(&self, agent: &Agent, id: &ProcessIdentity) -> bool {
        let s: &Selectors = &agent.selectors;
        let own = format!("{}/{}", self.subtree, agent.name);
        let none_set = s.cgroup.is_none()
            && s.exe.is_none()
            && s.exe_sha256.is_none()
            && s.uid.is_none()
            && s.unit.is_none()
            && s.container.is_none();
        let cgroup_sel = s.cgroup.as_deref().or(none_set.then_some(own.as_str()));
        let under = |root: &str| {
            id.cgroup
                .as_deref()
                .is_some_and(|c| c == root || c.starts_with(&format!("{root}/")))
        };
        cgroup_sel.is_none_or(under)
            && s.exe.as_ref().is_none_or(|e| id.exe.as_ref() == Some(e))
            && s.exe_sha256
                .as_ref()
                .is_none_or(|h| id.exe_sha256.as_ref() == Some(h))
            && s.uid.is_none_or(|u| u == id.uid)
            && s.unit.as_ref().is_none_or(|u| id.unit.as_ref() == Some(u))
            && s.container
                .as_ref()
                .is_none_or(|c| id.container.as_ref() == Some(c))
    }

    /// The SHA-256 of the executable. The version is read from the open file, before and
    /// after hashing: a file changed meanwhile gets no hash (the process fails `exe_sha256`
    /// selectors), and only a stable version is cached. Files over [`MAX_HASHED_BYTES`], or
    /// not read within a few seconds, get no hash either.
    fn exe_hash(&self, exe: &Path) -> Option<String> {
        use std::io::Read;
        let mut file = fs::File::open(exe).ok()?;
        let meta = file.metadata().ok()?;
        let key = version(&meta);
        let hashes = || self.hashes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hashes().get(&key) {
            return Some(h.clone());
        }
        if meta.len() > MAX_HASHED_BYTES {
            tracing::debug!(exe = %exe.display(), size = meta.len(), "Not hashing an executable this large.");
            return None;
        }
        let started = std::time::Instant::now();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
            if started.elapsed() > HASH_DEADLINE {
                tracing::debug!(exe = %exe.display(), "Gave up hashing a slow executable.");
                return None;
            }
        }
        if version(&file.metadata().ok()?) != key {
            return None;
        }
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut cache = hashes();
        if cache.len() >= MAX_HASHES {
            cache.clear();
        }
        cache.insert(key, hex.clone());
        Some(hex)
    }
}

/// The process's start time (clock ticks since boot), field 22 of `stat`.
pub(crate) fn read_start_time(proc_dir: &Path) -> Option<u64> {
    let stat = fs::read_to_string(proc_dir.join("stat")).ok()?;
    // Fields after the command name, which may contain spaces and parentheses.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

fn ticks_to_ns(ticks: u64) -> u64 {
    // USER_HZ is 100 on every Linux architecture the gateway supports.
    ticks.saturating_mul(10_000_000)
}

/// The process's cgroup2 path (the `0::` line), relative to the mount.
pub(crate) fn read_cgroup(proc_dir: &Path) -> Option<String> {
    let text = fs::read_to_string(proc_dir.join("cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_start_matches('/').to_owned())
}

/// `system.slice/foo.service` -> `foo.service` (the innermost unit).
fn systemd_unit(cgroup: &str) -> Option<String> {
    cgroup
        .rsplit('/')
        .find(|p| p.ends_with(".service") || p.ends_with(".scope"))
        .map(str::to_owned)
}

/// A 64-hex container id in the cgroup path (docker-<id>.scope, cri-containerd-<id>.scope, /<id>).
fn container_id(cgroup: &str) -> Option<String> {
    cgroup.split('/').find_map(|part| {
        let stem = part.trim_end_matches(".scope");
        let id = stem.rsplit(['-', ':']).next()?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    /// A sparse file of any size still runs: one too large to hash in time gets no hash, at
    /// once (it held a lookup slot for as long as reading it took).
    #[test]
    fn an_executable_too_large_to_hash_gets_no_hash() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("huge");
        let f = fs::File::create(&exe).unwrap();
        f.set_len(MAX_HASHED_BYTES + 1).unwrap();
        let r = Resolver::new(Vec::new(), String::new());
        let started = std::time::Instant::now();
        assert_eq!(r.exe_hash(&exe), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        f.set_len(4096).unwrap();
        assert_eq!(r.exe_hash(&exe).map(|h| h.len()), Some(64));
    }

    #[test]
    fn an_executable_rewritten_in_place_with_its_mtime_restored_is_hashed_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("agent");
        fs::write(&exe, b"trusted bytes").unwrap();
        let r = Resolver::new(Vec::new(), String::new());
        let trusted = r.exe_hash(&exe).unwrap();
        let mtime = fs::metadata(&exe).unwrap().modified().unwrap();
        // Same inode, same size, the old modification time put back.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::OpenOptions::new()
            .write(true)
            .open(&exe)
            .unwrap()
            .write_all_at(b"evil!", 0)
            .unwrap();
        fs::File::options()
            .write(true)
            .open(&exe)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(fs::metadata(&exe).unwrap().modified().unwrap(), mtime);
        let now = r.exe_hash(&exe).unwrap();
        assert_ne!(
            now, trusted,
            "the cached hash of the old content was returned"
        );
    }

    #[test]
    fn units_and_containers_are_read_from_cgroup_paths() {
        assert_eq!(
            systemd_unit("system.slice/agent.service").as_deref(),
            Some("agent.service")
        );
        let id = "a".repeat(64);
        assert_eq!(
            container_id(&format!("system.slice/docker-{id}.scope")),
            Some(id.clone())
        );
        assert_eq!(
            container_id(&format!(
                "kubepods/burstable/pod1/cri-containerd-{id}.scope"
            )),
            Some(id)
        );
        assert_eq!(container_id("user.slice/user-0.slice"), None);
    }

    #[test]
    fn resolves_this_process_and_matches_selectors() {
        let me = std::process::id();
        let record = ConnectRecord {
            tgid: me,
            pid: me,
            connect_boot_ns: u64::MAX,
            ..ConnectRecord::default()
        };
        let exe = std::env::current_exe().unwrap();
        let agents = vec![Agent {
            name: "tester".to_owned().try_into().unwrap(),
            certificate: None,
            selectors: Selectors {
                exe: Some(fs::canonicalize(&exe).unwrap()),
                ..Selectors::default()
            },
        }];
        let r = Resolver::new(agents, "agentgate".into());
        let id = r.resolve(&record, "127.0.0.1:1".parse().unwrap());
        assert!(id.process_verified);
        assert_eq!(id.agent, "tester");
        assert_eq!(id.exe_sha256.as_ref().map(String::len), Some(64));
        // A connect that happened before this process started cannot be its.
        let stale = ConnectRecord {
            connect_boot_ns: 0,
            ..record
        };
        let id = r.resolve(&stale, "127.0.0.1:1".parse().unwrap());
        assert!(!id.process_verified);
        assert_eq!(id.agent, UNKNOWN_AGENT);
    }
}
