//! `cargo xtask soak [--minutes N]` (issue 9): `procwatch monitor` (release build) under N
//! minutes of mixed load, with alerts going to a JSONL file and to a real rsyslogd. Samples
//! its RSS, open descriptors and CPU every 10 s and writes docs/SOAK.md with one row per
//! minute and a verdict computed from the numbers; fails unless the run stayed flat.
//!
//! Never kills anything it did not start, and never runs procwatch with a kill option.
mod load;
mod report;
mod rsyslog;
mod sample;
mod verdict;

use std::{
    fs, thread,
    time::{Duration, Instant},
};

use crate::{
    bench::{self, Env, check_interrupted, json::Json, measure, monitors},
    sh::{self, Result},
};
use load::{Counts, Listener, Load};
use sample::{AlertCount, OurExes, Sample, Tail};

/// Command-line options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub minutes: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { minutes: 30 }
    }
}

impl Options {
    pub fn parse(flags: &[String]) -> std::result::Result<Options, String> {
        let mut o = Options::default();
        let mut it = flags.iter();
        while let Some(flag) = it.next() {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (flag.as_str(), None),
            };
            match name {
                "--minutes" => {
                    let v = inline
                        .or_else(|| it.next().cloned())
                        .ok_or("--minutes needs a value")?;
                    o.minutes = v
                        .parse()
                        .ok()
                        .filter(|n| (2..=1440).contains(n))
                        .ok_or_else(|| {
                            format!("--minutes takes a whole number from 2 to 1440, not {v:?}")
                        })?;
                }
                other => return Err(format!("unknown option for soak: {other}")),
            }
        }
        Ok(o)
    }
}

/// Seconds between samples.
const EVERY: f64 = 10.0;

/// A sample is taken up to this many seconds before it is due, at a different point each
/// time: a fixed 10 s beat would keep landing on the same phase of procwatch's 5 s sweep
/// (which opens /proc files and allocates while it runs), and a slow drift of that phase
/// would then pass for a trend.
const JITTER: f64 = 4.0;

/// Readings of the descriptor count per sample, [`FD_GAP`] apart; the fewest is the sample's
/// count (a descriptor open for a moment is not one that stays).
const FD_READINGS: u32 = 5;
const FD_GAP: Duration = Duration::from_millis(100);

/// Uniform numbers in [0, 1) from xorshift64: enough to spread sample times.
struct Spread(u64);

