//! Workload 5: short-lived /tmp binaries; how many produced an alert (procwatch) or an event
//! (peers).

use super::{
    Env, Plan,
    exec_storm::{failure_notes, rounds},
    measure::Sample,
    monitors::{self, Monitor},
    report::{self, Findings, Section, Table},
};
use crate::sh::Result;

const MONITORS: [Monitor; 4] = [
    Monitor::Procwatch,
    Monitor::Events,
    Monitor::Auditd,
    Monitor::Bpftrace,
];

const HOW: &str = "Each round copies `/bin/true` into a fresh directory under /tmp and the \
generator (`xtask bench-worker exec --count`) runs that copy as fast as it can, one \
spawn-and-wait thread per CPU; each process exits at once. After the monitor has worked off its \
backlog it is stopped, then the distinct pids are counted: for `procwatch monitor`, alerts \
whose `exe`, trigger `filename` or `cmdline[0]` is the copy; for `procwatch events`, exec events \
of the copy; for auditd, successful execve records whose `exe` is the copy; for bpftrace, its \
exec lines of the copy. The table shows the round with the fewest.";

pub fn run(env: &Env, plan: &Plan, findings: &mut Findings) -> Result<Section> {
    let mut section = Section::new(
        5,
        &format!(
            "Short-lived recall ({} execs of a /tmp binary)",
            plan.recall_execs
        ),
        HOW,
    );
    let series = rounds(plan, &MONITORS, "short-lived recall", |m| {
        let bin_dir = env.scratch_dir("recall-bin")?;
        let bin = bin_dir.path().join("shortlived");
        crate::sh::install_exe(std::path::Path::new("/bin/true"), &bin)?;
        let path = bin.display().to_string();
        let args = vec![
            "exec".to_owned(),
            "--path".into(),
            path.clone(),
            "--count".into(),
            plan.recall_execs.to_string(),
            "--threads".into(),
            plan.threads.to_string(),
        ];
        let meas = monitors::measure(env, m, &args)?;
        let seen = meas
            .stopped
            .recalled(&path)?
            .ok_or("this monitor records nothing to count")?;
        let made = meas.get("made");
        let mut s = Sample::new();
        s.insert("made", made);
        s.insert("seen", seen as f64);
        s.insert("missing", made - seen as f64);
        Ok(s)
    })?;
    let mut table = Table::new(&["monitor", "execs", "alerted / recorded", "recall"]);
    for (m, s) in &series {
        let (failed, first) = s.failures();
        if failed == s.runs.len() {
            table.row(vec![
                m.label().into(),
                format!("failed: {}", first.unwrap_or("")),
            ]);
            continue;
        }
        let Some(w) = s.worst("missing") else {
            continue;
        };
        let (made, seen) = (w["made"], w["seen"]);
        table.row(vec![
            m.label().into(),
            format!("{made:.0}"),
            format!("{seen:.0}"),
            if made > 0.0 {
                format!("{} %", report::num(Some(100.0 * seen / made), 1))
            } else {
                "—".into()
            },
        ]);
        if *m == Monitor::Procwatch {
            findings.recall = Some((seen, made));
        }
    }
    section.tables.push((String::new(), table));
    section
        .notes
        .extend(failure_notes("short-lived recall", &series));
    Ok(section)
}
