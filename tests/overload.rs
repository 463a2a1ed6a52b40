//! A deliberate overload (issue 5): with a ring buffer of one page, an exec storm overflows
//! it. Every event the sensor could not deliver must be counted, in the stats and on alerts,
//! and the count must account for exactly the execs that went missing. And a fault (issue 9):
//! procwatch frozen for 10 s in the middle of a storm loses events, counts them, and carries on.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
        mpsc,
    },
    time::{Duration, Instant},
};

use procwatch_tests::{Monitor, TempDir, procwatch_bin, require_root, scratch_base};
use serde_json::Value;

/// Execs per storm: a few hundred exec records a second fit through a one-page ring.
const EXECS: u64 = 2000;

/// Execs other processes may make without a fork of their own (`exec` in a shell) during a
/// storm; an over-count beyond this fails the test.
const SLACK: u64 = 300;

/// Processes created on the machine since boot (`processes` in /proc/stat): the loss counter is
/// machine-wide, so on a busy machine other software's execs are lost too, and this bounds them.
fn forks_since_boot() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("processes ")?.trim().parse().ok())
        })
        .expect("processes in /proc/stat")
}

/// The loss counters are machine-wide: the tests here storm one at a time.
static ONE_STORM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds [`ONE_STORM`] (a failed test before does not matter).
fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_STORM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `path` [`EXECS`] times from two threads, as fast as they go.
fn storm(path: &Path) {
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..EXECS / 2 {
                    let mut cmd = Command::new(path);
                    cmd.stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                    let _ = cmd.spawn().expect("spawn").wait();
                }
            });
        }
    });
}

