//! docs/SOAK.md: the run, the verdict with each check's numbers, the load, one row per minute
//! and procwatch's own summary.
use std::fmt::Write as _;

use super::{
    load::{Made, Rates},
    verdict::{Check, Minute},
};
use crate::bench::report::{Header, Table, num};

/// Everything the document shows.
pub struct Doc<'a> {
    pub header: &'a Header,
    pub minutes_planned: u32,
    pub warmup: u32,
    pub rates: &'a Rates,
    pub made: &'a [Made],
    pub checks: &'a [Check],
    pub per_minute: &'a [Minute],
    /// Figures from procwatch's summary and the outputs, as (what, value).
    pub ending: &'a [(String, String)],
    pub notes: &'a [String],
    /// What else ran on the machine meanwhile.
    pub activity: Option<&'a str>,
    /// Where procwatch was when it did not stop on SIGTERM.
    pub stuck: Option<&'a str>,
}

const HOW: &str = "`procwatch monitor` (release build, built-in defaults plus `ports` allowing \
the connect generator's port) writes its alerts to a JSONL file and, over TCP, to a private \
rsyslogd on loopback. Generators are `xtask bench-worker` processes (the bench's), paced by \
the clock, all at once for the whole run: `/bin/true` (the exec storm), a copy of `/bin/true` \
in a /tmp directory (each run is a `tmp_exe` alert), the release xtask binary as children \
that make a page W+X with `mprotect` (`wx_mem`) or connect once to a port not in `ports` on \
127.0.0.1 (`suspicious_port`), and one long-lived process connecting to an allowed loopback \
port (events, no alert). Every 10 s (each sample at a random point of the last 4 s of its \
interval, so that samples do not keep meeting the same phase of procwatch's 5 s sweep): \
procwatch's VmRSS, the entries of /proc/PID/fd (the fewest of 5 readings 0.1 s apart), its \
utime+stime, the generators' counts, the alerts in the JSONL file and in rsyslogd's output, \
and the loss total of procwatch's last \"events lost\" warning. The verdict fits a \
least-squares line to the samples after the warm-up; *CPU per exec* is procwatch's CPU per \
exec the generators made in each 10 s interval (procwatch handles every event on the \
machine, so other processes' activity is included).";

pub fn document(d: &Doc) -> String {
    let mut out = String::from(
        "# Soak\n\nWritten by `cargo xtask soak` (issue 9); re-run it rather than editing this \
         file. Every number below comes from the run described here.\n\n",
    );
    let h = d.header;
    let mut facts = Table::new(&["", ""]);
    for (k, v) in [
        ("date (UTC)", h.date.clone()),
        ("kernel (`uname -r`)", h.kernel.clone()),
        ("CPUs (nproc)", h.cpus.to_string()),
        ("CPU model", h.cpu_model.clone()),
        ("procwatch commit", h.commit.clone()),
        ("run", h.mode.clone()),
    ] {
        facts.row(vec![k.into(), v]);
    }
    out += &facts.render();
    let pass = d.checks.iter().all(|c| c.pass);
    let _ = write!(
        out,
        "\n## Verdict: {}\n\nJudged from minute {} to the end of {} minutes; each check is \
         computed from this run's numbers.\n\n",
        if pass { "FLAT" } else { "NOT FLAT" },
        d.warmup,
        d.minutes_planned
    );
    let mut t = Table::new(&["check", "measured", "limit", "verdict"]);
    for c in d.checks {
        t.row(vec![
            c.what.clone(),
            c.measured.clone(),
            c.limit.clone(),
            if c.pass { "PASS" } else { "FAIL" }.into(),
        ]);
    }
    out += &t.render();
    if let Some(note) = d.activity {
        let _ = writeln!(out, "\n{note}");
    }
    let _ = write!(out, "\n## Load\n\n{HOW}\n\n");
    let mut t = Table::new(&["generator", "rate /s", "made", "failed"]);
    let r = d.rates;
    for m in d.made {
        let rate = match m.name {
            "storm" => r.storm,
            "payload" => r.payload,
            "wx" => r.wx,
            "dial" => r.dial,
            _ => r.connects,
        };
        t.row(vec![
            m.name.into(),
            num(Some(rate), 0),
            m.made.to_string(),
            m.failed.to_string(),
        ]);
    }
    out += &t.render();
    out += "\n## Per minute\n\nRates are over the minute; *RSS* is the last sample of the \
            minute; *fds* the fewest and the most open descriptors read in it; *lost* the \
            events procwatch had reported lost so far. *our alerts*: tmp_exe / wx_mem / \
            suspicious_port alerts on the load's own processes.\n\n";
    let mut t = Table::new(&[
        "minute",
        "execs/s",
        "connects/s",
        "machine tasks/s",
        "alerts",
        "our alerts",
        "other alerts",
        "syslog msgs",
        "RSS MiB",
        "fds",
        "procwatch CPU %",
        "µs/exec",
        "lost",
    ]);
    for m in d.per_minute {
        t.row(vec![
            m.minute.to_string(),
            num(Some(m.execs_per_s), 0),
            num(Some(m.connects_per_s), 0),
            num(Some(m.tasks_per_s), 0),
            m.alerts.to_string(),
            format!(
                "{} / {} / {}",
                m.ours.tmp_exe, m.ours.wx_mem, m.ours.suspicious_port
            ),
            m.other_alerts().to_string(),
            m.syslog.to_string(),
            num(Some(m.rss_mib), 2),
            if m.fds_min == m.fds_max {
                m.fds_min.to_string()
            } else {
                format!("{}–{}", m.fds_min, m.fds_max)
            },
            num(Some(m.cpu_pct), 1),
            num(m.us_per_exec, 1),
            m.lost.to_string(),
        ]);
    }
    out += &t.render();
    out += "\n## At the end\n\n";
    let mut t = Table::new(&["", ""]);
    for (k, v) in d.ending {
        t.row(vec![k.clone(), v.clone()]);
    }
    out += &t.render();
    if !d.notes.is_empty() {
        out.push('\n');
        for n in d.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    if let Some(stuck) = d.stuck {
        out += "\n## procwatch did not stop on SIGTERM\n\n";
        // Indented: a code block whatever the text holds.
        for line in stuck.trim_end().lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}
