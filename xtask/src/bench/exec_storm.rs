//! Workload 1: /bin/true at 400 and 1,600 exec/s, then as fast as the machine can, under each
//! monitor; then procwatch's RSS over repeated storms.
use std::{collections::BTreeMap, time::Duration};

use super::{
    Env, Plan, check_interrupted,
    measure::{self, Series},
    monitors::{self, ExecFilter, Monitor},
    report::{self, Findings, Loss, Section, Table},
};
use crate::sh::Result;

const MONITORS: [Monitor; 5] = [
    Monitor::None,
    Monitor::Procwatch,
    Monitor::Events,
    Monitor::Auditd,
    Monitor::Bpftrace,
];

const HOW: &str = "The shape of Sysmon for Linux's perftest. A generator process (`xtask \
bench-worker exec`, release build) starts `/bin/true` with `posix_spawn` and an empty \
environment: at a fixed rate from one thread paced by the clock (children reaped as they \
exit), or as fast as possible from one spawn-and-wait thread per CPU. Runs of the monitors \
are interleaved round by round; each figure is the median over the rounds, and `× none` is \
the median of each round's ratio to that round's run without a monitor. *system busy %*: all \
CPUs (100 % = every CPU busy) from /proc/stat over the storm. *monitor CPU*: utime+stime of \
the monitor's processes (auditd: auditd plus the kauditd kernel thread) from the start of the \
storm until the monitor has worked off its backlog; `%` is of one CPU over the storm, `µs/exec` \
divides by the execs made; procwatch handles every event on the machine, so other processes' \
activity is included, most visibly at 400/s. Work the BPF programs do runs in the traced tasks and shows in \
*system busy %* and the exec rate, not in *monitor CPU*. *captured / made* and *lost* are from \
the round with the most loss: `procwatch monitor` counts every exec on the machine \
(`sensor.received.exec` of its SIGTERM summary, marked `*`) and *lost* is the kernel's \
ring-buffer drop count for exec events; `procwatch events` runs the same probes and writes \
every event, so the generator's execs are counted exactly (exec events of `/bin/true` whose \
`ppid` is the generator); auditd counts successful execve SYSCALL records of the bench key \
whose `ppid` is the generator, bpftrace its `exec` lines with that parent. For auditd every \
mprotect is audited too (audit cannot filter on W+X), which includes the dynamic loader's \
mprotect calls in each `/bin/true`.";

/// `xtask bench-worker exec` arguments for a rate (`None`: as fast as possible).
fn worker_args(plan: &Plan, rate: Option<f64>, secs: f64) -> Vec<String> {
    let mut a = vec!["exec".to_owned(), "--path".into(), "/bin/true".into()];
    match rate {
        Some(r) => a.extend(["--rate".into(), format!("{r}")]),
        None => a.extend(["--threads".into(), plan.threads.to_string()]),
    }
    a.extend(["--duration".into(), format!("{secs}")]);
    a
}

pub fn rate_label(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r >= 1000.0 => format!("{},{:03}/s", r as u64 / 1000, r as u64 % 1000),
        Some(r) => format!("{r:.0}/s"),
        None => "fastest".into(),
    }
}

/// Runs every monitor `plan.runs` times, interleaved by round.
pub fn rounds(
    plan: &Plan,
    monitors: &[Monitor],
    what: &str,
    mut one: impl FnMut(Monitor) -> Result<measure::Sample>,
) -> Result<BTreeMap<Monitor, Series>> {
    let mut series: BTreeMap<Monitor, Series> =
        monitors.iter().map(|m| (*m, Series::new())).collect();
    for round in 1..=plan.runs {
        for m in monitors {
            eprintln!("bench: {what}, round {round}/{}: {}", plan.runs, m.label());
            let sample = one(*m);
            match &sample {
                Ok(s) => eprintln!("bench:   {}", brief(s)),
                Err(e) => eprintln!("bench:   FAILED: {e}"),
            }
            check_interrupted()?;
            if let Some(s) = series.get_mut(m) {
                s.runs.push(sample);
            }
        }
    }
    Ok(series)
}