/// The storm of `execs` overflowed the ring, and each of its execs was either `delivered`
/// (shown as `what`) or counted among the `lost`.
fn assert_every_exec_accounted(execs: u64, delivered: u64, lost: u64, what: &str) {
    assert!(
        lost > 0 && delivered < execs,
        "the ring did not overflow: {delivered} of {execs} {what}, {lost} lost"
    );
    assert!(
        delivered + lost >= execs,
        "{} execs neither {what} nor counted lost ({delivered} {what}, {lost} lost)",
        execs - delivered - lost
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn an_overflowing_ring_counts_every_exec_it_drops() {
    require_root!();
    let _alone = alone();
    let dir = TempDir::new_in(&scratch_base(), "overload-events");
    let exe = dir.copy_exe(Path::new("/bin/true"), "pw-overload-true");
    let out = dir.0.join("events.jsonl");
    let mut child = Command::new(procwatch_bin())
        .args([
            "events",
            "--sensor",
            "ebpf",
            "--kinds",
            "exec",
            "--ring-kib",
            "4",
        ])
        .arg("--output")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("procwatch starts");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    while !log
        .last()
        .is_some_and(|l: &String| l.contains("streaming events"))
    {
        log.push(
            rx.recv_timeout(Duration::from_secs(60))
                .expect("procwatch reports readiness"),
        );
    }

    let forks_before = forks_since_boot();
    storm(&exe);
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("procwatch exits");
    let forks = forks_since_boot() - forks_before;
    assert!(status.success(), "exit status {status:?}");
    log.extend(rx.iter());
    let summary: Value = log
        .iter()
        .find_map(|l| serde_json::from_str(l.split_once(": ")?.1).ok())
        .unwrap_or_else(|| panic!("no summary in {log:#?}"));

    let text = std::fs::read_to_string(&out).expect("events file");
    let exe_name = exe.to_str().expect("utf-8");
    let got = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|e| e["kind"] == "exec" && e["filename"] == exe_name)
        .count() as u64;
    let lost = summary["stats"]["kernel_lost"]["exec"]
        .as_u64()
        .unwrap_or_else(|| panic!("no kernel_lost.exec in {summary}"));
    assert_every_exec_accounted(EXECS, got, lost, "delivered");
    // Never more counted lost than could have been: every exec on the machine meanwhile (ours
    // and others', each with its fork) less those delivered.
    let delivered_all = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "exec")
        .count() as u64;
    let possible = forks.max(EXECS).saturating_sub(delivered_all) + SLACK;
    assert!(
        lost <= possible,
        "{lost} counted lost but only {} of ours are missing, and the machine made {forks} \
         processes in all ({delivered_all} execs delivered)",
        EXECS - got
    );
    assert_eq!(summary["stats"]["malformed"], 0, "{summary}");
    assert_eq!(
        summary["stats"]["lost_total"],
        summary["stats"]["kernel_lost"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>())
            .unwrap_or_default()
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn alerts_after_an_overflow_carry_the_loss_and_the_monitor_reports_it() {
    require_root!();
    let _alone = alone();
    let mut m = Monitor::start("ring_buffer_kib: 4\nsweep_interval: 1s\n", &[]);
    let dir = TempDir::new_in("/tmp", "overload-monitor");
    // In /tmp: every one of these processes is a tmp_exe alert, if its exec gets through.
    let exe = dir.copy_exe(Path::new("/bin/true"), "pw-overload-payload");
    storm(&exe);
    // The loss counter is read every 500 ms and the warning comes with the next sweep.
    let warning = m.wait_log(Duration::from_secs(15), "events lost");
    assert!(warning.contains("ring_buffer_kib"), "{warning}");
    std::thread::sleep(Duration::from_secs(1));

    let (status, summary, text) = m.stop();
    assert!(status.success(), "{status:?}");
    let summary = summary.expect("summary");
    let lost_exec = summary["sensor"]["kernel_lost"]["exec"]
        .as_u64()
        .expect("kernel_lost.exec");
    let total = summary["sensor"]["lost_total"]
        .as_u64()
        .expect("lost_total");
    let exe_name = exe.to_str().expect("utf-8");
    let alerts: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|a| a["exe"] == exe_name || a["trigger"]["filename"] == exe_name)
        .collect();
    let alerted = alerts.len() as u64;
    assert_every_exec_accounted(EXECS, alerted, lost_exec, "alerted");
    // The loss counter is read every 500 ms: alerts of the storm's later processes show it,
    // never more than the final total.
    let shown = alerts
        .iter()
        .filter_map(|a| a["sensor"]["events_lost"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(shown > 0, "none of {alerted} alerts shows the loss");
    assert!(
        shown <= total,
        "an alert shows {shown} lost, the summary {total}"
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn stops_promptly_in_the_middle_of_a_storm() {
    require_root!();
    let _alone = alone();
    let mut child = Command::new(procwatch_bin())
        .args(["events", "--sensor", "ebpf", "--kinds", "exec,fork,exit"])
        .args(["--output", "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("procwatch starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    while !rx
        .recv_timeout(Duration::from_secs(60))
        .expect("procwatch reports readiness")
        .contains("streaming events")
    {}
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let end = std::time::Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < end
            {
                let _ = Command::new("/bin/true").status();
            }
        })
    };
    // The reader is busy draining every few milliseconds by now.
    std::thread::sleep(Duration::from_secs(1));
    let asked = std::time::Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let exited = procwatch_tests::eventually(Duration::from_secs(5), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    let took = asked.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = storm.join();
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().expect("procwatch exits");
    assert!(
        exited,
        "still running {took:?} after SIGINT, with execs still going on"
    );
    assert!(status.success(), "{status:?}");
}

/// Execs per second of [`PacedStorm`], from each of its two threads.
const PACED_PER_THREAD: u32 = 250;

/// Runs `path` from two threads, each at up to [`PACED_PER_THREAD`] a second, until stopped.
struct PacedStorm {
    stop: Arc<AtomicBool>,
    resumed: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(u64, Vec<u32>)>>,
}

impl PacedStorm {
    fn start(path: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let resumed = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|_| {
                let (stop, resumed, path) = (stop.clone(), resumed.clone(), path.to_owned());
                std::thread::spawn(move || {
                    let period = Duration::from_secs(1) / PACED_PER_THREAD;
                    let (mut made, mut after) = (0u64, Vec::new());
                    let mut due = Instant::now();
                    while !stop.load(Relaxed) {
                        let mut cmd = Command::new(&path);
                        cmd.stdin(Stdio::null())
                            .stdout(Stdio::null())
                            .stderr(Stdio::null());
                        let mut child = cmd.spawn().expect("spawn");
                        made += 1;
                        if resumed.load(Relaxed) {
                            after.push(child.id());
                        }
                        let _ = child.wait();
                        due += period;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    (made, after)
                })
            })
            .collect();
        Self {
            stop,
            resumed,
            threads,
        }
    }

    /// From now on, the pids started are remembered.
    fn mark_resumed(&self) {
        self.resumed.store(true, Relaxed);
    }

    /// Stops the storm: how many execs it made, and the pids started after the mark.
    fn stop(self) -> (u64, Vec<u32>) {
        self.stop.store(true, Relaxed);
        let mut made = 0;
        let mut after = Vec::new();
        for t in self.threads {
            let (m, a) = t.join().expect("storm thread");
            made += m;
            after.extend(a);
        }
        (made, after)
    }
}

/// Keeps a process stopped (SIGSTOP) until dropped, then continues it (SIGCONT), also when
/// the test fails in between.
struct Frozen(i32);

impl Frozen {
    fn new(pid: u32) -> Self {
        let pid = i32::try_from(pid).expect("pid fits");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// The state letter of /proc/PID/stat (`T` stopped, `Z` zombie, ...); `None` once reaped.
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// How long procwatch stays frozen in the middle of the storm.
const FROZEN: Duration = Duration::from_secs(10);

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn frozen_for_ten_seconds_mid_storm_it_counts_the_loss_and_alerts_again() {
    require_root!();
    let _alone = alone();
    // 64 KiB hold a few hundred exec records: ten frozen seconds of storm are many more, while
    // procwatch keeps up with the storm when it runs.
    let mut m = Monitor::start("ring_buffer_kib: 64\nsweep_interval: 1s\n", &[]);
    let dir = TempDir::new_in("/tmp", "overload-freeze");
    // In /tmp: every one of these processes is a tmp_exe alert, if its exec gets through.
    let exe = dir.copy_exe(Path::new("/bin/true"), "pw-freeze-payload");
    let storm = PacedStorm::start(&exe);
    std::thread::sleep(Duration::from_secs(2));
    {
        let _frozen = Frozen::new(m.pid());
        std::thread::sleep(FROZEN);
        assert_eq!(
            state_of(m.pid()),
            Some('T'),
            "procwatch was not stopped by SIGSTOP"
        );
    }
    storm.mark_resumed();
    std::thread::sleep(Duration::from_secs(3));
    let (made, started_after) = storm.stop();
    assert!(
        state_of(m.pid()).is_some_and(|s| !matches!(s, 'T' | 'Z' | 'X')),
        "procwatch did not come back from the freeze: state {:?}",
        state_of(m.pid())
    );

    // The loss counter is read every 500 ms and the warning comes with the next sweep.
    let warning = m.wait_log(Duration::from_secs(15), "events lost");
    assert!(warning.contains("ring_buffer_kib"), "{warning}");
    // Alerts resume: a fresh offender once the storm is over is alerted, with the loss on it.
    let fresh = dir.copy_exe(Path::new("/bin/true"), "pw-freeze-after");
    let mut child = Command::new(&fresh)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let fresh_pid = child.id();
    let _ = child.wait();
    let fresh_alert = m.expect_rule(fresh_pid, "tmp_exe");
    let fresh_lost = fresh_alert["sensor"]["events_lost"]
        .as_u64()
        .expect("sensor.events_lost");
    assert!(
        fresh_lost > 0,
        "the alert after the freeze hides the loss: {fresh_alert}"
    );

    let (status, summary, text) = m.stop();
    assert!(status.success(), "SIGTERM after the freeze: {status:?}");
    let summary = summary.expect("a summary on SIGTERM");
    let lost_exec = summary["sensor"]["kernel_lost"]["exec"]
        .as_u64()
        .expect("kernel_lost.exec");
    let total = summary["sensor"]["lost_total"]
        .as_u64()
        .expect("lost_total");
    let exe_name = exe.to_str().expect("utf-8");
    let alerts: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|a| a["exe"] == exe_name || a["trigger"]["filename"] == exe_name)
        .collect();
    eprintln!(
        "freeze: {made} execs ({} after it), {} alerted, {lost_exec} exec events lost \
         ({total} events in all), the fresh alert shows {fresh_lost} lost",
        started_after.len(),
        alerts.len()
    );
    assert_every_exec_accounted(made, alerts.len() as u64, lost_exec, "alerted");
    // Not only the backlog: processes the storm started after the freeze were alerted too.
    let resumed = alerts
        .iter()
        .filter(|a| {
            a["pid"]
                .as_u64()
                .is_some_and(|p| started_after.iter().any(|s| u64::from(*s) == p))
        })
        .count();
    assert!(
        resumed > 0,
        "none of the {} execs after the freeze was alerted ({} alerts in all)",
        started_after.len(),
        alerts.len()
    );
    assert!(
        fresh_lost <= total,
        "an alert shows {fresh_lost} lost, the summary {total}"
    );
}
