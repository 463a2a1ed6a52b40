//! Freezing a process (SIGSTOP) while it is dumped, and thawing it (SIGCONT) if it is not
//! killed afterwards. Signals go through a pidfd, so a pid reused between the lookup and the
//! signal is never hit; kill(2) is the fallback only on kernels without pidfd_open (< 5.3).
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use crate::process::stat::read_stat;

/// How long [`freeze`] waits to see the process stopped.
pub const FREEZE_WAIT: Duration = Duration::from_millis(250);
/// Poll interval while waiting.
const POLL: Duration = Duration::from_millis(2);

/// Why a process was not signalled.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// A process procwatch must never stop: init, itself, its parent, or no process at all.
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

/// Stops `pid` with SIGSTOP; `Ok(true)` once /proc shows it stopped, `Ok(false)` when it was
/// signalled but not seen stopped within [`FREEZE_WAIT`] (e.g. in uninterruptible sleep).
pub fn freeze(pid: u32) -> Result<bool, SignalError> {
    send(pid, libc::SIGSTOP)?;
    let end = Instant::now() + FREEZE_WAIT;
    loop {
        if is_stopped(pid) {
            return Ok(true);
        }
        if Instant::now() >= end {
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}

/// Resumes `pid` with SIGCONT.
pub fn thaw(pid: u32) -> Result<(), SignalError> {
    send(pid, libc::SIGCONT)
}

/// True when `pid` is in state `T` (stopped) or `t` (tracing stop).
pub fn is_stopped(pid: u32) -> bool {
    read_stat(pid).is_ok_and(|s| matches!(s.state, b'T' | b't'))
}

/// The pid as a kill(2) argument, unless it is one procwatch must never signal.
fn guard(pid: u32) -> Result<libc::pid_t, SignalError> {
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
    // A thread id of procwatch: kill(2) would stop procwatch itself.
    if std::path::Path::new(&format!("/proc/self/task/{pid}")).exists() {
        return refuse("a thread of procwatch");
    }
    Ok(raw)
}

fn send(pid: u32, sig: libc::c_int) -> Result<(), SignalError> {
    let raw = guard(pid)?;
    let sent = match pidfd_open(raw) {
        Ok(fd) => match pidfd_send_signal(&fd, sig) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => kill(raw, sig),
            other => other,
        },
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => kill(raw, sig),
        Err(e) => Err(e),
    };
    sent.map_err(|source| match source.raw_os_error() {
        Some(libc::ESRCH) => SignalError::Gone { pid },
        _ => SignalError::Io { pid, source },
    })
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
    fn never_signals_init_itself_its_parent_or_groups() {
        // SAFETY: getppid and gettid have no preconditions.
        let (parent, tid) = unsafe { (libc::getppid(), libc::gettid()) };
        assert!(refused(0));
        assert!(refused(1));
        assert!(refused(u32::MAX), "-1 would be every process");
        assert!(refused(0x8000_0000));
        assert!(refused(std::process::id()));
        assert!(refused(u32::try_from(parent).expect("positive ppid")));
        // Test threads are not the main thread: their tid is another "pid" of this process.
        let tid = u32::try_from(tid).expect("positive tid");
        if tid != std::process::id() {
            assert!(refused(tid));
        }
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
        let resumed = crate::process::stat::read_stat(pid).is_ok()
            && (0..100).any(|_| {
                std::thread::sleep(Duration::from_millis(5));
                !is_stopped(pid)
            });
        let _ = child.kill();
        let _ = child.wait();
        assert!(matches!(frozen, Ok(true)), "{frozen:?}");
        assert!(stopped_seen);
        assert!(thawed.is_ok(), "{thawed:?}");
        // No "gone" check on the reaped pid: it may already belong to another process.
        assert!(resumed);
    }
}
