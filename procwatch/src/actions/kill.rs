//! Killing a flagged process from user space (ptrace and W+X are killed in the kernel by the
//! sensor's policy; everything else comes here).
use super::pidfd::{Target, TargetError};
use crate::alert::{Action, ActionBy, Alert};

/// Who may be killed: everything the alert names, or only one process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KillScope {
    /// Only this process and its descendants (None: any process).
    pub root: Option<u32>,
}

/// Kills the process of `alert` (identified by pid and start time) and records the outcome.
pub fn kill(alert: &mut Alert, start_ticks: u64) -> Result<(), TargetError> {
    let outcome = Target::open(alert.pid, start_ticks).and_then(|t| t.signal(libc::SIGKILL));
    alert.action = if outcome.is_ok() {
        Action::Killed
    } else {
        Action::KillFailed
    };
    alert.action_by = Some(ActionBy::Userspace);
    outcome
}
