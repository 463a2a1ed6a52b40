//! Workload 6: one `procwatch scan` sweep against `ps`, with 1,000 extra sleeping processes.
use std::{
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    time::Instant,
};

use super::{
    Env, Plan, check_interrupted,
    json::Json,
    measure::{self, Series},
    report::{self, Findings, Section, Table},
};
use crate::sh::{self, Result};

const HOW: &str = "The bench starts the sleeping processes (`sleep 600`, killed afterwards), \
then times each command from spawn to exit, output to /dev/null, interleaved round by round \
after one warm-up run each: `procwatch scan --quiet --jsonl /dev/null` (release build, default \
configuration, one sweep of /proc with every detector), `ps -eo pid,ppid,user,args` (issue 5) \
and `ps -eo pid,comm,args` (issue 3). Medians over the rounds; *per 1,000* divides by the \
number of processes on the machine at the time.";

/// Sleeping children, killed when dropped.
struct Sleepers(Vec<Child>);

impl Sleepers {
    fn spawn(n: usize) -> Result<Sleepers> {
        let mut s = Sleepers(Vec::with_capacity(n));
        for _ in 0..n {
            let mut cmd = Command::new("sleep");
            cmd.arg("600")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: prctl only changes the child's own parent-death signal.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGKILL as libc::c_ulong,
                        0,
                        0,
                        0,
                    );
                    Ok(())
                });
            }
            s.0.push(cmd.spawn().map_err(|e| {
                format!("cannot start `sleep 600` (have {} so far): {e}", s.0.len())
            })?);
        }
        Ok(s)
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

pub fn run(env: &Env, plan: &Plan, findings: &mut Findings) -> Result<Section> {
    let mut section = Section::new(
        6,
        &format!(
            "Scan sweep ({} extra sleeping processes)",
            plan.scan_sleepers
        ),
        HOW,
    );
    eprintln!("bench: starting {} sleeping processes", plan.scan_sleepers);
    let sleepers = Sleepers::spawn(plan.scan_sleepers)?;
    let procs = measure::process_count();
    let scan = |quiet_stderr: bool| {
        let mut cmd = Command::new(&env.procwatch);
        cmd.args(["scan", "--quiet", "--jsonl", "/dev/null", "--config"])
            .arg(&env.empty_config)
            .env("HOME", &env.home)
            .env("PROCWATCH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if quiet_stderr {
            cmd.stderr(Stdio::null());
        }
        cmd
    };
    let ps = |fields: &str| {
        let mut cmd = Command::new("ps");
        cmd.args(["-eo", fields])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    let labels = [
        "procwatch scan",
        "ps -eo pid,ppid,user,args",
        "ps -eo pid,comm,args",
    ];
    let make = |i: usize| match i {
        0 => scan(true),
        1 => ps("pid,ppid,user,args"),
        _ => ps("pid,comm,args"),
    };
    // Warm-up, and what the scan itself says it looked at.
    let tracked = scanned_processes(scan(false))?;
    for i in 1..labels.len() {
        sh::run(make(i).stderr(Stdio::null()))?;
    }
    let mut series: Vec<Series> = labels.iter().map(|_| Series::new()).collect();
    for round in 1..=plan.scan_runs {
        check_interrupted()?;
        eprintln!("bench: scan sweep, round {round}/{}", plan.scan_runs);
        for (i, s) in series.iter_mut().enumerate() {
            let mut cmd = make(i);
            let t0 = Instant::now();
            let st = cmd
                .status()
                .map_err(|e| format!("cannot run {}: {e}", labels[i]))?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            s.runs.push(if st.success() {
                Ok([("ms", ms)].into_iter().collect())
            } else {
                Err(format!("{} failed ({st})", labels[i]))
            });
        }
    }
    drop(sleepers);
    let per_1000 = |s: &Series| {
        s.median("ms")
            .filter(|_| procs > 0)
            .map(|ms| ms * 1000.0 / procs as f64)
    };
    let mut table = Table::new(&[
        "command",
        "processes",
        "ms (median)",
        "ms per 1,000 processes",
        "× ps -eo pid,ppid,user,args",
    ]);
    for (i, s) in series.iter().enumerate() {
        let (failed, first) = s.failures();
        if failed > 0 {
            section.notes.push(format!(
                "{}: {failed} of {} runs failed: {}",
                labels[i],
                s.runs.len(),
                first.unwrap_or("")
            ));
        }
        table.row(vec![
            format!("`{}`", labels[i]),
            if i == 0 {
                match tracked {
                    Some(t) => format!("{procs} ({t} tracked by the scan)"),
                    None => procs.to_string(),
                }
            } else {
                procs.to_string()
            },
            report::num(s.median("ms"), 2),
            report::num(per_1000(s), 2),
            report::ratio(s.ratio(&series[1], "ms")),
        ]);
    }
    section.tables.push((String::new(), table));
    findings.scan = Some((
        per_1000(&series[0]),
        labels[1..]
            .iter()
            .zip(&series[1..])
            .map(|(l, s)| ((*l).to_owned(), per_1000(s)))
            .collect(),
    ));
    Ok(section)
}

/// Runs one scan and reads `engine.tracked` from the summary it logs.
fn scanned_processes(mut cmd: Command) -> Result<Option<u64>> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run procwatch scan: {e}"))?;
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "procwatch scan failed ({}): {}",
            out.status,
            text.trim()
        ));
    }
    Ok(text.lines().rev().find_map(|l| {
        let json = Json::parse(&l[l.find('{')?..]).ok()?;
        json.path(&["engine", "tracked"]).and_then(Json::as_u64)
    }))
}
