//! The tail of the pipeline shared by `monitor` and `scan`: act on each flagged process
//! (kill, dump), make the alert final (its id, its JSON line, the alert history: see
//! [`crate::history`]), then hand it to the sinks; stop after the first one when asked. In
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
    alert::{Action, ActionBy, Alert, RuleId},
    cli::DetectArgs,
    config::{Config, RuleAction},
    engine::{Condemned, Engine, Flagged},
    history::HistoryWriter,
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

/// A flagged process with what only the engine can tell: whether it is in the kill scope and
/// whether it is exempt from kills.
#[derive(Debug)]
pub struct Prepared {
    /// The flagged process.
    pub flagged: Flagged,
    /// Inside `--enforce-scope-pid`'s tree (or no scope is set).
    pub in_scope: bool,
    /// Why the process may not be killed (allowlisted executable, whitelisted user), if so.
    pub exemption: Option<String>,
    /// What the alert's rules call for under the config in force.
    pub intent: Intent,
    /// Live descendants condemned with the process (killed after it, each by pid + start).
    pub descendants: Vec<Condemned>,
    /// Who waits for the finished alert (a kill the API asked for).
    pub reply: Option<tokio::sync::oneshot::Sender<Alert>>,
}

/// What an alert calls for: per-rule `actions:` over the command line's default, and the kill
/// threshold `kill_min_score`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intent {
    /// Kill the process (scope and exemptions still apply).
    pub kill: bool,
    /// Write a forensic dump.
    pub dump: bool,
    /// Why a kill one of its rules asks for is not carried out.
    pub note: Option<String>,
}

impl Intent {
    /// What `alert` calls for under `cfg`, given the command line's `policy`.
    pub fn of(alert: &Alert, cfg: &Config, policy: &ActPolicy) -> Self {
        let default = if policy.kill {
            RuleAction::Kill
        } else if policy.dump.is_some() {
            RuleAction::Dump
        } else {
            RuleAction::Alert
        };
        // Per-rule actions name heuristic rules; a baseline anomaly takes the default action,
        // and a finding the baseline knows as normal (scored 0) asks for nothing.
        let heuristic = alert.reasons.iter().filter_map(|r| match r.rule {
            RuleId::Heuristic(rule) if r.known.is_none() => Some(rule),
            _ => None,
        });
        let anomaly = alert
            .reasons
            .iter()
            .any(|r| matches!(r.rule, RuleId::Anomaly(_)));
        let wanted = cfg.actions.strongest(heuristic, default).max(if anomaly {
            default
        } else {
            RuleAction::Alert
        });
        let threshold = cfg.kill_threshold();
        let sure = alert.total_score >= threshold;
        Self {
            kill: wanted == RuleAction::Kill && sure,
            dump: wanted >= RuleAction::Dump,
            note: (wanted == RuleAction::Kill && !sure).then(|| {
                format!(
                    "no kill: score {} is below kill_min_score {threshold}",
                    alert.total_score
                )
            }),
        }
    }
}

/// Decides, with the engine's table, what the action stage cannot know on its own. A process
/// that is to be killed (here, or already in the kernel) is condemned with its descendants
/// (see `engine::doom`): they die with it.
pub fn prepare(flagged: Vec<Flagged>, engine: &mut Engine, policy: &ActPolicy) -> Vec<Prepared> {
    flagged
        .into_iter()
        .map(|flagged| {
            let in_scope = policy
                .scope
                .is_none_or(|root| engine.descends_from(flagged.alert.pid, root));
            let exemption = engine.kill_exemption(&flagged);
            let intent = Intent::of(&flagged.alert, engine.config(), policy);
            let a = &flagged.alert;
            let dies = a.action == Action::Killed || (intent.kill && a.action == Action::Alert);
            let condemn = dies
                && in_scope
                && exemption.is_none()
                && !flagged.kernel_thread
                && flagged.start_ticks != 0;
            let descendants = if condemn {
                engine.condemn(&flagged)
            } else {
                Vec::new()
            };
            Prepared {
                flagged,
                in_scope,
                exemption,
                intent,
                descendants,
                reply: None,
            }
        })
        .collect()
}

/// Acts on every flagged process and writes its alert. Returns true when the run must stop.
pub async fn deliver(
    flagged: Vec<Flagged>,
    engine: &mut Engine,
    policy: &ActPolicy,
    outputs: &Outputs,
    history: &mut HistoryWriter,
    tally: &mut Tally,
) -> bool {
    let prepared = prepare(flagged, engine, policy);
    // No kernel map and no fork events here: the descendants found are killed by `act`.
    let _ = engine.take_condemned();
    deliver_prepared(prepared, policy, outputs, history, tally).await
}

