//! A cgroup per launched server session: whatever the server starts, also a process that left
//! its process group (`setsid`, a daemonizing server), is killed with the session.
//!
//! Each session's cgroup is a child of the gateway's own (cgroup v2), named
//! `agentgate-launch-<gateway pid>-<session>`. The child moves itself into it between fork and exec, so it
//! runs no instruction of its own outside; ending the session writes `cgroup.kill`. Where the
//! gateway cannot make cgroups (not root, no cgroup2), sessions fall back to their process group
//! alone, and a warning says so once.

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

/// The prefix of a session cgroup's name.
const PREFIX: &str = "agentgate-launch-";

/// One session's cgroup.
#[derive(Debug)]
pub struct SessionCgroup {
    dir: PathBuf,
    /// Its `cgroup.procs`, opened by the gateway: the child writes "0" to it to move itself in
    /// (the kernel checks the opener's credentials, so a child launched as another user still
    /// can).
    procs: File,
}

/// The gateway's own cgroup directory, when this process can make cgroups under it.
fn parent() -> Option<&'static Path> {
    static PARENT: OnceLock<Option<PathBuf>> = OnceLock::new();
    PARENT
        .get_or_init(|| {
            let mount = crate::ebpf::cgroup2_mount()?;
            let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
            Some(mount.join(own.trim().trim_start_matches('/')))
        })
        .as_deref()
}

impl SessionCgroup {
    /// Makes the cgroup of session `session`. `None` (after one warning per process) where
    /// cgroups cannot be made here.
    pub fn create(session: &str) -> Option<Self> {
        static WARNED: OnceLock<()> = OnceLock::new();
        let made = parent()
            .ok_or_else(|| io::Error::other("no cgroup2 hierarchy holds the gateway"))
            .and_then(|parent| {
                let dir = parent.join(format!("{PREFIX}{}-{session}", std::process::id()));
                std::fs::create_dir(&dir)?;
                match File::options().write(true).open(dir.join("cgroup.procs")) {
                    Ok(procs) => Ok(Self { dir, procs }),
                    Err(e) => {
                        let _ = std::fs::remove_dir(&dir);
                        Err(e)
                    }
                }
            });
        match made {
            Ok(cgroup) => Some(cgroup),
            Err(error) => {
                WARNED.get_or_init(|| {
                    tracing::warn!(%error, "Cannot make cgroups for launched servers: a session's processes that leave its process group (setsid) outlive it.");
                });
                None
            }
        }
    }

    /// The descriptor the child writes "0" to, between fork and exec.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// Kills every process in the cgroup (`cgroup.kill`, Linux 5.14).
    pub fn kill(&self) {
        if let Err(error) = std::fs::write(self.dir.join("cgroup.kill"), "1") {
            tracing::warn!(%error, cgroup = %self.dir.display(), "Could not kill a launched session's cgroup.");
        }
    }

    /// Kills what is left and removes the cgroup once empty (waiting up to two seconds for the
    /// killed processes to go).
    pub async fn remove(self) {
        self.kill();
        for _ in 0..200 {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        tracing::warn!(cgroup = %self.dir.display(), "A launched session's cgroup still holds processes after being killed; left in place.");
    }
}

/// Kills and removes session cgroups a gateway that is gone left (it crashed, or was killed,
/// before its sessions ended): their servers would run on, unowned. A live gateway's (another
/// one in the same cgroup, or this one) are left alone. Returns how many it removed.
pub async fn sweep() -> usize {
    let Some(parent) = parent() else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        if let Ok(procs) = File::options()
            .write(true)
            .open(entry.path().join("cgroup.procs"))
        {
            SessionCgroup {
                dir: entry.path(),
                procs,
            }
            .remove()
            .await;
            removed += 1;
        }
    }
    removed
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `fd`. Only what may run
/// between fork and exec: one system call.
#[allow(unsafe_code)]
pub fn enter(fd: RawFd) -> io::Result<()> {
    // SAFETY: write(2) on a descriptor this process holds, from a static buffer; async-signal
    // safe, as the time between fork and exec requires.
    let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `command`'s child move itself into `cgroup` before it execs.
#[allow(unsafe_code)]
pub fn enter_at_exec(command: &mut tokio::process::Command, cgroup: &SessionCgroup) {
    let fd = cgroup.procs_fd();
    // SAFETY: the closure runs between fork and exec and makes one async-signal-safe system
    // call ([`enter`]). Should it fail, the spawn fails: no server runs uncontained where a
    // cgroup was made for it.
    unsafe {
        command.pre_exec(move || enter(fd));
    }
}

impl SessionCgroup {
    /// Removes the cgroup of a session whose process never started (it holds nothing).
    pub fn discard(self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
