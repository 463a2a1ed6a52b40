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
    alert::{Action, ActionBy, Alert},
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
    let exemption = engine.kill_exemption(&f);
    let mut alert = f.alert;
    if let Some((pid, start)) = f.stopped_tracee {
        resume_tracee(pid, start);
    }
    let in_scope = policy
        .scope
        .is_none_or(|root| engine.descends_from(alert.pid, root));
    let mut kill = policy.kill && alert.action == Action::Alert && !f.kernel_thread && in_scope;
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
    let target =
        (kill && !f.exited).then(|| Target::open_exact(alert.pid, f.start_ticks, f.exe_id));
    if let Some((dir, limits)) = &policy.dump {
        if known {
            if let Some(Ok(t)) = &target
                && let Err(e) = t.freeze()
            {
                warn!(pid = alert.pid, error = %e, "could not freeze before the dump");
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
    alert
}

/// Dumps off the async threads; returns the dump directory, or why there is none.
async fn dump_alert(
    dir: PathBuf,
    limits: DumpLimits,
    alert: Alert,
    expect: dump::Expect,
) -> Result<String, String> {
    let pid = alert.pid;
    match tokio::task::spawn_blocking(move || dump::dump_process(&dir, &alert, expect, &limits))
        .await
    {
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
            warn!(pid, error = %e, "forensic dump task failed");
            Err(format!("dump task failed: {e}"))
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
        config::Config,
        process::table::Process,
        score::Verdict,
        sensor::{SensorKind, SensorStats},
    };

    fn flagged(pid: u32, start_ticks: u64) -> Flagged {
        let p = Process::new(pid, SensorKind::Ebpf);
        let verdict = Verdict {
            findings: Vec::new(),
            heuristic_score: 0.0,
            ml_score: 0.0,
            total_score: 0.0,
        };
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
        let engine = Engine::new(
            Config::default(),
            SensorKind::Ebpf,
            std::sync::Arc::new(SensorStats::default()),
        );
        let policy = ActPolicy {
            kill: true,
            scope: Some(std::process::id()),
            stop_on_alert: false,
            dump: Some((dir.join("d"), DumpLimits::default())),
        };
        let alert = act(flagged(pid, 0), &engine, &policy).await;
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
        let start = crate::process::stat::read_stat(pid)
            .expect("stat")
            .start_ticks;
        let policy = ActPolicy {
            dump: None,
            ..policy
        };
        let alert = act(flagged(pid, start), &engine, &policy).await;
        let status = child.wait().expect("wait");
        assert_eq!(alert.action, Action::Killed, "{alert:?}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
