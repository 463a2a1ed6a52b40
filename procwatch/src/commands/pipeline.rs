//! The tail of the pipeline shared by `monitor` and `scan`: act on each flagged process
//! (kill, dump), then hand the alert to the sinks; stop after the first one when asked.
use tracing::{info, warn};

use std::path::PathBuf;

use crate::{
    actions::{
        dump::{self, DumpLimits},
        kill,
        pidfd::{SignalError, Target},
    },
    alert::{Action, Alert},
    cli::DetectArgs,
    config::Config,
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
    /// Dump flagged processes under this directory, within these limits.
    pub dump: Option<(PathBuf, DumpLimits)>,
}

impl ActPolicy {
    /// The policy the command line and config ask for.
    pub fn new(args: &DetectArgs, cfg: &Config) -> Self {
        Self {
            kill: args.kill_on_alert,
            scope: args.enforce_scope_pid,
            stop_on_alert: args.stop_on_alert,
            dump: args
                .dump
                .clone()
                .map(|dir| (dir, DumpLimits::from(&cfg.dump))),
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
    let in_scope = policy
        .scope
        .is_none_or(|root| engine.descends_from(alert.pid, root));
    let kill = policy.kill && alert.action == Action::Alert && !f.kernel_thread && in_scope;
    // Open the exact process that was scored once: the freeze, the dump and the kill all hit it.
    let target = (kill && !f.exited).then(|| Target::open(alert.pid, f.start_ticks));
    if let Some((dir, limits)) = &policy.dump {
        if let Some(Ok(t)) = &target
            && let Err(e) = t.freeze()
        {
            warn!(pid = alert.pid, error = %e, "could not freeze before the dump");
        }
        alert.dump = dump_alert(dir.clone(), *limits, alert.clone()).await;
    }
    if kill {
        let target = target.unwrap_or(Err(SignalError::Gone { pid: alert.pid }));
        match kill::kill_target(&mut alert, target) {
            Ok(()) => info!(pid = alert.pid, "killed flagged process"),
            Err(e) => warn!(pid = alert.pid, error = %e, "could not kill flagged process"),
        }
    }
    alert
}

/// Dumps off the async threads; returns the dump directory when one was written.
async fn dump_alert(dir: PathBuf, limits: DumpLimits, alert: Alert) -> Option<String> {
    let pid = alert.pid;
    match tokio::task::spawn_blocking(move || dump::dump_process(&dir, &alert, &limits)).await {
        Ok(Ok(report)) => {
            if !report.skipped.is_empty() {
                info!(
                    pid,
                    skipped = report.skipped.len(),
                    "dump written with omissions (see its NOTES)"
                );
            }
            Some(report.path.to_string_lossy().into_owned())
        }
        Ok(Err(e)) => {
            warn!(pid, error = %e, "forensic dump failed");
            None
        }
        Err(e) => {
            warn!(pid, error = %e, "forensic dump task failed");
            None
        }
    }
}

/// A ptrace attach stops its target, and when the kernel kills the tracer the target stays in
/// that stop. Continue it, but only when it is in a stopped state.
fn resume_tracee(pid: u32) {
    let stopped =
        crate::process::stat::read_stat(pid).is_ok_and(|st| st.state == b'T' || st.state == b't');
    if !stopped {
        return;
    }
    match crate::actions::pidfd::thaw(pid) {
        Ok(()) => info!(pid, "resumed the tracee left stopped by a killed tracer"),
        Err(e) => warn!(pid, error = %e, "could not resume the tracee of a killed tracer"),
    }
}
