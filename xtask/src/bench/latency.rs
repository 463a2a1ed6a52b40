//! Workload 4: from the exec of a /tmp binary to its alert line in procwatch's JSONL file.
use std::{
    ffi::CString,
    fs::File,
    io::Read,
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    Env, Plan, check_interrupted,
    measure::{self, Series},
    monitors::{self, Monitor},
    report::{self, Findings, Section, Table},
};
use crate::sh::Result;

const HOW: &str = "procwatch monitor runs with the default configuration; a copy of \
`/bin/true` sits in a fresh directory under /tmp (the `tmp_exe` rule alerts on it). The bench \
starts it, one at a time, and waits for the alert line whose top-level `pid` is the child's to \
appear in the JSONL file, woken by inotify (no busy polling on 2 CPUs). Latency runs from just \
before the spawn to the moment the line is read. p50 and p99 are medians over the rounds, max \
is the largest seen; an alert not seen within 2 s counts as missed, and as 2,000 ms in the \
percentiles. Peers are not measured: \
auditd and bpftrace record events rather than alerts, and bpftrace block-buffers its output \
file.";

/// No alert within this long is a miss.
const TIMEOUT: Duration = Duration::from_secs(2);

pub fn run(env: &Env, plan: &Plan, findings: &mut Findings) -> Result<Section> {
    let mut section = Section::new(
        4,
        &format!("Alert latency ({} execs per round)", plan.latency_samples),
        HOW,
    );
    let mut series = Series::new();
    for round in 1..=plan.runs {
        check_interrupted()?;
        eprintln!("bench: alert latency, round {round}/{}", plan.runs);
        let r = one_round(env, plan.latency_samples);
        match &r {
            Ok(s) => eprintln!(
                "bench:   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, missed {}",
                s["p50_ms"], s["p99_ms"], s["max_ms"], s["missed"]
            ),
            Err(e) => eprintln!("bench:   FAILED: {e}"),
        }
        series.runs.push(r);
    }
    let mut table = Table::new(&["monitor", "execs", "p50 ms", "p99 ms", "max ms", "missed"]);
    let (failed, first) = series.failures();
    if failed == series.runs.len() {
        table.row(vec![
            Monitor::Procwatch.label().into(),
            format!("failed: {}", first.unwrap_or("")),
        ]);
    } else {
        table.row(vec![
            Monitor::Procwatch.label().into(),
            report::num(series.median("samples"), 0),
            report::num(series.median("p50_ms"), 2),
            report::num(series.median("p99_ms"), 2),
            report::num(series.max("max_ms"), 2),
            report::num(series.max("missed"), 0),
        ]);
        if failed > 0 {
            section.notes.push(format!(
                "{failed} of {} rounds failed: {}",
                series.runs.len(),
                first.unwrap_or("")
            ));
        }
        findings.latency_p99_ms = series.median("p99_ms");
    }
    table.row(vec![
        "auditd, bpftrace".into(),
        "not measured (no alerts)".into(),
    ]);
    section.tables.push((String::new(), table));
    Ok(section)
}

fn one_round(env: &Env, samples: usize) -> Result<measure::Sample> {
    let dir = env.scratch_dir("latency")?;
    let bin = dir.path().join("dropped");
    crate::sh::install_exe(std::path::Path::new("/bin/true"), &bin)?;
    let running = monitors::start(env, Monitor::Procwatch, dir.path())?;
    let mut tail = Tail::open(running.out())?;
    let mut latencies = Vec::with_capacity(samples);
    let mut missed = 0usize;
    let mut missed_in_a_row = 0usize;
    for _ in 0..samples {
        check_interrupted()?;
        let t0 = Instant::now();
        let mut child = Command::new(&bin)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let needle = format!("\"pid\":{},\"ppid\":", child.id());
        let _ = child.wait();
        if tail.wait_for(&needle, t0 + TIMEOUT)? {
            latencies.push(t0.elapsed().as_secs_f64() * 1e3);
            missed_in_a_row = 0;
        } else {
            // Counted at the timeout: a lower bound that keeps misses in the percentiles.
            latencies.push(TIMEOUT.as_secs_f64() * 1e3);
            missed += 1;
            missed_in_a_row += 1;
            if missed_in_a_row >= 10 {
                return Err(format!(
                    "10 execs in a row got no alert within {} s; is the tmp_exe rule on?",
                    TIMEOUT.as_secs()
                ));
            }
        }
    }
    running.stop()?;
    let mut s = measure::Sample::new();
    s.insert("samples", samples as f64);
    s.insert("missed", missed as f64);
    for (key, p) in [("p50_ms", 50.0), ("p99_ms", 99.0), ("max_ms", 100.0)] {
        s.insert(
            key,
            measure::percentile(&latencies, p).ok_or("no alert arrived at all")?,
        );
    }
    Ok(s)
}

/// Reads what is appended to a file, woken by inotify.
struct Tail {
    file: File,
    pending: Vec<u8>,
    inotify: std::os::fd::OwnedFd,
}

impl Tail {
    fn open(path: &Path) -> Result<Tail> {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: plain inotify_init1; the fd is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(format!(
                "inotify_init1: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let inotify = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("{} contains a NUL byte", path.display()))?;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd, cpath.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            return Err(format!(
                "inotify_add_watch {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        let mut t = Tail {
            file,
            pending: Vec::new(),
            inotify,
        };
        // Skip what is there already (the seed sweep's alerts).
        t.lines()?;
        Ok(t)
    }

    /// Complete lines appended since the last call.
    fn lines(&mut self) -> Result<Vec<String>> {
        let mut buf = Vec::new();
        self.file
            .read_to_end(&mut buf)
            .map_err(|e| format!("reading the alerts file: {e}"))?;
        self.pending.extend_from_slice(&buf);
        let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        let done: Vec<u8> = self.pending.drain(..=end).collect();
        Ok(String::from_utf8_lossy(&done)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Whether a line containing `needle` arrives before `deadline`.
    fn wait_for(&mut self, needle: &str, deadline: Instant) -> Result<bool> {
        loop {
            if self.lines()?.iter().any(|l| l.contains(needle)) {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let mut pfd = libc::pollfd {
                fd: self.inotify.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, ms) };
            let mut events = [0u8; 4096];
            // SAFETY: reading into a buffer of the given size; non-blocking fd.
            while unsafe { libc::read(pfd.fd, events.as_mut_ptr().cast(), events.len()) } > 0 {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn tail_sees_appended_lines() {
        let dir = std::env::temp_dir().join(format!("xtask-tail-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("a.jsonl");
        fs::write(&path, "{\"pid\":1,\"ppid\":0}\n").expect("write");
        let mut t = Tail::open(&path).expect("open");
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(
            !t.wait_for("\"pid\":1,", soon).expect("wait"),
            "old lines are skipped"
        );
        let p = path.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let mut f = fs::OpenOptions::new().append(true).open(&p).expect("open");
            std::io::Write::write_all(&mut f, b"{\"pid\":42,\"pp").expect("write");
            std::thread::sleep(Duration::from_millis(20));
            std::io::Write::write_all(&mut f, b"id\":1}\n").expect("write");
        });
        let later = Instant::now() + Duration::from_secs(5);
        assert!(t.wait_for("\"pid\":42,\"ppid\":", later).expect("wait"));
        writer.join().expect("join");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