fn brief(s: &measure::Sample) -> String {
    s.iter()
        .map(|(k, v)| format!("{k}={v:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The row cells of a storm (exec or connect) for one monitor, after `lead` cells.
pub fn storm_row(lead: &[String], m: Monitor, s: &Series, none: &Series) -> Vec<String> {
    let mut row: Vec<String> = lead.to_vec();
    row.push(m.label().into());
    let (failed, first) = s.failures();
    if failed == s.runs.len() {
        row.push(format!(
            "failed: {}",
            first
                .unwrap_or("no runs")
                .chars()
                .take(160)
                .collect::<String>()
        ));
        return row;
    }
    row.push(report::num(s.median("per_s"), 0));
    row.push(if m == Monitor::None {
        "—".into()
    } else {
        report::ratio(s.ratio(none, "per_s"))
    });
    row.push(report::num(s.median("busy_pct"), 1));
    row.push(report::num(s.median("mon_cpu_pct"), 1));
    row.push(report::num(s.median("mon_us_per_op"), 1));
    row.push(report::num(s.median("rss_mib"), 1));
    match s.worst("loss") {
        Some(w) => {
            let star = if w.get("exact") == Some(&0.0) {
                "*"
            } else {
                ""
            };
            row.push(format!(
                "{:.0}{star} / {:.0}",
                w.get("captured").copied().unwrap_or(0.0),
                w.get("made").copied().unwrap_or(0.0)
            ));
            row.push(format!("{:.0}", w.get("loss").copied().unwrap_or(0.0)));
        }
        None => {
            row.push("—".into());
            row.push("—".into());
        }
    }
    row
}

/// Notes for monitors some of whose runs failed.
pub fn failure_notes(what: &str, series: &BTreeMap<Monitor, Series>) -> Vec<String> {
    series
        .iter()
        .filter_map(|(m, s)| {
            let (failed, first) = s.failures();
            (failed > 0).then(|| {
                format!(
                    "{what}, {}: {failed} of {} runs failed: {}",
                    m.label(),
                    s.runs.len(),
                    first.unwrap_or("")
                )
            })
        })
        .collect()
}

pub fn run(env: &Env, plan: &Plan, findings: &mut Findings) -> Result<Section> {
    let mut section = Section::new(1, "Exec storm", HOW);
    let mut table = Table::new(&[
        "rate",
        "monitor",
        "exec/s",
        "× none",
        "system busy %",
        "monitor CPU %",
        "monitor µs/exec",
        "RSS MiB",
        "captured / made",
        "lost",
    ]);
    let mut rss_max: Option<f64> = None;
    for &rate in &plan.exec_rates {
        let secs = if rate.is_some() {
            plan.exec_secs
        } else {
            plan.exec_fastest_secs
        };
        let label = rate_label(rate);
        let args = worker_args(plan, rate, secs);
        let series = rounds(plan, &MONITORS, &format!("exec storm {label}"), |m| {
            let meas = monitors::measure(env, m, &args)?;
            let capture = meas.stopped.execs(ExecFilter::Parent(meas.worker_pid))?;
            Ok(meas.storm_sample(capture))
        })?;
        let none = &series[&Monitor::None];
        for (m, s) in &series {
            table.row(storm_row(std::slice::from_ref(&label), *m, s, none));
        }
        section
            .notes
            .extend(failure_notes(&format!("exec storm {label}"), &series));
        let pw = &series[&Monitor::Procwatch];
        let loss = Loss {
            monitor: pw.max("loss"),
            exact: series[&Monitor::Events].max("loss"),
        };
        rss_max = [rss_max, pw.max("rss_mib")]
            .into_iter()
            .flatten()
            .reduce(f64::max);
        match rate {
            Some(1600.0) => {
                findings.exec_loss_1600 = Some(loss);
                findings
                    .cpu_us_per_exec
                    .push((label.clone(), pw.median("mon_us_per_op")));
            }
            None => {
                findings.exec_loss_fastest = Some(loss);
                findings
                    .cpu_us_per_exec
                    .push((label.clone(), pw.median("mon_us_per_op")));
                findings.fastest_ratio = Some((
                    pw.ratio(none, "per_s"),
                    series[&Monitor::Bpftrace].ratio(none, "per_s"),
                ));
            }
            _ => {}
        }
    }
    section.tables.push((String::new(), table));
    section
        .notes
        .push("`*`: machine-wide count (other processes' execs included).".into());

    match rss_over_storms(env, plan) {
        Ok((table, rss)) => {
            section.tables.push((
                format!(
                    "procwatch RSS over {} storms (as fast as possible, {} s each, one monitor \
                     process). *peak*: VmHWM during the storm and until the monitor is at rest \
                     (reset before each storm through clear_refs); *just after*: once its CPU \
                     is quiet; *at rest*: {} s later, when the storm's exited processes have \
                     left the table (exited_grace 5 s, then the next 5 s sweep, which also \
                     returns freed heap to the kernel). Growth compares the RSS at rest; the \
                     40 MB target takes the largest value of any column.",
                    plan.rss_storms,
                    plan.rss_storm_secs,
                    REST_AFTER_STORM.as_secs()
                ),
                table,
            ));
            if let (Some(first), Some(last)) = (rss.at_rest_mib.first(), rss.at_rest_mib.last()) {
                findings.rss_growth_mib = Some(last - first);
            }
            rss_max = rss_max.into_iter().chain([rss.max_mib]).reduce(f64::max);
        }
        Err(e) => section
            .notes
            .push(format!("RSS over repeated storms: failed: {e}")),
    }
    findings.rss_max_mib = rss_max;
    Ok(section)
}

/// RSS over repeated storms: the largest value seen (peaks included) and the RSS at rest
/// after each storm, in MiB.
pub struct RssOverStorms {
    /// Largest RSS seen: during a storm, just after it, or at rest.
    pub max_mib: f64,
    /// RSS at rest after each storm.
    pub at_rest_mib: Vec<f64>,
}

/// How long after a storm the monitor is back at rest: its exited processes stay for
/// `exited_grace` (5 s by default) and go at the next sweep (every 5 s), which also returns
/// freed heap to the kernel.
const REST_AFTER_STORM: Duration = Duration::from_secs(11);

/// One procwatch monitor through `plan.rss_storms` storms: for each, the peak RSS during it,
/// the RSS just after it and the RSS once the monitor is at rest again.
fn rss_over_storms(env: &Env, plan: &Plan) -> Result<(Table, RssOverStorms)> {
    let dir = env.scratch_dir("rss")?;
    let mut running = monitors::start(env, Monitor::Procwatch, dir.path())?;
    let args = worker_args(plan, None, plan.rss_storm_secs);
    let mut table = Table::new(&[
        "storm",
        "execs",
        "peak RSS MiB",
        "RSS MiB just after",
        "RSS MiB at rest",
        "procwatch µs/exec",
    ]);
    let mut out = RssOverStorms {
        max_mib: 0.0,
        at_rest_mib: Vec::new(),
    };
    let tck = measure::clock_ticks_per_sec();
    let mib = |k: Option<u64>, what: &str| {
        k.map(|k| k as f64 / 1024.0)
            .ok_or_else(|| format!("cannot read procwatch's {what}"))
    };
    for i in 1..=plan.rss_storms {
        check_interrupted()?;
        running.reset_peak_rss()?;
        let cpu0 = running.cpu_ticks().unwrap_or(0);
        let (_, result) = env.run_worker(&args)?;
        running.settle(Duration::from_secs(10));
        running.check_alive()?;
        let cpu = running.cpu_ticks().unwrap_or(0).saturating_sub(cpu0) as f64 / tck;
        let made = result.get("made").copied().unwrap_or(0.0);
        let after = mib(running.rss_kib(), "VmRSS")?;
        std::thread::sleep(REST_AFTER_STORM);
        running.check_alive()?;
        let rest = mib(running.rss_kib(), "VmRSS")?;
        let peak = mib(running.peak_rss_kib(), "VmHWM")?;
        eprintln!(
            "bench: storm {i}/{}: {made:.0} execs, RSS peak {peak:.1}, after {after:.1}, \
             at rest {rest:.1} MiB",
            plan.rss_storms
        );
        out.max_mib = [out.max_mib, peak, after, rest]
            .into_iter()
            .fold(0.0, f64::max);
        out.at_rest_mib.push(rest);
        table.row(vec![
            i.to_string(),
            format!("{made:.0}"),
            format!("{peak:.2}"),
            format!("{after:.2}"),
            format!("{rest:.2}"),
            report::num((made > 0.0).then(|| cpu * 1e6 / made), 1),
        ]);
    }
    running.stop()?;
    Ok((table, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_arguments() {
        assert_eq!(rate_label(Some(400.0)), "400/s");
        assert_eq!(rate_label(Some(1600.0)), "1,600/s");
        assert_eq!(rate_label(None), "fastest");
        let plan = Plan::new(&super::super::Options::default(), 2);
        assert_eq!(
            worker_args(&plan, None, 10.0),
            [
                "exec",
                "--path",
                "/bin/true",
                "--threads",
                "2",
                "--duration",
                "10"
            ]
        );
        assert_eq!(
            worker_args(&plan, Some(400.0), 15.0)[3..],
            ["--rate", "400", "--duration", "15"]
        );
    }
}
