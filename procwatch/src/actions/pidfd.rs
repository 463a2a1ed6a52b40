//! A pidfd for the exact process that was scored: opened by pid, then checked against the
//! process's start time, so a pid recycled in between is never signalled.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Why a process could not be targeted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// The process has exited.
    #[error("process {0} has exited")]
    Gone(u32),
    /// The pid now belongs to another process.
    #[error("pid {0} was reused by another process")]
    Reused(u32),
    /// procwatch never signals this process.
    #[error("refusing to signal pid {pid}: {why}")]
    Protected {
        /// The pid.
        pid: u32,
        /// Why.
        why: &'static str,
    },
    /// The kernel said no.
    #[error("{op} failed for pid {pid}: {err}")]
    Os {
        /// The pid.
        pid: u32,
        /// Which operation.
        op: &'static str,
        /// errno text.
        err: String,
    },
}

/// A process procwatch may act on, held by pidfd.
#[derive(Debug)]
pub struct Target {
    pid: u32,
    fd: OwnedFd,
}

/// Pids procwatch never signals: pid 0/1, itself, its parent.
pub fn protected(pid: u32) -> Option<&'static str> {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    if pid <= 1 {
        Some("pid 1 (init) and pid 0 are never signalled")
    } else if pid == std::process::id() {
        Some("it is procwatch itself")
    } else if i64::from(pid) == i64::from(parent) {
        Some("it is procwatch's parent")
    } else {
        None
    }
}

impl Target {
    /// Opens a pidfd for `pid` and checks it is still the process that started at
    /// `start_ticks` (0 skips the check) and is not a kernel thread.
    pub fn open(pid: u32, start_ticks: u64) -> Result<Self, TargetError> {
        if let Some(why) = protected(pid) {
            return Err(TargetError::Protected { pid, why });
        }
        let pid_arg = libc::pid_t::try_from(pid).map_err(|_| TargetError::Gone(pid))?;
        // SAFETY: pidfd_open(pid, flags) has no memory arguments.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid_arg, 0) };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ESRCH) => TargetError::Gone(pid),
                _ => TargetError::Os {
                    pid,
                    op: "pidfd_open",
                    err: err.to_string(),
                },
            });
        }
        // SAFETY: the syscall returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // The pidfd pins the process; if /proc/PID now shows another start time, the pid was
        // recycled before the pidfd was opened.
        let stat = crate::process::stat::read_stat(pid).map_err(|_| TargetError::Gone(pid))?;
        if start_ticks != 0 && stat.start_ticks != start_ticks {
            return Err(TargetError::Reused(pid));
        }
        if stat.ppid == 2 || pid == 2 {
            return Err(TargetError::Protected {
                pid,
                why: "kernel threads are never signalled",
            });
        }
        Ok(Self { pid, fd })
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `sig` through the pidfd.
    pub fn signal(&self, sig: i32) -> Result<(), TargetError> {
        // SAFETY: pidfd_send_signal(fd, sig, NULL, 0): null siginfo is allowed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        Err(match err.raw_os_error() {
            Some(libc::ESRCH) => TargetError::Gone(self.pid),
            _ => TargetError::Os {
                pid: self.pid,
                op: "pidfd_send_signal",
                err: err.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_1_self_and_parent_are_protected() {
        assert!(protected(1).is_some());
        assert!(protected(0).is_some());
        assert!(protected(std::process::id()).is_some());
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() } as u32;
        assert!(protected(parent).is_some());
        assert!(matches!(
            Target::open(1, 0),
            Err(TargetError::Protected { .. })
        ));
    }

    #[test]
    fn kernel_threads_are_refused() {
        assert!(matches!(
            Target::open(2, 0),
            Err(TargetError::Protected { .. })
        ));
    }

    #[test]
    fn a_gone_or_reused_pid_is_not_signalled() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let start = crate::process::stat::read_stat(pid)
            .expect("stat")
            .start_ticks;
        assert_eq!(
            Target::open(pid, start + 1).err(),
            Some(TargetError::Reused(pid))
        );
        let t = Target::open(pid, start).expect("same process");
        t.signal(libc::SIGKILL).expect("kill own child");
        let status = child.wait().expect("wait");
        assert!(!status.success());
        assert!(matches!(
            Target::open(pid, start),
            Err(TargetError::Gone(_))
        ));
    }
}
