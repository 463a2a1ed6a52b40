//! Signalling exactly the process procwatch means. A pidfd is opened by pid and then checked
//! against the process's start time, so a pid recycled in between is never signalled; kill(2)
//! is the fallback only on kernels without pidfd (< 5.3). Some processes are never signalled.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use crate::procfs::stat::read_stat;

/// How long [`Target::freeze`] waits to see the process stopped.
pub const FREEZE_WAIT: Duration = Duration::from_millis(250);
const POLL: Duration = Duration::from_millis(2);

/// Why a process was not signalled.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// A process procwatch must never signal.
    #[error("refusing to signal pid {pid}: {why}")]
    Refused {
        /// The pid asked for.
        pid: u32,
        /// Which rule refused it.
        why: &'static str,
    },
    /// The process does not exist (any more).
    #[error("process {pid} is gone")]
    Gone {
        /// The pid asked for.
        pid: u32,
    },
    /// The pid now belongs to another process than the one scored.
    #[error(
        "pid {pid} now names another process (or another program than the one flagged): \
         not signalled"
    )]
    Reused {
        /// The pid asked for.
        pid: u32,
    },
    /// The start time of the process meant is not known, so the pid cannot be tied to it.
    #[error(
        "the start time of pid {pid} is unknown, so it cannot be told from a process that \
         reused the pid: not signalled"
    )]
    UnknownStart {
        /// The pid asked for.
        pid: u32,
    },
    /// The kernel refused (EPERM, ...).
    #[error("signalling pid {pid}: {source}")]
    Io {
        /// The pid asked for.
        pid: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The pid as a kill(2) argument, unless procwatch must never signal it: not a single process
/// (0, negative), init, kernel threads, procwatch itself or one of its threads, its parent.
pub fn guard(pid: u32) -> Result<libc::pid_t, SignalError> {
    let refuse = |why| Err(SignalError::Refused { pid, why });
    // 0 and negative values address process groups, -1 every process: never a single target.
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return refuse("not a process id");
    };
    if raw <= 0 {
        return refuse("not a process id");
    }
    if pid == 1 {
        return refuse("init");
    }
    if pid == std::process::id() {
        return refuse("procwatch itself");
    }
    // SAFETY: getppid has no preconditions.
    if raw == unsafe { libc::getppid() } {
        return refuse("procwatch's parent");
    }
    if std::path::Path::new(&format!("/proc/self/task/{pid}")).exists() {
        return refuse("a thread of procwatch");
    }
    if pid == 2 || read_stat(pid).is_ok_and(|st| st.ppid == 2) {
        return refuse("a kernel thread");
    }
    Ok(raw)
}

/// A process procwatch may signal, held by pidfd (or by pid on kernels without pidfd).
#[derive(Debug)]
pub struct Target {
    pid: u32,
    raw: libc::pid_t,
    fd: Option<OwnedFd>,
}

