//! Per-program cost of a monitor's BPF programs: how often each ran and for how long, from
//! `/proc/PID/fdinfo` of the monitor's program descriptors while `kernel.bpf_stats_enabled`
//! is on (the kernel then times every program run; off by default because that costs two
//! clock reads per run, so it is turned on only for a run of its own).
use std::collections::BTreeMap;

/// `BPF_PROG_TYPE_TRACEPOINT` (uapi bpf.h).
pub const TRACEPOINT: u32 = 5;
/// `BPF_PROG_TYPE_RAW_TRACEPOINT`: procwatch's only one is the raw `sys_enter` probe.
pub const RAW_TRACEPOINT: u32 = 17;
/// `BPF_PROG_TYPE_TRACING` (BTF-enabled tracepoints).
pub const TRACING: u32 = 26;

/// Runs and run time of one program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgStat {
    pub prog_type: u32,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

/// Every BPF program `pid` holds a descriptor of, by program id.
pub fn of_process(pid: u32) -> BTreeMap<u64, ProgStat> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if let Some((id, stat)) = parse_fdinfo(&text) {
            out.insert(id, stat);
        }
    }
    out
}

/// A program's id and stats from one fdinfo text; `None` for anything but a program
/// descriptor (a link's fdinfo names a `prog_id` too, but has no `prog_type` of its own).
fn parse_fdinfo(text: &str) -> Option<(u64, ProgStat)> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    };
    if text.lines().any(|l| l.starts_with("link_type:")) {
        return None;
    }
    Some((
        field("prog_id")?,
        ProgStat {
            prog_type: u32::try_from(field("prog_type")?).ok()?,
            run_cnt: field("run_cnt")?,
            run_time_ns: field("run_time_ns")?,
        },
    ))
}

/// Keeps `kernel.bpf_stats_enabled` on while it lives, then restores what was there.
pub struct StatsOn {
    old: Option<String>,
}

const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl StatsOn {
    /// Turns the kernel's program statistics on; `None` when it cannot.
    pub fn new() -> Option<StatsOn> {
        let old = std::fs::read_to_string(STATS).ok()?;
        std::fs::write(STATS, "1").ok()?;
        Some(StatsOn { old: Some(old) })
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        if let Some(old) = self.old.take() {
            let _ = std::fs::write(STATS, old.trim());
        }
    }
}

/// The change between two snapshots, summed per program type.
pub fn delta_by_type(
    before: &BTreeMap<u64, ProgStat>,
    after: &BTreeMap<u64, ProgStat>,
) -> BTreeMap<u32, ProgStat> {
    let mut out: BTreeMap<u32, ProgStat> = BTreeMap::new();
    for (id, a) in after {
        let b = before.get(id).copied().unwrap_or_default();
        let t = out.entry(a.prog_type).or_insert(ProgStat {
            prog_type: a.prog_type,
            ..ProgStat::default()
        });
        t.run_cnt += a.run_cnt.saturating_sub(b.run_cnt);
        t.run_time_ns += a.run_time_ns.saturating_sub(b.run_time_ns);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_program_fdinfo_and_skips_links() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t17\n\
                    prog_jited:\t1\nprog_tag:\tdeadbeef\nmemlock:\t4096\nprog_id:\t42\n\
                    run_time_ns:\t1500\nrun_cnt:\t10\nrecursion_misses:\t0\n";
        assert_eq!(
            parse_fdinfo(prog),
            Some((
                42,
                ProgStat {
                    prog_type: RAW_TRACEPOINT,
                    run_cnt: 10,
                    run_time_ns: 1500
                }
            ))
        );
        let link = "pos:\t0\nlink_type:\traw_tracepoint\nlink_id:\t3\nprog_tag:\tx\nprog_id:\t42\n";
        assert_eq!(parse_fdinfo(link), None);
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t0\n"), None);
        let before = BTreeMap::from([(
            42,
            ProgStat {
                prog_type: 17,
                run_cnt: 10,
                run_time_ns: 1500,
            },
        )]);
        let after = BTreeMap::from([
            (
                42,
                ProgStat {
                    prog_type: 17,
                    run_cnt: 30,
                    run_time_ns: 3500,
                },
            ),
            (
                7,
                ProgStat {
                    prog_type: 5,
                    run_cnt: 4,
                    run_time_ns: 400,
                },
            ),
        ]);
        let d = delta_by_type(&before, &after);
        assert_eq!((d[&17].run_cnt, d[&17].run_time_ns), (20, 2000));
        assert_eq!((d[&5].run_cnt, d[&5].run_time_ns), (4, 400));
    }
}