impl Spread {
    fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `cargo xtask soak ...`.
pub fn command(o: &Options) -> Result<u8> {
    if !sh::is_root() {
        return Err(
            "cargo xtask soak must run as root: procwatch loads BPF programs and the soak \
             reads its /proc. Run it as root, e.g. `sudo -E env \"PATH=$PATH\" cargo xtask \
             soak --minutes 5`."
                .into(),
        );
    }
    let started = Instant::now();
    let release = bench::build_release()?;
    bench::catch_ctrl_c();
    let env = Env::new(&release, "soak", false)?;
    let tck = measure::clock_ticks_per_sec();
    let warmup = verdict::warmup_minutes(o.minutes);
    eprintln!(
        "soak: {} minutes of mixed load; judged from minute {warmup} on",
        o.minutes
    );

    let mut rs = rsyslog::Rsyslog::start(&env.scratch.join("rsyslog"))?;
    let listener = Listener::start()?;
    let allowed = load::free_port()?;
    let config = env.scratch.join("soak.yaml");
    // Built-in defaults, plus the connect generator's port among the expected ones.
    fs::write(&config, format!("ports: \"53,80,443,{allowed}\"\n"))
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let payload_dir = env.scratch_dir("payload")?;
    let payload = payload_dir.path().join("soak-payload");
    crate::sh::install_exe(std::path::Path::new("/bin/true"), &payload)?;
    let ours = OurExes {
        payload: payload.display().to_string(),
        worker: env.worker.display().to_string(),
    };

    let dir = env.scratch_dir("procwatch")?;
    let syslog_url = format!("tcp://127.0.0.1:{}", rs.port);
    let mut running = monitors::start_procwatch(
        &env,
        dir.path(),
        &config,
        &["--syslog".into(), syslog_url.clone()],
    )?;
    let pid = running.pid().ok_or("procwatch has no pid")?;
    eprintln!("soak: procwatch monitor (pid {pid}) alerts to JSONL and {syslog_url}");

    let secs = f64::from(o.minutes) * 60.0;
    let load = Load::start(&env, &payload, &load::RATES, secs, allowed, listener)?;
    let mut reader = Reader {
        pid,
        ours,
        t0: Instant::now(),
        jsonl: Tail::new(running.out()),
        syslog: Tail::new(&rs.out),
        alerts: AlertCount::default(),
        received: AlertCount::default(),
        log_seen: 0,
        lost: 0,
    };
    let mut samples = Vec::new();
    let mut load = Some(load);
    let outcome = sample_until(
        secs,
        &mut samples,
        &mut reader,
        &mut running,
        &mut rs,
        load.as_mut(),
        tck,
    );
    let made = match (load.take(), &outcome) {
        (Some(l), Ok(())) => l.finish(Duration::from_secs(60)),
        _ => Ok(Vec::new()),
    };
    let outcome = outcome.and(made.as_ref().map(|_| ()).map_err(Clone::clone));
    check_interrupted()?;

    let end = if outcome.is_ok() {
        stop(running, pid, &mut reader)
    } else {
        End::default()
    };

    let per_minute = verdict::minutes(&samples, tck);
    let trends = verdict::trends(&samples, f64::from(warmup) * 60.0, tck);
    let mut checks = verdict::flatness(&trends, &verdict::LIMITS, f64::from(warmup));
    checks.push(verdict::alerts_flowed(&per_minute));
    let run_error = outcome.err().or(end.error);
    checks.extend(ending_checks(
        &reader,
        end.summary.as_ref(),
        end.exit,
        run_error.as_deref(),
    ));
    let made = made.unwrap_or_default();
    let mut ending = ending_figures(&reader, end.summary.as_ref());
    ending.push((
        "procwatch's descriptors before the stop".into(),
        end.fds
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    let mut notes = vec![
        "Numbers from a shared or busy machine are noisy (other processes' events land on \
         procwatch's CPU): re-run on a quiet machine before drawing conclusions."
            .to_owned(),
    ];
    if samples.len() < 2 {
        notes.push("The run ended before two samples were taken.".into());
    }
    let header = bench::machine_header(format!(
        "{} minutes of mixed load (`cargo xtask soak --minutes {}`); took {:.0} min in all",
        o.minutes,
        o.minutes,
        started.elapsed().as_secs_f64() / 60.0
    ));
    let doc = report::document(&report::Doc {
        header: &header,
        minutes_planned: o.minutes,
        warmup,
        rates: &load::RATES,
        made: &made,
        checks: &checks,
        per_minute: &per_minute,
        ending: &ending,
        notes: &notes,
        stuck: end.stuck.as_deref(),
        activity: verdict::other_activity(&per_minute, warmup).as_deref(),
    });
    let path = sh::workspace_root().join("docs/SOAK.md");
    fs::write(&path, &doc).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    print!("{doc}");
    eprintln!("\nsoak: wrote {}", path.display());
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| format!("{}: {}", c.what, c.measured))
        .collect();
    if failed.is_empty() {
        eprintln!("soak: FLAT");
        Ok(0)
    } else {
        Err(format!("not flat: {}", failed.join("; ")))
    }
}

/// Reads what the soak follows: procwatch's /proc entries, its log, its alerts.
struct Reader {
    pid: u32,
    ours: OurExes,
    t0: Instant,
    jsonl: Tail,
    syslog: Tail,
    alerts: AlertCount,
    received: AlertCount,
    log_seen: usize,
    lost: u64,
}

impl Reader {
    fn read_alerts(&mut self) {
        for line in self.jsonl.lines() {
            self.alerts.add(&line, &self.ours);
        }
        for line in self.syslog.lines() {
            if let Some(json) = sample::syslog_alert(&line) {
                self.received.add(json, &self.ours);
            }
        }
    }

    fn sample(&mut self, running: &monitors::Running, counts: Counts) -> Result<Sample> {
        let at = self.t0.elapsed().as_secs_f64();
        let pid = self.pid;
        let gone = |what: &str| format!("cannot read procwatch's {what} (pid {pid})");
        let rss_kib = measure::rss_kib(pid).ok_or_else(|| gone("VmRSS"))?;
        let cpu_ticks = measure::process_cpu_ticks(pid).ok_or_else(|| gone("CPU time"))?;
        let mut fds = sample::fd_count(pid).ok_or_else(|| gone("fds"))?;
        let mut fds_max = fds;
        for _ in 1..FD_READINGS {
            thread::sleep(FD_GAP);
            let n = sample::fd_count(pid).ok_or_else(|| gone("fds"))?;
            fds = fds.min(n);
            fds_max = fds_max.max(n);
        }
        let log = running.log_from(self.log_seen);
        self.log_seen += log.len();
        if let Some(n) = log.iter().filter_map(|l| sample::lost_total_in(l)).max() {
            self.lost = self.lost.max(n);
        }
        self.read_alerts();
        Ok(Sample {
            at,
            rss_kib,
            fds,
            fds_max,
            cpu_ticks,
            execs: counts.execs,
            connects: counts.connects,
            tasks: sample::machine_tasks().unwrap_or(0),
            alerts: self.alerts.alerts,
            ours: self.alerts.ours,
            syslog: self.received.alerts,
            lost: self.lost,
        })
    }
}

/// Samples every [`EVERY`] seconds from the start of the load until `secs`; fails when
/// procwatch, rsyslogd or a generator stops early.
fn sample_until(
    secs: f64,
    samples: &mut Vec<Sample>,
    reader: &mut Reader,
    running: &mut monitors::Running,
    rs: &mut rsyslog::Rsyslog,
    mut load: Option<&mut Load>,
    tck: f64,
) -> Result {
    let n = (secs / EVERY).round() as u32;
    let mut spread = Spread(u64::from(std::process::id()) << 20 | 0x9e37_79b9);
    for k in 0..=n {
        // Never after the generators' end: the last interval must hold its share of execs.
        let early = if k == 0 { 0.0 } else { JITTER * spread.next() };
        let due = reader.t0 + Duration::from_secs_f64(f64::from(k) * EVERY - early);
        while Instant::now() < due {
            check_interrupted()?;
            thread::sleep(Duration::from_millis(100).min(due - Instant::now()));
        }
        running.check_alive()?;
        rs.check_alive()?;
        let counts = match load.as_deref_mut() {
            Some(l) => {
                // At the very end the generators are allowed to have finished.
                if k < n {
                    l.check_alive()?;
                }
                l.counts()
            }
            None => Counts::default(),
        };
        samples.push(reader.sample(running, counts)?);
        if k > 0
            && k.is_multiple_of(6)
            && let Some(m) = verdict::minutes(samples, tck).last()
        {
            eprintln!(
                "soak: minute {}: {:.0} execs/s, {} alerts, RSS {:.2} MiB, {}–{} fds, \
                     CPU {:.1} %, {} µs/exec, {} lost",
                m.minute,
                m.execs_per_s,
                m.alerts,
                m.rss_mib,
                m.fds_min,
                m.fds_max,
                m.cpu_pct,
                bench::report::num(m.us_per_exec, 1),
                m.lost
            );
        }
    }
    Ok(())
}

/// How procwatch ended.
#[derive(Default)]
struct End {
    summary: Option<Json>,
    exit: Option<std::process::ExitStatus>,
    /// Why it did not stop as asked.
    error: Option<String>,
    /// Where it was stuck, if it did not stop.
    stuck: Option<String>,
    /// Its descriptors by kind, just before the stop.
    fds: Vec<(String, u64)>,
}

/// Stops procwatch with SIGTERM once it has worked off the load, then reads the last alerts
/// from both outputs (waiting a little for rsyslogd to write out what procwatch sent).
fn stop(running: monitors::Running, pid: u32, reader: &mut Reader) -> End {
    eprintln!("soak: stopping procwatch (SIGTERM)");
    running.settle(Duration::from_secs(10));
    let mut end = End {
        fds: sample::fd_kinds(pid),
        stuck: stop_or_describe(pid, &running),
        ..End::default()
    };
    match running.stop_signalled() {
        Ok(stopped) => {
            end.summary = stopped.summary;
            end.exit = stopped.exit;
        }
        Err(e) => end.error = Some(e),
    }
    reader.read_alerts();
    let sent = end
        .summary
        .as_ref()
        .and_then(|s| sink_count(Some(s), "syslog:", "written"))
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while reader.received.alerts + reader.received.malformed < sent && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
        reader.read_alerts();
    }
    end
}

/// How long procwatch may take to stop on SIGTERM before the soak looks at where it is stuck.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Sends SIGTERM to procwatch (our child) and waits [`STOP_GRACE`] for it to exit; when it
/// has not, says where each of its threads is (state, wait channel, system call, kernel
/// stack) and what it logged last, for the report.
fn stop_or_describe(pid: u32, running: &monitors::Running) -> Option<String> {
    let raw = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: signalling our own child, not reaped yet (the Running guard holds it).
    unsafe { libc::kill(raw, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        // Exited (a zombie until the guard reaps it) or gone.
        if !matches!(process_state(pid), Some(c) if c != 'Z' && c != 'X') {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let mut out = format!(
        "procwatch (pid {pid}) was still running {} s after SIGTERM.\n",
        STOP_GRACE.as_secs()
    );
    let mut tasks: Vec<_> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    tasks.sort();
    for task in tasks {
        let read = |f: &str| {
            fs::read_to_string(task.join(f))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|e| format!("({e})"))
        };
        let stat = read("stat");
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        out += &format!(
            "\nthread {} ({}): state {state}, wchan {}, syscall {}\n{}\n",
            task.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            read("comm"),
            read("wchan"),
            read("syscall"),
            read("stack")
        );
    }
    let log = running.log_from(0);
    out += "\nits last log lines:\n";
    for line in &log[log.len().saturating_sub(10)..] {
        out += line;
        out.push('\n');
    }
    Some(out)
}

/// The state letter of /proc/PID/stat; `None` once the process is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The entry of the summary's `sinks` whose name starts with `prefix`.
fn sink<'a>(summary: &'a Json, prefix: &str) -> Option<&'a Json> {
    match summary.get("sinks")? {
        Json::Obj(members) => members
            .iter()
            .find(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn count(summary: Option<&Json>, path: &[&str]) -> Option<u64> {
    summary?.path(path)?.as_u64()
}

fn sink_count(summary: Option<&Json>, prefix: &str, key: &str) -> Option<u64> {
    sink(summary?, prefix)?.get(key)?.as_u64()
}

/// Checks of the run as a whole: procwatch lived and stopped cleanly, and both outputs hold
/// exactly the alerts it wrote, each complete.
fn ending_checks(
    r: &Reader,
    summary: Option<&Json>,
    exit: Option<std::process::ExitStatus>,
    error: Option<&str>,
) -> Vec<verdict::Check> {
    let written = count(summary, &["alerts_written"]);
    let alive = verdict::Check {
        what: "procwatch ran throughout, and exited 0 with a summary on SIGTERM".into(),
        measured: match (error, exit, summary) {
            (Some(e), _, _) => e.to_owned(),
            (None, Some(st), Some(_)) if st.success() => "yes".into(),
            (None, Some(st), _) => format!("exit {st}, summary {}", summary.is_some()),
            (None, None, _) => "no exit status".into(),
        },
        limit: String::new(),
        pass: error.is_none() && exit.is_some_and(|s| s.success()) && summary.is_some(),
    };
    let jsonl = verdict::Check {
        what: "JSONL: one complete alert per line, as many as written".into(),
        measured: format!(
            "{} alerts, {} malformed lines; procwatch wrote {}",
            r.alerts.alerts,
            r.alerts.malformed,
            bench::report::num(written.map(|w| w as f64), 0)
        ),
        limit: "0 malformed, all written".into(),
        pass: r.alerts.malformed == 0 && written == Some(r.alerts.alerts),
    };
    let sent = sink_count(summary, "syslog:", "written");
    let dropped = sink_count(summary, "syslog:", "dropped");
    let syslog = verdict::Check {
        what: "syslog: every alert reached rsyslogd complete".into(),
        measured: format!(
            "sent {}, dropped {}, received {} ({} malformed)",
            bench::report::num(sent.map(|w| w as f64), 0),
            bench::report::num(dropped.map(|w| w as f64), 0),
            r.received.alerts,
            r.received.malformed
        ),
        limit: "all sent, all received".into(),
        pass: sent.is_some()
            && sent == written
            && dropped == Some(0)
            && r.received.alerts == sent.unwrap_or(0)
            && r.received.malformed == 0,
    };
    vec![alive, jsonl, syslog]
}

/// procwatch's own account at the end, for the report.
fn ending_figures(r: &Reader, summary: Option<&Json>) -> Vec<(String, String)> {
    let n = |v: Option<u64>| v.map_or_else(|| "—".into(), |v| v.to_string());
    let Some(s) = summary else {
        return vec![(
            "summary".into(),
            "none (procwatch did not stop cleanly)".into(),
        )];
    };
    let kinds = |key: &str| match s.path(&["sensor", key]) {
        Some(Json::Obj(m)) => m
            .iter()
            .filter_map(|(k, v)| Some(format!("{k} {}", v.as_u64()?)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "—".into(),
    };
    vec![
        (
            "alerts written".into(),
            n(count(Some(s), &["alerts_written"])),
        ),
        (
            "events received".into(),
            format!(
                "{} ({})",
                n(count(Some(s), &["sensor", "received_total"])),
                kinds("received")
            ),
        ),
        (
            "events lost".into(),
            format!(
                "{} ({}); the last warning said {}",
                n(count(Some(s), &["sensor", "lost_total"])),
                kinds("kernel_lost"),
                r.lost
            ),
        ),
        (
            "malformed records".into(),
            n(count(Some(s), &["sensor", "malformed"])),
        ),
        (
            "JSONL sink written / dropped".into(),
            format!(
                "{} / {}",
                n(sink_count(Some(s), "jsonl:", "written")),
                n(sink_count(Some(s), "jsonl:", "dropped"))
            ),
        ),
        (
            "syslog sink written / dropped".into(),
            format!(
                "{} / {}",
                n(sink_count(Some(s), "syslog:", "written")),
                n(sink_count(Some(s), "syslog:", "dropped"))
            ),
        ),
        (
            "alerts in the JSONL file / at rsyslogd".into(),
            format!("{} / {}", r.alerts.alerts, r.received.alerts),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        assert_eq!(Options::parse(&[]), Ok(Options { minutes: 30 }));
        assert_eq!(
            Options::parse(&strings(&["--minutes", "5"])),
            Ok(Options { minutes: 5 })
        );
        assert_eq!(
            Options::parse(&strings(&["--minutes=45"])),
            Ok(Options { minutes: 45 })
        );
        for bad in [
            &["--minutes"][..],
            &["--minutes", "1"],
            &["--minutes", "x"],
            &["--minutes", "-3"],
            &["--quick"],
        ] {
            assert!(Options::parse(&strings(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sample_times_spread_over_the_jitter() {
        let mut s = Spread(12345);
        let v: Vec<f64> = (0..1000).map(|_| s.next()).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((0.45..0.55).contains(&mean), "{mean}");
        assert!(v.iter().any(|x| *x < 0.1) && v.iter().any(|x| *x > 0.9));
    }

    #[test]
    fn summary_sinks_by_prefix() {
        let s = Json::parse(
            r#"{"alerts_written":3,"sinks":{"jsonl:/x":{"written":3,"dropped":0},"syslog:tcp://127.0.0.1:9":{"written":2,"dropped":1}}}"#,
        )
        .expect("json");
        assert_eq!(sink_count(Some(&s), "syslog:", "dropped"), Some(1));
        assert_eq!(sink_count(Some(&s), "jsonl:", "written"), Some(3));
        assert_eq!(sink_count(Some(&s), "stdout", "written"), None);
        assert_eq!(count(Some(&s), &["alerts_written"]), Some(3));
    }
}
