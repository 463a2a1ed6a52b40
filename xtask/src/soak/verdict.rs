//! Whether a soak stayed flat, computed from its samples: per-minute figures, least-squares
//! trends over the window after the warm-up, and the checks the report prints.
use super::sample::{Kinds, Sample};

/// How much a trend may move over the window before the soak counts as not flat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// RSS growth, relative to the trend's value at the start of the window.
    pub rss_growth: f64,
    /// Open file descriptors gained over the window (trend).
    pub fd_growth: f64,
    /// CPU-per-exec growth, relative to the trend's value at the start of the window.
    pub cpu_growth: f64,
}

/// The limits of issue 9: RSS within 5 %, fds constant (the trend gains less than one
/// descriptor); CPU per exec within 20 %, wider than RSS because the machine's other activity
/// lands on procwatch's CPU too and utime+stime come in 10 ms ticks.
pub const LIMITS: Limits = Limits {
    rss_growth: 0.05,
    fd_growth: 1.0,
    cpu_growth: 0.20,
};

/// A least-squares line `y = slope × x + intercept`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub slope: f64,
    pub intercept: f64,
}

impl Line {
    pub fn at(&self, x: f64) -> f64 {
        self.slope * x + self.intercept
    }
}

/// The least-squares line through `points`; `None` for fewer than two distinct x values.
pub fn fit(points: &[(f64, f64)]) -> Option<Line> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 || !sxx.is_finite() || !sxy.is_finite() {
        return None;
    }
    let slope = sxy / sxx;
    Some(Line {
        slope,
        intercept: my - slope * mx,
    })
}

/// A trend over a window: the fitted values at its start and end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    pub from: f64,
    pub to: f64,
    /// Seconds (since the load started) the window spans.
    pub start: f64,
    pub end: f64,
}

impl Trend {
    fn over(points: &[(f64, f64)]) -> Option<Trend> {
        let line = fit(points)?;
        let start = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let end = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        Some(Trend {
            from: line.at(start),
            to: line.at(end),
            start,
            end,
        })
    }

    pub fn growth(&self) -> f64 {
        self.to - self.from
    }

    /// Growth relative to the start; `None` when the start is not positive.
    pub fn relative(&self) -> Option<f64> {
        (self.from > 0.0).then(|| self.growth() / self.from)
    }
}

/// One interval between consecutive samples: procwatch's CPU per exec the generators made.
fn cpu_per_exec_points(samples: &[Sample], tck: f64) -> Vec<(f64, f64)> {
    samples
        .windows(2)
        .filter_map(|w| {
            let execs = w[1].execs.checked_sub(w[0].execs)?;
            let ticks = w[1].cpu_ticks.checked_sub(w[0].cpu_ticks)?;
            (execs > 0).then(|| {
                (
                    (w[0].at + w[1].at) / 2.0,
                    ticks as f64 / tck * 1e6 / execs as f64,
                )
            })
        })
        .collect()
}

/// The samples from `warmup` seconds on (and the one just before, as the first interval's
/// start).
fn window(samples: &[Sample], warmup: f64) -> &[Sample] {
    let first = samples
        .iter()
        .position(|s| s.at >= warmup)
        .unwrap_or(samples.len());
    &samples[first.saturating_sub(1).min(samples.len())..]
}

/// The trends the verdict rests on, over the window after `warmup` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trends {
    /// VmRSS, KiB.
    pub rss_kib: Option<Trend>,
    pub fds: Option<Trend>,
    /// procwatch CPU µs per exec of the generators.
    pub cpu_us_per_exec: Option<Trend>,
}

pub fn trends(samples: &[Sample], warmup: f64, tck: f64) -> Trends {
    let w = window(samples, warmup);
    // The sample before the window only opens the first CPU interval.
    let inside: Vec<&Sample> = w.iter().filter(|s| s.at >= warmup).collect();
    let series = |f: fn(&Sample) -> u64| -> Vec<(f64, f64)> {
        inside.iter().map(|s| (s.at, f(s) as f64)).collect()
    };
    Trends {
        rss_kib: Trend::over(&series(|s| s.rss_kib)),
        fds: Trend::over(&series(|s| s.fds)),
        cpu_us_per_exec: Trend::over(&cpu_per_exec_points(w, tck)),
    }
}

/// One minute of the run, from the last sample of the minute before to its own last sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Minute {
    /// 1 for the first minute.
    pub minute: u32,
    pub execs_per_s: f64,
    pub connects_per_s: f64,
    /// Tasks created on the whole machine (threads included) per second.
    pub tasks_per_s: f64,
    pub alerts: u64,
    /// Alerts on the generators' own offending processes.
    pub ours: Kinds,
    pub syslog: u64,
    pub rss_mib: f64,
    pub fds_min: u64,
    pub fds_max: u64,
    /// procwatch CPU, % of one CPU.
    pub cpu_pct: f64,
    pub us_per_exec: Option<f64>,
    /// Events reported lost since the start, at the end of the minute.
    pub lost: u64,
}

