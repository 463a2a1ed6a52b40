//! Workload 3: what a traced system call costs, mprotect (never W+X) and getppid.
use super::{
    Env, Plan,
    exec_storm::{failure_notes, rounds},
    measure::Sample,
    monitors::{self, Monitor},
    progstats::{self, ProgStat},
    report::{self, Findings, Section, Table},
};
use crate::sh::Result;

const MONITORS: [Monitor; 6] = [
    Monitor::None,
    Monitor::Procwatch,
    Monitor::ProcwatchNoIa32,
    Monitor::Auditd,
    Monitor::Bpftrace,
    Monitor::Bare,
];

const HOW: &str = "A generator process (`xtask bench-worker syscalls`, started after the \
monitor) makes the calls with raw `syscall` instructions in a loop timed with a monotonic \
clock, after 10,000 warm-up calls: `mprotect(page, 4096, PROT_READ)` on a page of its own \
(never W+X, so procwatch's filter drops it in the kernel), then `getppid()`, which no \
per-syscall tracepoint traces, then (a quarter as many) `openat`+`close` of `/etc/passwd`, \
under procwatch's watched prefixes (its file-open probe reads the path, matches it, and finds \
the (process, path) pair in its kernel map after the first), and of `/usr/lib/os-release`, \
outside them (dropped after the prefix test). Enabling any syscall tracepoint moves every task \
onto the kernel's slower syscall entry path, so for the peers getppid measures that cost alone; \
for procwatch it adds its raw `sys_enter` program, which runs for every syscall to catch \
32-bit ones and returns at once for the rest, and its raw `sys_exit` program (32-bit \
ptrace and open results); *procwatch monitor, sensor.ia32: off* runs without those two, so \
the difference between the two procwatch rows is what watching 32-bit syscalls costs. auditd must record every mprotect to see a \
W+X one (audit cannot filter on the flag bits). *bare tracepoint* counts connect and mprotect \
calls in a per-CPU map and nothing else. Medians over the rounds; `vs none` is the median of \
each round's ratio minus one. Then one more procwatch run with the kernel's BPF run statistics on (`kernel.bpf_stats_enabled`, restored afterwards; it adds two clock reads per program run, so it is kept out of the rounds above) gives the cost per program type over the same calls: the raw `sys_enter` program runs for every syscall of every process (it handles only 32-bit ones and returns at once for the rest), the classic tracepoints only for their own syscalls.";

pub fn run(env: &Env, plan: &Plan, findings: &mut Findings) -> Result<Section> {
    let mut section = Section::new(
        3,
        &format!(
            "Syscall overhead ({} calls each)",
            thousands(plan.syscall_calls)
        ),
        HOW,
    );
    let args = vec![
        "syscalls".to_owned(),
        "--count".into(),
        plan.syscall_calls.to_string(),
    ];
    let series = rounds(plan, &MONITORS, "syscall overhead", |m| {
        let meas = monitors::measure(env, m, &args)?;
        let mut s = Sample::new();
        for key in [
            "mprotect_ns",
            "getppid_ns",
            "open_watched_ns",
            "open_unwatched_ns",
        ] {
            let v = meas
                .result
                .get(key)
                .copied()
                .ok_or_else(|| format!("the worker reported no {key}"))?;
            s.insert(key, v);
        }
        Ok(s)
    })?;
    let none = &series[&Monitor::None];
    let mut table = Table::new(&[
        "monitor",
        "mprotect ns/call",
        "mprotect vs none",
        "getppid ns/call",
        "getppid vs none",
        "open+close /etc/passwd ns",
        "vs none",
        "open+close unwatched ns",
        "vs none",
    ]);
    for (m, s) in &series {
        let (failed, first) = s.failures();
        if failed == s.runs.len() {
            table.row(vec![
                m.label().into(),
                format!("failed: {}", first.unwrap_or("")),
            ]);
            continue;
        }
        let vs = |key: &str| {
            if *m == Monitor::None {
                "—".into()
            } else {
                report::change(s.ratio(none, key).map(|r| r - 1.0))
            }
        };
        table.row(vec![
            m.label().into(),
            report::num(s.median("mprotect_ns"), 1),
            vs("mprotect_ns"),
            report::num(s.median("getppid_ns"), 1),
            vs("getppid_ns"),
            report::num(s.median("open_watched_ns"), 1),
            vs("open_watched_ns"),
            report::num(s.median("open_unwatched_ns"), 1),
            vs("open_unwatched_ns"),
        ]);
    }
    section.tables.push((String::new(), table));
    section
        .notes
        .extend(failure_notes("syscall overhead", &series));
    match program_costs(env, &args) {
        Ok(table) => section
            .tables
            .push(("Per BPF program type (procwatch)".into(), table)),
        Err(e) => section
            .notes
            .push(format!("per-program costs not measured: {e}")),
    }
    let over = |m: Monitor, key: &str| series[&m].ratio(none, key).map(|r| r - 1.0);
    findings.mprotect = Some((
        over(Monitor::Procwatch, "mprotect_ns"),
        over(Monitor::Bare, "mprotect_ns"),
    ));
    let ia32 = |key: &str| {
        series[&Monitor::Procwatch]
            .ratio(&series[&Monitor::ProcwatchNoIa32], key)
            .map(|r| r - 1.0)
    };
    section.notes.push(format!(
        "Watching 32-bit syscalls (procwatch with sensor.ia32 on vs off, same rounds): \
         getppid {}, mprotect {}.",
        report::change(ia32("getppid_ns")),
        report::change(ia32("mprotect_ns"))
    ));
    findings.getppid = Some((
        over(Monitor::Procwatch, "getppid_ns"),
        over(Monitor::Bare, "getppid_ns"),
    ));
    Ok(section)
}

/// One procwatch run of the worker with BPF run statistics on: runs and ns per run of its
/// programs, by type, counted from just before the worker to just after it.
fn program_costs(env: &Env, args: &[String]) -> Result<Table> {
    let stats = progstats::StatsOn::new().ok_or("cannot turn on kernel.bpf_stats_enabled")?;
    let dir = env.scratch_dir("procwatch-progstats")?;
    let mut running = monitors::start(env, Monitor::Procwatch, dir.path())?;
    let pid = running.pid().ok_or("procwatch has no pid")?;
    let before = progstats::of_process(pid);
    env.run_worker(args)?;
    let after = progstats::of_process(pid);
    running.check_alive()?;
    running.stop()?;
    drop(stats);
    // Runs count every process's syscalls meanwhile, not only the worker's.
    let mut table = Table::new(&["programs", "runs", "ns/run"]);
    for (ty, d) in progstats::delta_by_type(&before, &after) {
        let label = match ty {
            progstats::RAW_TRACEPOINT => {
                "raw_tp:sys_enter + sys_exit (every syscall, each twice; 32-bit ones handled)"
            }
            progstats::TRACEPOINT => "classic tracepoints (syscalls:*, sched:*, io_uring:*)",
            progstats::TRACING => "tp_btf (sched_process_fork)",
            _ => "other",
        };
        table.row(row(label, d));
    }
    if after.is_empty() {
        return Err("no BPF program descriptors found in procwatch's /proc/PID/fdinfo".into());
    }
    Ok(table)
}

fn row(label: &str, d: ProgStat) -> Vec<String> {
    let per_run = (d.run_cnt > 0).then(|| d.run_time_ns as f64 / d.run_cnt as f64);
    vec![label.into(), thousands(d.run_cnt), report::num(per_run, 1)]
}

/// `1000000` as `1,000,000`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands() {
        assert_eq!(super::thousands(1_000_000), "1,000,000");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
    }
}