async fn deliver_prepared(
    batch: Vec<Prepared>,
    policy: &ActPolicy,
    outputs: &Outputs,
    history: &mut HistoryWriter,
    tally: &mut Tally,
) -> bool {
    for mut p in batch {
        // Only a kill the API asked for has someone waiting: it is a record of an action,
        // not a detection, so it does not stop the run.
        let reply = p.reply.take();
        let detection = reply.is_none();
        // The id first: a dump written while acting carries it.
        history.assign_id(&mut p.flagged.alert);
        let alert = act(p, policy).await;
        let answer = reply.map(|r| (r, alert.clone()));
        publish(alert, history, outputs).await;
        // Answered once published: a GET /api/alerts/{id} right after the answer finds it.
        if let Some((reply, alert)) = answer {
            let _ = reply.send(alert);
        }
        tally.alerts += 1;
        if policy.stop_on_alert && detection {
            tally.stop = true;
            return true;
        }
    }
    false
}

/// A kill the API asked for, checked by the engine ([`Engine::api_kill`]): the action stage
/// kills the exact process and the alert recording it goes to the sinks; `reply` gets it.
pub fn api_kill(flagged: Flagged, reply: tokio::sync::oneshot::Sender<Alert>) -> Prepared {
    Prepared {
        flagged,
        in_scope: true,
        exemption: None,
        intent: Intent {
            kill: true,
            dump: false,
            note: None,
        },
        descendants: Vec::new(),
        reply: Some(reply),
    }
}

/// Makes `alert` final (its id was given before it was acted on: ids are handed out only in
/// this stage, in delivery order) and hands it to the alert history (which never waits) and
/// to the sinks, which write the same JSON line.
async fn publish(mut alert: Alert, history: &mut HistoryWriter, outputs: &Outputs) {
    match history.publish(&mut alert) {
        Ok(record) => {
            outputs
                .send_final(Arc::new(alert), record.json.clone())
                .await
        }
        Err(e) => {
            // Not expected (every field serialises); the output thread tries again and counts it.
            warn!(pid = alert.pid, error = %e, "alert could not be serialised for the history");
            outputs.send(alert).await;
        }
    }
}

/// `monitor`'s action stage: a task of its own that acts on flagged processes and writes their
/// alerts in the order they come.
pub struct ActionStage {
    tx: mpsc::Sender<Vec<Prepared>>,
    task: JoinHandle<(Tally, Option<HistoryWriter>)>,
    stopped: watch::Receiver<bool>,
}

