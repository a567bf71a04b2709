//! A cgroup per launched server session: whatever the server starts, also a process that left
//! its process group (`setsid`, a daemonizing server), is killed with the session.
//!
//! Each session's cgroup is a child of the gateway's own (cgroup v2, Linux 5.14 for
//! `cgroup.kill`), named `agentgate-launch-<gateway pid>.<its start time>-<session>`. The child
//! moves itself into it between fork and exec, so it runs no instruction of its own outside;
//! ending the session writes `cgroup.kill`. Where the gateway cannot make or enter cgroups (not
//! root, no cgroup2, an older kernel, `ProtectControlGroups`), sessions fall back to their
//! process group alone, and a warning says so once.

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::identity::{read_cgroup, read_start_time};

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

/// The gateway's own cgroup directory, when there is one.
fn parent() -> Option<&'static Path> {
    static PARENT: OnceLock<Option<PathBuf>> = OnceLock::new();
    PARENT
        .get_or_init(|| {
            let mount = crate::ebpf::cgroup2_mount()?;
            let own = read_cgroup(Path::new("/proc/self"))?;
            // A path outside the mount's view ("/../x", from another cgroup namespace) names
            // no directory here.
            if own.split('/').any(|part| part == "..") {
                return None;
            }
            Some(mount.join(own.trim()))
        })
        .as_deref()
}

/// `<pid>.<start time>` of process `pid`: its name among live processes, as a pid alone is not
/// once the process is gone and the number reused.
fn process_mark(pid: &str) -> Option<String> {
    let start = read_start_time(&Path::new("/proc").join(pid))?;
    Some(format!("{pid}.{start}"))
}

/// This gateway's mark, in the names of the cgroups it makes.
fn own_mark() -> Option<&'static str> {
    static MARK: OnceLock<Option<String>> = OnceLock::new();
    MARK.get_or_init(|| process_mark(&std::process::id().to_string()))
        .as_deref()
}

/// Says once that sessions are contained by their process group only.
fn warn_uncontained(error: &dyn std::fmt::Display) {
    static WARNED: OnceLock<()> = OnceLock::new();
    WARNED.get_or_init(|| {
        tracing::warn!(%error, "Cannot put launched servers in cgroups of their own: a session's processes that leave its process group (setsid) outlive it.");
    });
}