/// How late a sample may be taken and still count for the time it was due.
const LATE: f64 = 5.0;

/// The minute a sample taken at `at` seconds belongs to: minute 1 holds those due after 0 s
/// up to 60 s, and a sample due at 60 s but taken a little late still counts for minute 1.
fn minute_of(at: f64) -> u32 {
    ((at - LATE) / 60.0).ceil().max(0.0) as u32
}

/// Per-minute figures; `samples[0]` is taken when the load starts.
pub fn minutes(samples: &[Sample], tck: f64) -> Vec<Minute> {
    let Some(first) = samples.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut prev = first;
    let mut minute = 1u32;
    loop {
        let these: Vec<&Sample> = samples
            .iter()
            .filter(|s| minute_of(s.at) == minute)
            .collect();
        let Some(last) = these.last() else { break };
        let secs = last.at - prev.at;
        let per_s = |a: u64, b: u64| {
            if secs > 0.0 {
                b.saturating_sub(a) as f64 / secs
            } else {
                0.0
            }
        };
        let execs = last.execs.saturating_sub(prev.execs);
        let cpu_s = last.cpu_ticks.saturating_sub(prev.cpu_ticks) as f64 / tck;
        out.push(Minute {
            minute,
            execs_per_s: per_s(prev.execs, last.execs),
            connects_per_s: per_s(prev.connects, last.connects),
            tasks_per_s: per_s(prev.tasks, last.tasks),
            alerts: last.alerts.saturating_sub(prev.alerts),
            ours: last.ours.minus(&prev.ours),
            syslog: last.syslog.saturating_sub(prev.syslog),
            rss_mib: last.rss_kib as f64 / 1024.0,
            fds_min: these.iter().map(|s| s.fds).min().unwrap_or(0),
            fds_max: these
                .iter()
                .map(|s| s.fds_max.max(s.fds))
                .max()
                .unwrap_or(0),
            cpu_pct: if secs > 0.0 {
                100.0 * cpu_s / secs
            } else {
                0.0
            },
            us_per_exec: (execs > 0).then(|| cpu_s * 1e6 / execs as f64),
            lost: last.lost,
        });
        prev = last;
        minute += 1;
    }
    out
}

/// One line of the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub what: String,
    pub measured: String,
    pub limit: String,
    pub pass: bool,
}

/// The flatness checks over the window after `warmup` seconds.
pub fn flatness(t: &Trends, limits: &Limits, warmup_min: f64) -> Vec<Check> {
    let window = |tr: &Trend| {
        format!(
            "minute {:.0} → {:.0}",
            (tr.start / 60.0).max(warmup_min),
            tr.end / 60.0
        )
    };
    let missing = |what: &str| Check {
        what: what.into(),
        measured: "not enough samples after the warm-up".into(),
        limit: String::new(),
        pass: false,
    };
    let mut out = Vec::new();
    out.push(match &t.rss_kib {
        Some(tr) => Check {
            what: format!("RSS trend, {}", window(tr)),
            measured: format!(
                "{:.2} → {:.2} MiB ({:+.2} %)",
                tr.from / 1024.0,
                tr.to / 1024.0,
                tr.relative().unwrap_or(f64::NAN) * 100.0
            ),
            limit: format!("< {:.0} % growth", limits.rss_growth * 100.0),
            pass: tr.relative().is_some_and(|g| g < limits.rss_growth),
        },
        None => missing("RSS trend"),
    });
    out.push(match &t.fds {
        Some(tr) => Check {
            what: format!("open fds trend, {}", window(tr)),
            measured: format!("{:.2} → {:.2} ({:+.2})", tr.from, tr.to, tr.growth()),
            limit: format!("< {:.0} fd gained", limits.fd_growth),
            pass: tr.growth() < limits.fd_growth,
        },
        None => missing("open fds trend"),
    });
    out.push(match &t.cpu_us_per_exec {
        Some(tr) => Check {
            what: format!("CPU per exec trend, {}", window(tr)),
            measured: format!(
                "{:.1} → {:.1} µs ({:+.1} %)",
                tr.from,
                tr.to,
                tr.relative().unwrap_or(f64::NAN) * 100.0
            ),
            limit: format!("< {:.0} % growth", limits.cpu_growth * 100.0),
            pass: tr.relative().is_some_and(|g| g < limits.cpu_growth),
        },
        None => missing("CPU per exec trend"),
    });
    out
}