impl Target {
    /// Opens `pid`, checking it is still the process that started at `start_ticks` and is not
    /// one procwatch must never signal. A start time of 0 (unknown) is refused: without it a
    /// recycled pid cannot be told apart.
    pub fn open(pid: u32, start_ticks: u64) -> Result<Self, SignalError> {
        let raw = guard(pid)?;
        if start_ticks == 0 {
            return Err(SignalError::UnknownStart { pid });
        }
        let fd = match pidfd_open(raw) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => None,
            Err(e) => return Err(os_error(pid, e)),
        };
        // The pidfd pins the process: if /proc now shows another start time, the pid was
        // recycled before the pidfd was opened.
        let stat = read_stat(pid).map_err(|_| SignalError::Gone { pid })?;
        if stat.start_ticks != start_ticks {
            return Err(SignalError::Reused { pid });
        }
        Ok(Self { pid, raw, fd })
    }

    /// Like [`Target::open`], and also checks the process runs the executable file `exe`
    /// (when given). A start time is in clock ticks (10 ms): a pid handed to a new process
    /// within the same tick (which takes the privilege to choose pids) is still told apart
    /// when it runs another file.
    pub fn open_exact(
        pid: u32,
        start_ticks: u64,
        exe: Option<crate::identity::ExeId>,
    ) -> Result<Self, SignalError> {
        let t = Self::open(pid, start_ticks)?;
        if let Some(want) = exe {
            // The pidfd pins the process: this is the exe of the one just checked.
            let now = crate::identity::ExeId::of_proc_exe(pid, None);
            if now != Some(want) {
                return Err(SignalError::Reused { pid });
            }
        }
        Ok(t)
    }

    /// Opens whatever process holds `pid` right now (its start time read first): for a caller
    /// that means the pid as of now (an operator, a test), never for acting on an alert.
    pub fn open_current(pid: u32) -> Result<Self, SignalError> {
        guard(pid)?;
        let start = read_stat(pid).map_err(|_| SignalError::Gone { pid })?;
        Self::open(pid, start.start_ticks)
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: libc::c_int) -> Result<(), SignalError> {
        let sent = match &self.fd {
            Some(fd) => pidfd_send_signal(fd, sig),
            None => kill(self.raw, sig),
        };
        sent.map_err(|e| os_error(self.pid, e))
    }

    /// SIGSTOP; `Ok(true)` once /proc shows it stopped, `Ok(false)` when it was signalled but
    /// not seen stopped within [`FREEZE_WAIT`] (e.g. in uninterruptible sleep).
    pub fn freeze(&self) -> Result<bool, SignalError> {
        self.signal(libc::SIGSTOP)?;
        let end = Instant::now() + FREEZE_WAIT;
        loop {
            if is_stopped(self.pid) {
                return Ok(true);
            }
            if Instant::now() >= end {
                return Ok(false);
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Stops whatever process holds `pid` now (see [`Target::freeze`], [`Target::open_current`]).
pub fn freeze(pid: u32) -> Result<bool, SignalError> {
    Target::open_current(pid)?.freeze()
}

/// Resumes whatever process holds `pid` now with SIGCONT (see [`Target::open_current`]).
pub fn thaw(pid: u32) -> Result<(), SignalError> {
    Target::open_current(pid)?.signal(libc::SIGCONT)
}

/// True when `pid` is in state `T` (stopped) or `t` (tracing stop).
pub fn is_stopped(pid: u32) -> bool {
    read_stat(pid).is_ok_and(|s| matches!(s.state, b'T' | b't'))
}

fn os_error(pid: u32, e: io::Error) -> SignalError {
    match e.raw_os_error() {
        Some(libc::ESRCH) => SignalError::Gone { pid },
        _ => SignalError::Io { pid, source: e },
    }
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; the result is checked.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let raw = libc::c_int::try_from(rc).map_err(|_| io::Error::other("pidfd out of range"))?;
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn pidfd_send_signal(fd: &OwnedFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid pidfd, no siginfo (NULL), no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) on a positive pid that `guard` accepted.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    fn refused(pid: u32) -> bool {
        matches!(freeze(pid), Err(SignalError::Refused { .. }))
            && matches!(thaw(pid), Err(SignalError::Refused { .. }))
    }

    #[test]
    fn never_signals_init_itself_its_parent_threads_groups_or_kernel_threads() {
        // SAFETY: getppid and gettid have no preconditions.
        let (parent, tid) = unsafe { (libc::getppid(), libc::gettid()) };
        assert!(refused(0));
        assert!(refused(1));
        assert!(refused(2), "kthreadd");
        assert!(refused(u32::MAX), "-1 would be every process");
        assert!(refused(0x8000_0000));
        assert!(refused(std::process::id()));
        assert!(refused(u32::try_from(parent).expect("positive ppid")));
        let tid = u32::try_from(tid).expect("positive tid");
        if tid != std::process::id() {
            assert!(refused(tid));
        }
    }

    #[test]
    fn a_reused_or_gone_pid_is_not_signalled() {
        let mut child = Command::new("/bin/sleep").arg("5").spawn().expect("sleep");
        let pid = child.id();
        let start = read_stat(pid).expect("stat").start_ticks;
        assert!(matches!(
            Target::open(pid, start + 1),
            Err(SignalError::Reused { .. })
        ));
        assert!(matches!(
            Target::open(pid, 0),
            Err(SignalError::UnknownStart { .. })
        ));
        let own = crate::identity::ExeId::of_path(std::path::Path::new("/bin/true")).ok();
        assert!(
            matches!(
                Target::open_exact(pid, start, own),
                Err(SignalError::Reused { .. })
            ),
            "same start time, another executable"
        );
        let sleep = crate::identity::ExeId::of_path(std::path::Path::new("/bin/sleep")).ok();
        assert!(Target::open_exact(pid, start, sleep).is_ok());
        let t = Target::open(pid, start).expect("same process");
        t.signal(libc::SIGKILL).expect("kill own child");
        assert!(!child.wait().expect("wait").success());
        assert!(matches!(
            Target::open(pid, start),
            Err(SignalError::Gone { .. } | SignalError::Reused { .. })
        ));
    }

    #[test]
    fn freezes_and_thaws_a_child() {
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let frozen = freeze(pid);
        let stopped_seen = is_stopped(pid);
        let thawed = thaw(pid);
        let resumed = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(5));
            !is_stopped(pid)
        });
        let _ = child.kill();
        let _ = child.wait();
        assert!(matches!(frozen, Ok(true)), "{frozen:?}");
        assert!(stopped_seen);
        assert!(thawed.is_ok(), "{thawed:?}");
        assert!(resumed);
    }
}
