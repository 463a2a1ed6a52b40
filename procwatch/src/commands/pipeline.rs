//! The tail of the pipeline shared by `monitor` and `scan`: act on each flagged process
//! (kill, dump), then hand the alert to the sinks; stop after the first one when asked.
use tracing::{info, warn};

use crate::{
    actions::{kill, pidfd::Target},
    alert::{Action, Alert},
    cli::DetectArgs,
    engine::{Engine, Flagged},
    output::Outputs,
};

/// Exit status after `--stop-on-alert` stopped the run.
pub const EXIT_STOPPED_ON_ALERT: u8 = 3;

/// What to do with a flagged process.
#[derive(Debug, Clone, Default)]
pub struct ActPolicy {
    /// Kill flagged processes (user space for what the kernel did not already kill).
    pub kill: bool,
    /// Only processes in this tree may be killed.
    pub scope: Option<u32>,
    /// Stop after the first alert.
    pub stop_on_alert: bool,
}

impl ActPolicy {
    /// The policy the command line asks for.
    pub fn from_args(args: &DetectArgs) -> Self {
        Self {
            kill: args.kill_on_alert,
            scope: args.enforce_scope_pid,
            stop_on_alert: args.stop_on_alert,
        }
    }
}

/// Alerts handed to the sinks so far, and whether the run should stop.
#[derive(Debug, Default)]
pub struct Tally {
    /// Alerts written.
    pub alerts: u64,
    /// `--stop-on-alert` fired.
    pub stop: bool,
}

/// Acts on every flagged process and writes its alert. Returns true when the run must stop.
pub async fn deliver(
    flagged: Vec<Flagged>,
    engine: &Engine,
    policy: &ActPolicy,
    outputs: &Outputs,
    tally: &mut Tally,
) -> bool {
    for f in flagged {
        let alert = act(f, engine, policy).await;
        outputs.send(alert).await;
        tally.alerts += 1;
        if policy.stop_on_alert {
            tally.stop = true;
            return true;
        }
    }
    false
}

async fn act(f: Flagged, engine: &Engine, policy: &ActPolicy) -> Alert {
    let mut alert = f.alert;
    if let Some(tracee) = f.stopped_tracee {
        resume_tracee(tracee);
    }
    if !policy.kill || alert.action != Action::Alert || f.kernel_thread {
        return alert;
    }
    if let Some(root) = policy.scope
        && !engine.descends_from(alert.pid, root)
    {
        return alert;
    }
    match kill::kill(&mut alert, f.start_ticks) {
        Ok(()) => info!(pid = alert.pid, "killed flagged process"),
        Err(e) => warn!(pid = alert.pid, error = %e, "could not kill flagged process"),
    }
    alert
}

/// A ptrace attach stops its target, and when the kernel kills the tracer the target stays in
/// that stop. Continue it, but only when it is in a stopped state.
fn resume_tracee(pid: u32) {
    let stopped =
        crate::process::stat::read_stat(pid).is_ok_and(|st| st.state == b'T' || st.state == b't');
    if !stopped {
        return;
    }
    match Target::open(pid, 0).and_then(|t| t.signal(libc::SIGCONT)) {
        Ok(()) => info!(pid, "resumed the tracee left stopped by a killed tracer"),
        Err(e) => warn!(pid, error = %e, "could not resume the tracee of a killed tracer"),
    }
}