/// Whether alerts of each kind the load provokes came in every minute.
pub fn alerts_flowed(minutes: &[Minute]) -> Check {
    let quiet: Vec<String> = minutes
        .iter()
        .filter(|m| m.ours.tmp_exe == 0 || m.ours.wx_mem == 0 || m.ours.suspicious_port == 0)
        .map(|m| m.minute.to_string())
        .collect();
    let least = |f: fn(&Kinds) -> u64| minutes.iter().map(|m| f(&m.ours)).min().unwrap_or(0);
    Check {
        what: "alerts kept coming (tmp_exe, wx_mem, suspicious_port of the load)".into(),
        measured: if minutes.is_empty() {
            "no minute measured".into()
        } else if quiet.is_empty() {
            format!(
                "every minute; fewest in a minute: {} / {} / {}",
                least(|k| k.tmp_exe),
                least(|k| k.wx_mem),
                least(|k| k.suspicious_port)
            )
        } else {
            format!("a kind missing in minute {}", quiet.join(", "))
        },
        limit: "each kind every minute".into(),
        pass: !minutes.is_empty() && quiet.is_empty(),
    }
}

impl Minute {
    /// Alerts on processes that are not the load's.
    pub fn other_alerts(&self) -> u64 {
        self.alerts
            .saturating_sub(self.ours.tmp_exe + self.ours.wx_mem + self.ours.suspicious_port)
    }
}

/// What else ran on the machine in the judged minutes (after `warmup`): procwatch works for
/// every process, so this activity is in its CPU and memory too.
pub fn other_activity(minutes: &[Minute], warmup: u32) -> Option<String> {
    let judged: Vec<&Minute> = minutes.iter().filter(|m| m.minute > warmup).collect();
    let range = |v: Vec<f64>| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    if judged.is_empty() {
        return None;
    }
    let (a_lo, a_hi) = range(judged.iter().map(|m| m.other_alerts() as f64).collect());
    let (t_lo, t_hi) = range(
        judged
            .iter()
            .map(|m| (m.tasks_per_s - m.execs_per_s).max(0.0))
            .collect(),
    );
    Some(format!(
        "Other activity on the machine in the judged minutes (not the soak's, but procwatch \
         handles it too): {a_lo:.0}–{a_hi:.0} alerts a minute on other processes, \
         {t_lo:.0}–{t_hi:.0} other tasks created a second (threads included). When it changes \
         a lot, so do procwatch's CPU per exec and RSS."
    ))
}

