//! The tail of the pipeline shared by `monitor` and `scan`: act on each flagged process
//! (kill, dump), then hand the alert to the sinks; stop after the first one when asked. In
//! `monitor` this runs as its own task ([`ActionStage`]), so a freeze or a dump that a process
//! makes slow never holds up the engine; both run on the offload pool with deadlines.
use tracing::{info, warn};

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

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
    offload,
    output::Outputs,
};

/// Deadline of a forensic dump (it copies the executable and reads the process's memory-backed
/// files, any of which a process can make hang).
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(20);
/// Alert batches queued for the action stage before the engine waits for it.
const STAGE_QUEUE: usize = 1024;

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

/// A flagged process with what only the engine can tell: whether it is in the kill scope.
#[derive(Debug)]
pub struct Prepared {
    /// The flagged process.
    pub flagged: Flagged,
    /// Inside `--enforce-scope-pid`'s tree (or no scope is set).
    pub in_scope: bool,
}

/// Decides, with the engine's table, what the action stage cannot know on its own.
pub fn prepare(flagged: Vec<Flagged>, engine: &Engine, policy: &ActPolicy) -> Vec<Prepared> {
    flagged
        .into_iter()
        .map(|flagged| {
            let in_scope = policy
                .scope
                .is_none_or(|root| engine.descends_from(flagged.alert.pid, root));
            Prepared { flagged, in_scope }
        })
        .collect()
}

/// Acts on every flagged process and writes its alert. Returns true when the run must stop.
pub async fn deliver(
    flagged: Vec<Flagged>,
    engine: &Engine,
    policy: &ActPolicy,
    outputs: &Outputs,
    tally: &mut Tally,
) -> bool {
    deliver_prepared(prepare(flagged, engine, policy), policy, outputs, tally).await
}

async fn deliver_prepared(
    batch: Vec<Prepared>,
    policy: &ActPolicy,
    outputs: &Outputs,
    tally: &mut Tally,
) -> bool {
    for p in batch {
        let alert = act(p, policy).await;
        outputs.send(alert).await;
        tally.alerts += 1;
        if policy.stop_on_alert {
            tally.stop = true;
            return true;
        }
    }
    false
}

/// `monitor`'s action stage: a task of its own that acts on flagged processes and writes their
/// alerts in the order they come.
pub struct ActionStage {
    tx: mpsc::Sender<Vec<Prepared>>,
    task: JoinHandle<Tally>,
    stopped: watch::Receiver<bool>,
}

impl ActionStage {
    /// Starts the stage.
    pub fn start(policy: ActPolicy, outputs: Arc<Outputs>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Vec<Prepared>>(STAGE_QUEUE);
        let (stop_tx, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut tally = Tally::default();
            while let Some(batch) = rx.recv().await {
                // After --stop-on-alert fired, the rest is not acted on.
                if !tally.stop && deliver_prepared(batch, &policy, &outputs, &mut tally).await {
                    let _ = stop_tx.send(true);
                }
            }
            tally
        });
        Self { tx, task, stopped }
    }

    /// Hands a batch to the stage; waits only when it is [`STAGE_QUEUE`] batches behind.
    pub async fn send(&self, batch: Vec<Prepared>) {
        if !batch.is_empty() {
            let _ = self.tx.send(batch).await;
        }
    }

    /// Turns true once `--stop-on-alert` fired.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stopped.clone()
    }

    /// Acts on everything handed over, then returns the tally.
    pub async fn finish(self) -> Tally {
        drop(self.tx);
        self.task.await.unwrap_or_default()
    }
}

async fn act(p: Prepared, policy: &ActPolicy) -> Alert {
    let Prepared {
        flagged: f,
        in_scope,
    } = p;
    let mut alert = f.alert;
    if let Some(tracee) = f.stopped_tracee {
        resume_tracee(tracee);
    }
    let kill = policy.kill && alert.action == Action::Alert && !f.kernel_thread && in_scope;
    // Open the exact process that was scored once: the freeze, the dump and the kill all hit it.
    let mut target = (kill && !f.exited).then(|| Target::open(alert.pid, f.start_ticks));
    if let Some((dir, limits)) = &policy.dump {
        if let Some(Ok(t)) = target.take() {
            target = Some(freeze(t, alert.pid, f.start_ticks).await);
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

/// Stops the target before the dump, off the async threads (a process in uninterruptible
/// sleep never shows as stopped, and the freeze waits for it); the target comes back for the
/// kill, reopened (pid + start time) if the freeze was abandoned with it.
async fn freeze(t: Target, pid: u32, start_ticks: u64) -> Result<Target, SignalError> {
    let job = offload::pool().run("freeze", offload::READ_TIMEOUT, move || {
        let r = t.freeze();
        (t, r)
    });
    match job.await {
        Ok((t, Ok(_))) => Ok(t),
        Ok((t, Err(e))) => {
            warn!(pid, error = %e, "could not freeze before the dump");
            Ok(t)
        }
        Err(e) => {
            warn!(pid, error = %e, "could not freeze before the dump");
            Target::open(pid, start_ticks)
        }
    }
}

/// Dumps on the offload pool within [`DUMP_TIMEOUT`]; returns the dump directory when one was
/// written.
async fn dump_alert(dir: PathBuf, limits: DumpLimits, alert: Alert) -> Option<String> {
    let pid = alert.pid;
    let job = offload::pool().run("dump", DUMP_TIMEOUT, move || {
        dump::dump_process(&dir, &alert, &limits)
    });
    match job.await {
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
            warn!(pid, error = %e, "forensic dump abandoned");
            None
        }
    }
}

/// A ptrace attach stops its target, and when the kernel kills the tracer the target stays in
/// that stop. Continue it, but only when it is in a stopped state.
fn resume_tracee(pid: u32) {
    let stopped =
        crate::procfs::stat::read_stat(pid).is_ok_and(|st| st.state == b'T' || st.state == b't');
    if !stopped {
        return;
    }
    match crate::actions::pidfd::thaw(pid) {
        Ok(()) => info!(pid, "resumed the tracee left stopped by a killed tracer"),
        Err(e) => warn!(pid, error = %e, "could not resume the tracee of a killed tracer"),
    }
}
