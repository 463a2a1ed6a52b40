//! What the bench reads off the machine (/proc) and the statistics it reports.
use std::{collections::BTreeMap, fs};

/// One measurement: metric name to value (e.g. `"exec_per_s"`).
pub type Sample = BTreeMap<&'static str, f64>;

/// Every run of one monitor in one workload; a run that failed keeps its error.
#[derive(Debug, Clone)]
pub struct Series {
    pub runs: Vec<Result<Sample, String>>,
}

impl Series {
    pub fn new() -> Self {
        Self { runs: Vec::new() }
    }

    pub fn ok(&self) -> impl Iterator<Item = &Sample> {
        self.runs.iter().filter_map(|r| r.as_ref().ok())
    }

    fn values(&self, key: &str) -> Vec<f64> {
        self.ok().filter_map(|s| s.get(key).copied()).collect()
    }

    /// Median of `key` over the runs that have it.
    pub fn median(&self, key: &str) -> Option<f64> {
        median(&self.values(key))
    }

    pub fn max(&self, key: &str) -> Option<f64> {
        self.values(key).into_iter().reduce(f64::max)
    }

    /// Median over runs of `self[key] / base[key]`, pairing runs by index (the same round).
    pub fn ratio(&self, base: &Series, key: &str) -> Option<f64> {
        let ratios: Vec<f64> = self
            .runs
            .iter()
            .zip(&base.runs)
            .filter_map(|(m, b)| {
                let m = m.as_ref().ok()?.get(key)?;
                let b = b.as_ref().ok()?.get(key)?;
                (*b > 0.0).then(|| m / b)
            })
            .collect();
        median(&ratios)
    }

    /// The sample whose `key` is largest (e.g. the run with the most loss).
    pub fn worst(&self, key: &str) -> Option<&Sample> {
        self.ok()
            .filter(|s| s.contains_key(key))
            .max_by(|a, b| a[key].total_cmp(&b[key]))
    }

    /// How many runs failed, and the first error.
    pub fn failures(&self) -> (usize, Option<&str>) {
        let errors: Vec<&str> = self
            .runs
            .iter()
            .filter_map(|r| r.as_ref().err().map(String::as_str))
            .collect();
        (errors.len(), errors.first().copied())
    }
}

/// Median (mean of the two middle values for an even count); `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Nearest-rank percentile (`p` in 0..=100) of `values`; `None` for no values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// The aggregate `cpu` line of /proc/stat, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    pub total: u64,
    pub idle: u64,
}

impl CpuTimes {
    pub fn read() -> Option<CpuTimes> {
        parse_proc_stat(&fs::read_to_string("/proc/stat").ok()?)
    }

    /// Share of all CPUs that was busy between `self` and `later`, in percent.
    pub fn busy_pct_until(&self, later: &CpuTimes) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let idle = later.idle.checked_sub(self.idle)?;
        (total > 0).then(|| 100.0 * total.saturating_sub(idle) as f64 / total as f64)
    }
}

/// user nice system idle iowait irq softirq steal (guest time is already inside user/nice);
/// idle counts idle + iowait.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 5 {
        return None;
    }
    Some(CpuTimes {
        total: fields.iter().sum(),
        idle: fields[3] + fields[4],
    })
}

/// utime + stime of a whole process (all its threads, live and dead), in clock ticks.
pub fn process_cpu_ticks(pid: u32) -> Option<u64> {
    parse_pid_stat_cpu(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Fields 14 and 15 of /proc/<pid>/stat, counted after the `)` that closes the comm (which may
/// itself contain spaces and parentheses).
pub fn parse_pid_stat_cpu(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field 14 is fields[11].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as f64 } else { 100.0 }
}

/// Resident set size of `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    parse_vm_rss(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status_kib(status, "VmRSS:")
}

/// Peak resident set of `pid` in KiB (VmHWM) since it started or since [`reset_peak_rss`].
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(
        &fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmHWM:",
    )
}

/// Restarts `pid`'s VmHWM from its current RSS (`5` to clear_refs, Linux 4.0+).
pub fn reset_peak_rss(pid: u32) -> crate::sh::Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .map_err(|e| format!("cannot reset the peak RSS of {pid}: {e}"))
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Pids whose comm is exactly `comm` (e.g. the `kauditd` kernel thread).
pub fn pids_by_comm(comm: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

/// How many processes exist now (numeric entries of /proc).
pub fn process_count() -> usize {
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.parse::<u32>().is_ok())
                })
                .count()
        })
        .unwrap_or(0)
}

/// `key=value` pairs of a worker's result line; values that are not numbers are skipped.
pub fn parse_key_values(line: &str) -> BTreeMap<String, f64> {
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pairs: &[(&'static str, f64)]) -> Sample {
        pairs.iter().copied().collect()
    }

    #[test]
    fn median_and_percentiles() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        let v: Vec<f64> = (1..=500).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), Some(495.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn proc_stat_busy_share() {
        let a = parse_proc_stat(
            "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\nintr 1\n",
        )
        .expect("parses");
        assert_eq!(
            a,
            CpuTimes {
                total: 1000,
                idle: 850
            }
        );
        let b = parse_proc_stat("cpu  200 10 90 1500 60 5 5 0 0 0\n").expect("parses");
        // 1870 - 1000 = 870 ticks, of which idle 1560 - 850 = 710: busy 160.
        let busy = a.busy_pct_until(&b).expect("busy");
        assert!((busy - 100.0 * 160.0 / 870.0).abs() < 1e-9);
        assert_eq!(b.busy_pct_until(&a), None);
        assert_eq!(parse_proc_stat("intr 1\n"), None);
    }

    #[test]
    fn pid_stat_with_a_hostile_comm() {
        let stat = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 37 12 0 0 20 0 3 0 \
                    500 1000 200 0\n";
        assert_eq!(parse_pid_stat_cpu(stat), Some(49));
        assert_eq!(parse_pid_stat_cpu("1 (x) S 1"), None);
    }

    #[test]
    fn vm_rss_and_key_values() {
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmHWM:\t 99999 kB\nVmRSS:\t   12345 kB\nVmSwap: 0 kB\n"),
            Some(12345)
        );
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        let kv = parse_key_values("made=12 failed=0 elapsed_ns=1.5e9 note=x");
        assert_eq!(kv.get("made"), Some(&12.0));
        assert_eq!(kv.get("elapsed_ns"), Some(&1.5e9));
        assert_eq!(kv.get("note"), None);
    }

    #[test]
    fn series_pairs_runs_by_round() {
        let none = Series {
            runs: vec![
                Ok(sample(&[("rate", 100.0)])),
                Ok(sample(&[("rate", 200.0)])),
                Ok(sample(&[("rate", 100.0)])),
            ],
        };
        let mon = Series {
            runs: vec![
                Ok(sample(&[("rate", 90.0), ("lost", 0.0)])),
                Err("did not start".into()),
                Ok(sample(&[("rate", 80.0), ("lost", 3.0)])),
            ],
        };
        let r = mon.ratio(&none, "rate").expect("ratio");
        assert!((r - 0.85).abs() < 1e-12, "{r}");
        assert_eq!(mon.median("rate"), Some(85.0));
        assert_eq!(mon.max("lost"), Some(3.0));
        assert_eq!(mon.worst("lost").and_then(|s| s.get("rate")), Some(&80.0));
        assert_eq!(mon.failures(), (1, Some("did not start")));
        assert_eq!(none.failures(), (0, None));
    }
}