/// The minutes of warm-up before the window that is judged: a sixth of the run, at least one
/// minute and at most five (issue 9: "from the 5th to the 30th minute").
pub fn warmup_minutes(minutes: u32) -> u32 {
    (minutes / 6).clamp(1, 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: f64, rss_kib: u64, fds: u64, cpu_ticks: u64, execs: u64) -> Sample {
        Sample {
            at,
            rss_kib,
            fds,
            cpu_ticks,
            execs,
            ..Sample::default()
        }
    }

    #[test]
    fn least_squares() {
        let l = fit(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).expect("fits");
        assert!((l.slope - 2.0).abs() < 1e-12 && (l.intercept - 1.0).abs() < 1e-12);
        let l = fit(&[(0.0, 1.0), (1.0, 2.0), (2.0, 1.0), (3.0, 2.0)]).expect("fits");
        assert!((l.slope - 0.2).abs() < 1e-12, "{l:?}");
        assert_eq!(fit(&[(1.0, 1.0)]), None);
        assert_eq!(fit(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    /// 30 minutes of samples every 10 s: RSS and fds from `f(t)`, 3,000 execs and 5 ticks
    /// (50 ms at 100 Hz, ~16.7 µs per exec) per interval unless `cpu` says otherwise.
    fn run(f: impl Fn(f64) -> (u64, u64), cpu: impl Fn(f64) -> u64) -> Vec<Sample> {
        let mut ticks = 0;
        (0..=180)
            .map(|i| {
                let at = f64::from(i) * 10.0;
                let (rss, fds) = f(at);
                if i > 0 {
                    ticks += cpu(at);
                }
                sample(at, rss, fds, ticks, 3000 * i as u64)
            })
            .collect()
    }

    #[test]
    fn a_flat_run_passes_and_a_leak_fails() {
        // Start-up growth in the first minutes is not judged; a one-off fd spike is tolerated.
        let flat = run(
            |t| {
                let rss = if t < 120.0 {
                    10_000 + t as u64 * 50
                } else {
                    16_000
                };
                let fds = if t == 900.0 { 19 } else { 17 };
                (rss + (t as u64 / 10) % 3 * 40, fds)
            },
            |t| 5 + u64::from((t as u64 / 10).is_multiple_of(4)),
        );
        let t = trends(&flat, 300.0, 100.0);
        let checks = flatness(&t, &LIMITS, 5.0);
        assert!(checks.iter().all(|c| c.pass), "{checks:#?}");
        assert!(checks[0].what.contains("minute 5 → 30"), "{checks:#?}");

        // 1 KiB per second: 25 MiB over the window, far over 5 %.
        let rss_leak = run(|t| (16_000 + t as u64, 17), |_| 5);
        let c = flatness(&trends(&rss_leak, 300.0, 100.0), &LIMITS, 5.0);
        assert!(!c[0].pass && c[1].pass && c[2].pass, "{c:#?}");

        // One descriptor every five minutes.
        let fd_leak = run(|t| (16_000, 17 + t as u64 / 300), |_| 5);
        let c = flatness(&trends(&fd_leak, 300.0, 100.0), &LIMITS, 5.0);
        assert!(c[0].pass && !c[1].pass && c[2].pass, "{c:#?}");

        // Work per exec that grows with time (a table that is never trimmed).
        let slower = run(|_| (16_000, 17), |t| 5 + (t / 300.0) as u64);
        let c = flatness(&trends(&slower, 300.0, 100.0), &LIMITS, 5.0);
        assert!(c[0].pass && c[1].pass && !c[2].pass, "{c:#?}");
    }

    #[test]
    fn too_few_samples_is_not_a_pass() {
        let short = run(|_| (16_000, 17), |_| 5);
        let t = trends(&short[..20], 300.0, 100.0);
        let c = flatness(&t, &LIMITS, 5.0);
        assert!(c.iter().all(|c| !c.pass), "{c:#?}");
    }

    #[test]
    fn minutes_from_samples() {
        let mut samples = run(|t| (16_000 + t as u64, 17 + u64::from(t == 70.0)), |_| 6);
        for (i, s) in samples.iter_mut().enumerate() {
            s.alerts = 6 * i as u64;
            s.ours = Kinds {
                tmp_exe: 4 * i as u64,
                wx_mem: i as u64,
                suspicious_port: i as u64,
            };
            s.lost = u64::from(i > 9) * 7;
        }
        let m = minutes(&samples[..14], 100.0);
        assert_eq!(m.len(), 3, "{m:#?}");
        assert_eq!(m[0].minute, 1);
        assert!((m[0].execs_per_s - 300.0).abs() < 1e-9);
        assert_eq!(m[0].alerts, 36);
        assert_eq!(m[1].ours.tmp_exe, 24);
        assert_eq!((m[1].fds_min, m[1].fds_max), (17, 18));
        // 36 ticks in 60 s: 0.36 s of CPU, 0.6 % of a CPU; 18,000 execs.
        assert!((m[0].cpu_pct - 0.6).abs() < 1e-9, "{}", m[0].cpu_pct);
        assert!((m[0].us_per_exec.expect("execs") - 20.0).abs() < 1e-9);
        assert_eq!((m[0].lost, m[1].lost), (0, 7));
        // The third minute has only its first sample so far.
        assert!((m[2].execs_per_s - 300.0).abs() < 1e-9);
        assert!(alerts_flowed(&m).pass);
        let mut quiet = m.clone();
        quiet[1].ours.wx_mem = 0;
        let c = alerts_flowed(&quiet);
        assert!(!c.pass && c.measured.contains("minute 2"), "{c:?}");
        assert!(!alerts_flowed(&[]).pass);
        assert_eq!(m[0].other_alerts(), 0);
        let mut busy = m.clone();
        busy[1].alerts += 40;
        busy[1].tasks_per_s = busy[1].execs_per_s + 25.0;
        assert_eq!(busy[1].other_alerts(), 40);
        let note = other_activity(&busy, 1).expect("judged minutes");
        assert!(
            note.contains("0–40 alerts") && note.contains("0–25 other tasks"),
            "{note}"
        );
        assert_eq!(other_activity(&busy, 5), None);
    }

    #[test]
    fn late_samples_count_for_the_minute_they_were_due() {
        assert_eq!(minute_of(0.0), 0);
        assert_eq!(minute_of(0.3), 0);
        assert_eq!(minute_of(10.0), 1);
        assert_eq!(minute_of(60.0), 1);
        assert_eq!(minute_of(61.5), 1);
        assert_eq!(minute_of(70.2), 2);
        let samples: Vec<Sample> = (0..=12)
            .map(|i| sample(f64::from(i) * 10.0 + 0.4, 0, 0, 0, 0))
            .collect();
        assert_eq!(minutes(&samples, 100.0).len(), 2);
    }

    #[test]
    fn warmup() {
        assert_eq!(warmup_minutes(30), 5);
        assert_eq!(warmup_minutes(60), 5);
        assert_eq!(warmup_minutes(12), 2);
        assert_eq!(warmup_minutes(5), 1);
        assert_eq!(warmup_minutes(2), 1);
    }
}
