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
    alert.action = match &outcome {
        Ok(()) => Action::Killed,
        // procwatch would not: it cannot name the exact process, or may never signal it.
        Err(
            SignalError::Refused { .. }
            | SignalError::Reused { .. }
            | SignalError::UnknownStart { .. },
        ) => Action::KillRefused,
        Err(SignalError::Gone { .. } | SignalError::Io { .. }) => Action::KillFailed,
    };
    alert.action_reason = outcome.as_ref().err().map(ToString::to_string);
    alert.action_by = Some(ActionBy::Userspace);
    outcome
}

/// Kills the process of `alert` (identified by pid and start time) and records the outcome.
pub fn kill(alert: &mut Alert, start_ticks: u64) -> Result<(), SignalError> {
    let target = Target::open(alert.pid, start_ticks);
    kill_target(alert, target)
}

/// Kills each condemned descendant of a killed process, each through a pidfd of exactly that
/// process (pid + start time; its executable may have changed by exec since it was forked).
/// Returns the pids killed; one already gone, or refused (init, procwatch), is skipped.
pub fn kill_descendants(victims: &[crate::engine::Condemned]) -> Vec<u32> {
    victims
        .iter()
        .filter_map(|c| {
            match Target::open(c.pid, c.start_ticks).and_then(|t| t.signal(libc::SIGKILL)) {
                Ok(()) => Some(c.pid),
                Err(e) => {
                    tracing::debug!(pid = c.pid, error = %e, "descendant not killed");
                    None
                }
            }
        })
        .collect()
}