impl SessionCgroup {
    /// Makes the cgroup of session `session`. `None` (after one warning per process) where
    /// cgroups cannot be made here.
    pub fn create(session: &str) -> Option<Self> {
        let made = parent()
            .zip(own_mark())
            .ok_or_else(|| io::Error::other("no cgroup2 hierarchy holds the gateway"))
            .and_then(|(parent, mark)| {
                let dir = parent.join(format!("{PREFIX}{mark}-{session}"));
                std::fs::create_dir(&dir)?;
                let opened = if dir.join("cgroup.kill").exists() {
                    File::options().write(true).open(dir.join("cgroup.procs"))
                } else {
                    Err(io::Error::other(
                        "no cgroup.kill (Linux 5.14 or later has it)",
                    ))
                };
                match opened {
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
                warn_uncontained(&error);
                None
            }
        }
    }

    /// Whether process `pid` (just spawned) is in this cgroup. The move happens in the child
    /// before exec, and is not fatal there: where it failed, the session is left to its
    /// process group (with the warning) rather than not launched at all.
    pub fn holds(self, pid: Option<u32>) -> Option<Self> {
        let name = self.dir.file_name()?.to_string_lossy().into_owned();
        let inside = pid
            .and_then(|pid| read_cgroup(&Path::new("/proc").join(pid.to_string())))
            .is_some_and(|path| path.trim_end().ends_with(&name));
        if inside {
            Some(self)
        } else {
            warn_uncontained(&"the server process could not enter its cgroup");
            self.discard();
            None
        }
    }

    /// The descriptor the child writes "0" to, between fork and exec.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// Kills every process in the cgroup and any below it (`cgroup.kill`).
    pub fn kill(&self) {
        if let Err(error) = std::fs::write(self.dir.join("cgroup.kill"), "1") {
            tracing::warn!(%error, cgroup = %self.dir.display(), "Could not kill a launched session's cgroup.");
        }
    }

    /// Kills what is left and removes the cgroup (and any a server made below it) once empty,
    /// waiting up to two seconds for the killed processes to go. Whether it is gone.
    pub async fn remove(self) -> bool {
        self.kill();
        for _ in 0..REMOVE_ATTEMPTS {
            if remove_tree(&self.dir) {
                return true;
            }
            tokio::time::sleep(REMOVE_STEP).await;
        }
        self.left_in_place();
        false
    }

    /// [`Self::remove`] for a session whose task was dropped (the drain deadline passed, or its
    /// runtime went) and so cannot wait: the cgroup is removed on a thread of its own once its
    /// killed processes are gone, and [`wait_for_removals`] lets the exit wait a moment for
    /// those threads. Without it the empty cgroup stayed until a later gateway's sweep. Nothing
    /// here sleeps: on a current-thread runtime every dropped session passes through here on the
    /// one thread, in turn.
    pub fn remove_in_background(self) {
        self.kill();
        if remove_tree(&self.dir) {
            return;
        }
        REMOVALS.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("agentgate-cgroup".into())
            .spawn(move || {
                let removed = (0..REMOVE_ATTEMPTS).any(|_| {
                    std::thread::sleep(REMOVE_STEP);
                    remove_tree(&self.dir)
                });
                if !removed {
                    self.left_in_place();
                }
                REMOVALS.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(error) = spawned {
            REMOVALS.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(%error, "Could not start a thread to remove a launched session's cgroup; the next start's sweep removes it.");
        }
    }

    fn left_in_place(&self) {
        tracing::warn!(cgroup = %self.dir.display(), "A launched session's cgroup still holds processes after being killed; left in place.");
    }

    /// Removes the cgroup of a session whose process never started (it holds nothing).
    pub fn discard(self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// How often, and how far apart, removing a killed session's cgroup is tried: two seconds for
/// its processes to go.
const REMOVE_ATTEMPTS: usize = 200;
const REMOVE_STEP: Duration = Duration::from_millis(10);

/// Removals [`SessionCgroup::remove_in_background`] left to threads that have not finished.
static REMOVALS: AtomicUsize = AtomicUsize::new(0);

/// Waits, at most `limit`, for the cgroups of dropped sessions to be removed: the exit calls it
/// so that killed sessions do not leave their cgroups to the next start's sweep.
pub fn wait_for_removals(limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while REMOVALS.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(REMOVE_STEP);
    }
}

/// Removes a cgroup directory and those below it, deepest first; whether it is gone. (A cgroup
/// directory holds only its interface files, which go with it.)
fn remove_tree(dir: &Path) -> bool {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Kills and removes session cgroups a gateway that is gone left (it crashed, or was killed,
/// before its sessions ended): their servers would run on, unowned. A live gateway's (another
/// one in the same cgroup, or this one) are left alone; a gateway is told by its pid and start
/// time. Returns how many it removed.
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
        let Some((mark, _)) = name.strip_prefix(PREFIX).and_then(|r| r.split_once('-')) else {
            continue;
        };
        let Some((pid, start)) = mark.split_once('.') else {
            continue;
        };
        let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !number(pid) || !number(start) || process_mark(pid).as_deref() == Some(mark) {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(procs) = File::options()
            .write(true)
            .open(entry.path().join("cgroup.procs"))
            && (SessionCgroup {
                dir: entry.path(),
                procs,
            })
            .remove()
            .await
        {
            removed += 1;
        }
    }
    removed
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `fd`. Only what may run
/// between fork and exec: one system call, whose failure is left for the parent to see.
#[allow(unsafe_code)]
fn enter(fd: RawFd) {
    // SAFETY: write(2) on a descriptor this process holds, from a static buffer; async-signal
    // safe, as the time between fork and exec requires.
    unsafe {
        libc::write(fd, b"0".as_ptr().cast(), 1);
    }
}

/// Makes `command`'s child move itself into `cgroup` before it execs.
#[allow(unsafe_code)]
pub fn enter_at_exec(command: &mut tokio::process::Command, cgroup: &SessionCgroup) {
    let fd = cgroup.procs_fd();
    // SAFETY: the closure runs between fork and exec and makes one async-signal-safe system
    // call ([`enter`]).
    unsafe {
        command.pre_exec(move || {
            enter(fd);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that did not get into its session's cgroup leaves the session to its process
    /// group: the cgroup is given up (removed), not kept as if it held the server. (Root and
    /// cgroup2, as CI has.)
    #[test]
    fn a_cgroup_its_process_did_not_enter_is_given_up() {
        let cgroup = SessionCgroup::create("unit-test-not-entered")
            .expect("root and cgroup2 make a session cgroup");
        let dir = cgroup.dir.clone();
        assert!(dir.join("cgroup.procs").exists());
        // This test's own process is not in it.
        assert!(cgroup.holds(Some(std::process::id())).is_none());
        assert!(!dir.exists(), "{}", dir.display());
        let cgroup = SessionCgroup::create("unit-test-no-pid").unwrap();
        let dir = cgroup.dir.clone();
        assert!(cgroup.holds(None).is_none());
        assert!(!dir.exists(), "{}", dir.display());
    }

    /// A child that entered its cgroup is found there, and removing the cgroup kills it.
    #[tokio::test]
    async fn a_child_enters_its_cgroup_and_goes_with_it() {
        let cgroup = SessionCgroup::create("unit-test-entered").unwrap();
        let dir = cgroup.dir.clone();
        let mut command = tokio::process::Command::new("sleep");
        command.arg("300");
        enter_at_exec(&mut command, &cgroup);
        let mut child = command.spawn().unwrap();
        let cgroup = cgroup
            .holds(child.id())
            .expect("the child is in its cgroup");
        assert!(cgroup.remove().await);
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .expect("killed with its cgroup")
            .unwrap();
        assert!(!status.success());
        assert!(!dir.exists(), "{}", dir.display());
    }

    /// A session whose task is dropped cannot wait for its processes to go: its cgroup is still
    /// killed, and removed from another thread once empty.
    #[test]
    fn a_dropped_sessions_cgroup_is_removed_in_the_background() {
        let cgroup = SessionCgroup::create("unit-test-background").unwrap();
        let dir = cgroup.dir.clone();
        let mut command = std::process::Command::new("sh");
        // A grandchild in its own session, as a daemonizing server leaves one.
        command.args(["-c", "setsid sleep 300 & exec sleep 300"]);
        let procs = cgroup.procs_fd();
        // SAFETY: one async-signal-safe system call between fork and exec, as enter_at_exec.
        #[allow(unsafe_code)]
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                enter(procs);
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let cgroup = cgroup.holds(Some(child.id())).expect("in its cgroup");
        // Both processes are in before it goes.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap()
            .lines()
            .count()
            < 2
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchild never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        cgroup.remove_in_background();
        let status = child.wait().unwrap();
        assert!(!status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while dir.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} was left in place",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