impl ActionStage {
    /// Starts the stage; it owns the history's writer side until [`Self::finish`].
    pub fn start(policy: ActPolicy, outputs: Arc<Outputs>, mut history: HistoryWriter) -> Self {
        let (tx, mut rx) = mpsc::channel::<Vec<Prepared>>(STAGE_QUEUE);
        let (stop_tx, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut tally = Tally::default();
            while let Some(batch) = rx.recv().await {
                // After --stop-on-alert fired, the rest is not acted on.
                if !tally.stop
                    && deliver_prepared(batch, &policy, &outputs, &mut history, &mut tally).await
                {
                    let _ = stop_tx.send(true);
                }
            }
            (tally, Some(history))
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

    /// Acts on everything handed over, then returns the tally and the history's writer side
    /// (to be closed once the sinks are).
    pub async fn finish(self) -> (Tally, Option<HistoryWriter>) {
        drop(self.tx);
        self.task.await.unwrap_or_default()
    }
}

async fn act(p: Prepared, policy: &ActPolicy) -> Alert {
    let Prepared {
        flagged: f,
        in_scope,
        exemption,
        intent,
        descendants,
        reply: _,
    } = p;
    let mut alert = f.alert;
    if let Some((pid, start)) = f.stopped_tracee {
        resume_tracee(pid, start);
    }
    if alert.action == Action::Alert
        && let Some(note) = intent.note
    {
        alert.action_reason = Some(note);
    }
    let mut kill = intent.kill && alert.action == Action::Alert && !f.kernel_thread && in_scope;
    if kill && let Some(why) = exemption {
        alert.action = Action::Exempt;
        alert.action_by = Some(ActionBy::Userspace);
        alert.action_reason = Some(why);
        kill = false;
    }
    // Without a start time the pid cannot be tied to the flagged process: nothing acts on it.
    const UNKNOWN: &str = "start time unknown: the pid cannot be told from a process that \
                           reused it, so nothing acts on it (no kill, no dump)";
    let known = f.start_ticks != 0;
    if kill && !known {
        alert.action = Action::KillRefused;
        alert.action_by = Some(ActionBy::Userspace);
        alert.action_reason = Some(UNKNOWN.into());
        kill = false;
    }
    // Open the exact process that was scored once: the freeze, the dump and the kill all hit it.
    let mut target =
        (kill && !f.exited).then(|| Target::open_exact(alert.pid, f.start_ticks, f.exe_id));
    if intent.dump && policy.dump.is_none() {
        alert.dump_error = Some("actions: asks for a dump, but no --dump DIR was given".into());
    }
    if let Some((dir, limits)) = policy.dump.as_ref().filter(|_| intent.dump) {
        if known {
            if let Some(Ok(t)) = target.take_if(|t| t.is_ok()) {
                target = Some(freeze(t, alert.pid, f.start_ticks, f.exe_id).await);
            }
            let expect = dump::Expect {
                start_ticks: f.start_ticks,
                exe: f.exe_id,
            };
            match dump_alert(dir.clone(), *limits, alert.clone(), expect).await {
                Ok(path) => alert.dump = Some(path),
                Err(why) => alert.dump_error = Some(why),
            }
        } else {
            alert.dump_error = Some(UNKNOWN.into());
        }
    }
    if kill {
        let target = target.unwrap_or(Err(SignalError::Gone { pid: alert.pid }));
        match kill::kill_target(&mut alert, target) {
            Ok(()) => info!(pid = alert.pid, "killed flagged process"),
            Err(e) => warn!(pid = alert.pid, error = %e, "did not kill flagged process"),
        }
    }
    if !descendants.is_empty() {
        let killed = kill::kill_descendants(&descendants);
        let note = format!(
            "descendants killed: {} of {} ({})",
            killed.len(),
            descendants.len(),
            killed
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        alert.action_reason = Some(match alert.action_reason.take() {
            Some(why) => format!("{why}; {note}"),
            None => note,
        });
    }
    alert
}

/// Stops the target before the dump, off the async threads (a process in uninterruptible
/// sleep never shows as stopped, and the freeze waits for it); the target comes back for the
/// kill, reopened (pid + start time + file) if the freeze was abandoned with it.
async fn freeze(
    t: Target,
    pid: u32,
    start_ticks: u64,
    exe: Option<crate::identity::ExeId>,
) -> Result<Target, SignalError> {
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
            Target::open_exact(pid, start_ticks, exe)
        }
    }
}

/// Dumps on the offload pool within [`DUMP_TIMEOUT`]; returns the dump directory, or why
/// there is none.
async fn dump_alert(
    dir: PathBuf,
    limits: DumpLimits,
    alert: Alert,
    expect: dump::Expect,
) -> Result<String, String> {
    let pid = alert.pid;
    let job = offload::pool().run("dump", DUMP_TIMEOUT, move || {
        dump::dump_process(&dir, &alert, expect, &limits)
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
            Ok(report.path.to_string_lossy().into_owned())
        }
        Ok(Err(e)) => {
            warn!(pid, error = %e, "forensic dump failed");
            Err(e.to_string())
        }
        Err(e) => {
            warn!(pid, error = %e, "forensic dump abandoned");
            Err(format!("dump abandoned: {e}"))
        }
    }
}

/// A `PTRACE_ATTACH` stops its target, and when the kernel kills the tracer the target stays
/// in that stop. Continue it: only the process the kernel reported as really attached by the
/// killed tracer (pid and start time, read in the kernel at the attach's syscall exit), never
/// the pid the tracer passed. Sent whether or not the stop has happened yet: the attach
/// queued a SIGSTOP that may still be pending, and SIGCONT cancels a pending stop too.
fn resume_tracee(pid: u32, start_ticks: u64) {
    match Target::open(pid, start_ticks).and_then(|t| t.signal(libc::SIGCONT)) {
        Ok(()) => info!(pid, "resumed the tracee of a killed tracer"),
        Err(e) => warn!(pid, error = %e, "did not resume the tracee of a killed tracer"),
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;
    use crate::{
        alert::{SensorInfo, Trigger},
        process::table::Process,
        score::Verdict,
        sensor::SensorKind,
    };

    fn prepared(pid: u32, start_ticks: u64) -> Prepared {
        Prepared {
            flagged: flagged(pid, start_ticks),
            in_scope: true,
            exemption: None,
            intent: Intent {
                kill: true,
                dump: true,
                note: None,
            },
            descendants: Vec::new(),
            reply: None,
        }
    }

    fn flagged(pid: u32, start_ticks: u64) -> Flagged {
        let p = Process::new(pid, SensorKind::Ebpf);
        let verdict = Verdict::default();
        let sensor = SensorInfo {
            name: SensorKind::Ebpf,
            events_lost: 0,
            probes_missing: Vec::new(),
        };
        Flagged {
            alert: crate::alert::build(&p, &verdict, &Trigger::Sweep, None, sensor),
            start_ticks,
            exe_id: None,
            kernel_thread: false,
            exited: false,
            stopped_tracee: None,
        }
    }

    #[tokio::test]
    async fn without_a_start_time_nothing_is_killed_or_dumped() {
        let mut child = Command::new("/bin/sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let dir = std::env::temp_dir().join(format!("pw-pipeline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let policy = ActPolicy {
            kill: true,
            scope: Some(std::process::id()),
            stop_on_alert: false,
            dump: Some((dir.join("d"), DumpLimits::default())),
        };
        let alert = act(prepared(pid, 0), &policy).await;
        let alive = child.try_wait().expect("try_wait").is_none();
        let _ = child.kill();
        let _ = child.wait();
        assert!(alive, "a process of unknown start time was killed");
        assert_eq!(alert.action, Action::KillRefused);
        assert!(
            alert
                .action_reason
                .as_deref()
                .is_some_and(|r| r.contains("start time unknown")),
            "{alert:?}"
        );
        assert!(alert.dump.is_none());
        assert!(alert.dump_error.is_some());
        assert!(!dir.join("d").exists(), "nothing dumped");

        // With its start time, the same process is killed.
        let mut child = Command::new("/bin/sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let start = crate::procfs::stat::read_stat(pid)
            .expect("stat")
            .start_ticks;
        let policy = ActPolicy {
            dump: None,
            ..policy
        };
        let alert = act(prepared(pid, start), &policy).await;
        let status = child.wait().expect("wait");
        assert_eq!(alert.action, Action::Killed, "{alert:?}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A kill through the API: answered only once its record is in the history, counted,
    /// and not a detection, so `--stop-on-alert` does not fire; a detection after it does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_api_kill_is_answered_once_published_and_does_not_stop_the_run() {
        let mut child = Command::new("/bin/sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let start = crate::procfs::stat::read_stat(pid)
            .expect("stat")
            .start_ticks;
        let policy = ActPolicy {
            kill: false,
            scope: Some(std::process::id()),
            stop_on_alert: true,
            dump: None,
        };
        let outputs = Outputs::start(Vec::new()).expect("outputs");
        let (mut history, reader) = crate::history::History::memory();
        let (tx, rx) = tokio::sync::oneshot::channel::<Alert>();
        // The one waiting for the answer looks the alert up the moment it has the answer.
        let waiter = std::thread::spawn(move || {
            let alert = rx.blocking_recv().expect("answer");
            (alert.id, reader.published_id(), reader)
        });
        let mut tally = Tally::default();
        let stop = deliver_prepared(
            vec![api_kill(flagged(pid, start), tx)],
            &policy,
            &outputs,
            &mut history,
            &mut tally,
        )
        .await;
        let status = child.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "the api kill kills");
        assert!(!stop && !tally.stop, "an api kill stopped the run");
        assert_eq!(tally.alerts, 1, "the kill's record is counted");
        let (id, published, reader) = waiter.join().expect("waiter");
        assert_eq!(id, 1);
        assert!(published >= id, "answered before the alert was published");
        let record = reader.get(id).await.expect("get").expect("in the history");
        assert!(
            record.json.contains("\"action\":\"killed\""),
            "{}",
            record.json
        );
        // A detection still stops the run.
        let stop = deliver_prepared(
            vec![prepared(GONE_PID, 0)],
            &policy,
            &outputs,
            &mut history,
            &mut tally,
        )
        .await;
        assert!(stop && tally.stop);
        assert_eq!(tally.alerts, 2);
        outputs.close().await;
    }

    /// A pid above pid_max: no process has it.
    const GONE_PID: u32 = 0x7fff_fff0;
}
