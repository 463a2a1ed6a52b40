//! Workload 2: loopback TCP connects as fast as possible.
use super::{
    Env, Plan,
    exec_storm::{failure_notes, rounds, storm_row},
    monitors::{self, Monitor},
    report::{Findings, Section, Table},
};
use crate::sh::Result;

const MONITORS: [Monitor; 6] = [
    Monitor::None,
    Monitor::Procwatch,
    Monitor::Events,
    Monitor::Auditd,
    Monitor::Bpftrace,
    Monitor::Bare,
];

const HOW: &str = "A generator process (`xtask bench-worker connect`) listens on 127.0.0.1 \
(an accept thread takes and drops each connection) and connects to itself from one thread as \
fast as it can, closing each socket with SO_LINGER 0 (a RST, so no TIME_WAIT piles up and \
ephemeral ports never run out), never more than 1,024 connections ahead of the accept thread \
(the accept queue is 4,096 deep; an overflow would cost a 1 s SYN retransmit). Columns as in the exec storm, per connect. *captured / made*: \
`procwatch monitor` counts all connect events on the machine (`*`); `procwatch events`, \
bpftrace and auditd count the generator's own connect calls (by its pid). *bare tracepoint* \
is a bpftrace program that only bumps a per-CPU counter on `sys_enter_connect` and \
`sys_enter_mprotect`: the cost any syscall tracepoint program pays, the floor for procwatch.";

pub fn run(env: &Env, plan: &Plan, findings: &mut Findings) -> Result<Section> {
    let mut section = Section::new(2, "Connect storm", HOW);
    let args = vec![
        "connect".to_owned(),
        "--duration".into(),
        format!("{}", plan.connect_secs),
    ];
    let series = rounds(plan, &MONITORS, "connect storm", |m| {
        let meas = monitors::measure(env, m, &args)?;
        let capture = meas.stopped.connects(meas.worker_pid)?;
        let mut s = meas.storm_sample(capture);
        s.insert("listen_overflows", meas.get("listen_overflows"));
        Ok(s)
    })?;
    let mut table = Table::new(&[
        "monitor",
        "connects/s",
        "× none",
        "system busy %",
        "monitor CPU %",
        "monitor µs/connect",
        "RSS MiB",
        "captured / made",
        "lost",
    ]);
    let none = &series[&Monitor::None];
    for (m, s) in &series {
        table.row(storm_row(&[], *m, s, none));
    }
    section.tables.push((String::new(), table));
    section
        .notes
        .extend(failure_notes("connect storm", &series));
    section
        .notes
        .push("`*`: machine-wide count (other processes' connects included).".into());
    let slowdown = |m: Monitor| series[&m].ratio(none, "per_s").map(|r| 1.0 / r - 1.0);
    findings.connect = Some((slowdown(Monitor::Procwatch), slowdown(Monitor::Bare)));
    Ok(section)
}
