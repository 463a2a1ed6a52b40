//! Killing a flagged process from user space (ptrace and W+X are killed in the kernel by the
//! sensor's policy; everything else comes here).
use super::pidfd::{SignalError, Target};
use crate::alert::{Action, ActionBy, Alert};

/// Kills `target` (already opened for the exact process scored) and records the outcome.
pub fn kill_target(
    alert: &mut Alert,
    target: Result<Target, SignalError>,
) -> Result<(), SignalError> {
    let outcome = target.and_then(|t| t.signal(libc::SIGKILL));
    alert.action = if outcome.is_ok() {
        Action::Killed
    } else {
        Action::KillFailed
    };
    alert.action_by = Some(ActionBy::Userspace);
    outcome
}

/// Kills the process of `alert` (identified by pid and start time) and records the outcome.
pub fn kill(alert: &mut Alert, start_ticks: u64) -> Result<(), SignalError> {
    let target = Target::open(alert.pid, start_ticks);
    kill_target(alert, target)
}
