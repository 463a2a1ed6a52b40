//! `cargo xtask bench [--quick] [--only N,M] [--runs K]` (issue 5): procwatch against no
//! monitor, auditd and bpftrace on six workloads; one Markdown table per workload on stdout and
//! all of them in docs/BENCHMARKS.md, with the targets evaluated from the numbers.
//!
//! The load generators are `xtask bench-worker ...` processes ([`worker`]), built in release.
//! Everything started is stopped by guards (`Drop`), also on errors and Ctrl-C.
mod api;
mod api_load;
mod auditd;
mod connect_storm;
mod exec_storm;
pub mod json;
mod latency;
pub mod measure;
pub mod monitors;
mod progstats;
mod recall;
pub mod report;
mod scan;
mod syscalls;
pub mod worker;

use std::{
    cell::Cell,
    collections::BTreeSet,
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    setup::Setup,
    sh::{self, Result},
};

/// Command-line options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    pub quick: bool,
    /// Workload numbers (1-7) to run; empty for all.
    pub only: BTreeSet<u8>,
    pub runs: Option<usize>,
}

pub const WORKLOADS: [(u8, &str); 7] = [
    (1, "exec storm (and RSS over repeated storms)"),
    (2, "connect storm"),
    (3, "syscall overhead"),
    (4, "alert latency"),
    (5, "short-lived recall"),
    (6, "scan sweep"),
    (7, "REST API under load"),
];

impl Options {
    pub fn parse(flags: &[String]) -> std::result::Result<Options, String> {
        let mut o = Options::default();
        let mut it = flags.iter();
        while let Some(flag) = it.next() {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (flag.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match name {
                "--quick" => o.quick = true,
                "--only" => {
                    for part in value()?.split(',').filter(|p| !p.trim().is_empty()) {
                        let n: u8 = part
                            .trim()
                            .parse()
                            .ok()
                            .filter(|n| (1..=7).contains(n))
                            .ok_or_else(|| {
                                format!("--only takes workload numbers 1-7, not {part:?}")
                            })?;
                        o.only.insert(n);
                    }
                }
                "--runs" => {
                    let v = value()?;
                    let n: usize =
                        v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                            format!("--runs takes a count of at least 1, not {v:?}")
                        })?;
                    o.runs = Some(n);
                }
                other => return Err(format!("unknown option for bench: {other}")),
            }
        }
        Ok(o)
    }

    fn wants(&self, n: u8) -> bool {
        self.only.is_empty() || self.only.contains(&n)
    }
}

/// Durations and counts: the spec, or short ones for `--quick`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub quick: bool,
    pub runs: usize,
    /// Fixed exec rates, then `None` for as fast as possible.
    pub exec_rates: Vec<Option<f64>>,
    pub exec_secs: f64,
    pub exec_fastest_secs: f64,
    pub rss_storms: usize,
    pub rss_storm_secs: f64,
    pub connect_secs: f64,
    pub syscall_calls: u64,
    pub latency_samples: usize,
    pub recall_execs: u64,
    pub scan_sleepers: usize,
    pub scan_runs: usize,
    /// Generator threads for "as fast as possible" (one per CPU).
    pub threads: usize,
}

impl Plan {
    pub fn new(o: &Options, cpus: usize) -> Plan {
        let full = Plan {
            quick: false,
            runs: 3,
            exec_rates: vec![Some(400.0), Some(1600.0), None],
            exec_secs: 15.0,
            exec_fastest_secs: 10.0,
            rss_storms: 10,
            rss_storm_secs: 5.0,
            connect_secs: 10.0,
            syscall_calls: 1_000_000,
            latency_samples: 500,
            recall_execs: 1000,
            scan_sleepers: 1000,
            scan_runs: 5,
            threads: cpus.max(1),
        };
        let mut plan = if o.quick {
            Plan {
                quick: true,
                runs: 1,
                exec_secs: 3.0,
                exec_fastest_secs: 3.0,
                rss_storm_secs: 1.0,
                connect_secs: 3.0,
                syscall_calls: 1_000_000,
                latency_samples: 100,
                scan_runs: 3,
                ..full
            }
        } else {
            full
        };
        if let Some(r) = o.runs {
            plan.runs = r;
        }
        plan
    }

    pub fn describe(&self) -> String {
        format!(
            "{}, {} run{} per measurement",
            if self.quick {
                "--quick (short durations: for development, not for the record)"
            } else {
                "full (issue 5 durations)"
            },
            self.runs,
            if self.runs == 1 { "" } else { "s" }
        )
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Fails once Ctrl-C was pressed, so the guards on the way out clean up.
pub fn check_interrupted() -> Result {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted (Ctrl-C)".into())
    } else {
        Ok(())
    }
}

/// Paths and machine-wide state every workload uses.
pub struct Env {
    pub procwatch: PathBuf,
    pub worker: PathBuf,
    pub scratch: PathBuf,
    pub home: PathBuf,
    pub empty_config: PathBuf,
    pub audit: Option<auditd::Baseline>,
    counter: Cell<u32>,
}

/// A directory removed when dropped.
pub struct ScratchDir<'e> {
    path: PathBuf,
    _env: std::marker::PhantomData<&'e Env>,
}

impl ScratchDir<'_> {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

impl Env {
    /// A fresh directory under the bench's scratch directory (which is under /tmp, so a
    /// binary copied there counts as a /tmp binary).
    pub fn scratch_dir(&self, label: &str) -> Result<ScratchDir<'_>> {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let path = self.scratch.join(format!("{n:03}-{label}"));
        fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(ScratchDir {
            path,
            _env: std::marker::PhantomData,
        })
    }

    /// Runs `xtask bench-worker <args>` to the end; its pid and its `key=value` result.
    pub fn run_worker(
        &self,
        args: &[String],
    ) -> Result<(u32, std::collections::BTreeMap<String, f64>)> {
        let mut cmd = Command::new(&self.worker);
        cmd.arg("bench-worker")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", sh::display(&cmd)))?;
        let pid = child.id();
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for `{}`: {e}", sh::display(&cmd)))?;
        check_interrupted()?;
        if !out.status.success() {
            return Err(format!(
                "`{}` failed ({}): {}",
                sh::display(&cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or("");
        Ok((pid, measure::parse_key_values(line)))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

/// Checks the toolchain, tracefs and the Debian packages (installing only what is missing),
/// then builds procwatch and xtask in release; returns the directory of the binaries.
pub fn build_release() -> Result<PathBuf> {
    let mut setup = Setup::new(false);
    setup.toolchain()?;
    setup.tracefs()?;
    setup.packages()?;
    setup.finish()?;
    sh::run(
        sh::cargo()
            .args([
                "build",
                "--release",
                "--package",
                "procwatch",
                "--package",
                "xtask",
            ])
            .stdout(std::io::stderr()),
    )?;
    Ok(crate::run::target_dir()?.join("release"))
}

/// Ctrl-C from now on only sets a flag that [`check_interrupted`] reports, so the guards on
/// the way out stop what was started.
pub fn catch_ctrl_c() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

impl Env {
    /// The release binaries in `release`, and a fresh scratch directory
    /// `/tmp/procwatch-<label>-<pid>` (with a `home` and an empty config) removed on drop.
    pub fn new(release: &Path, label: &str, needs_audit: bool) -> Result<Env> {
        let scratch =
            std::env::temp_dir().join(format!("procwatch-{label}-{}", std::process::id()));
        let home = scratch.join("home");
        fs::create_dir_all(&home).map_err(|e| format!("cannot create {}: {e}", home.display()))?;
        let empty_config = scratch.join("empty.yaml");
        fs::write(&empty_config, "")
            .map_err(|e| format!("cannot write {}: {e}", empty_config.display()))?;
        let env = Env {
            procwatch: release.join("procwatch"),
            worker: release.join("xtask"),
            scratch,
            home,
            empty_config,
            audit: needs_audit.then(auditd::Baseline::prepare),
            counter: Cell::new(0),
        };
        for bin in [&env.procwatch, &env.worker] {
            if !bin.is_file() {
                return Err(format!(
                    "the build succeeded but {} is missing",
                    bin.display()
                ));
            }
        }
        Ok(env)
    }
}

/// `cargo xtask bench ...`.
pub fn command(options: &Options) -> Result<u8> {
    if !sh::is_root() {
        return Err(
            "cargo xtask bench must run as root: it loads BPF programs (procwatch, \
                    bpftrace), starts auditd and changes audit rules, and reads other \
                    processes' /proc. Run it as root, e.g. `sudo -E env \"PATH=$PATH\" cargo \
                    xtask bench --quick`."
                .into(),
        );
    }
    let started = Instant::now();
    let release = build_release()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = Plan::new(options, cpus);

    catch_ctrl_c();
    let needs_audit = [1, 2, 3, 5].iter().any(|n| options.wants(*n));
    let env = Env::new(&release, "bench", needs_audit)?;
    eprintln!("bench: {}", plan.describe());

    let mut findings = report::Findings::default();
    let mut sections = Vec::new();
    let mut failures = Vec::new();
    for (n, name) in WORKLOADS {
        if !options.wants(n) {
            continue;
        }
        eprintln!("\nbench: workload {n}: {name}");
        let result = match n {
            1 => exec_storm::run(&env, &plan, &mut findings),
            2 => connect_storm::run(&env, &plan, &mut findings),
            3 => syscalls::run(&env, &plan, &mut findings),
            4 => latency::run(&env, &plan, &mut findings),
            5 => recall::run(&env, &plan, &mut findings),
            6 => scan::run(&env, &plan, &mut findings),
            _ => api::run(&env, &plan),
        };
        match result {
            Ok(section) => {
                print!("\n{}", section.render());
                let _ = std::io::stdout().flush();
                sections.push(section);
            }
            Err(e) => {
                eprintln!("bench: workload {n} failed: {e}");
                let mut s = report::Section::new(n, name, "");
                s.notes.push(format!("The workload failed: {e}"));
                sections.push(s);
                failures.push(format!("workload {n}: {e}"));
            }
        }
        if check_interrupted().is_err() {
            break;
        }
    }
    check_interrupted()?;

    let mut notes = vec![
        "Numbers from a shared or busy machine are noisy: re-run on a quiet machine before \
         drawing conclusions."
            .to_owned(),
    ];
    if let Some(audit) = &env.audit {
        notes.push(audit.note());
    }
    let targets = report::targets(&findings);
    print!(
        "\n## Targets\n\n{}",
        report::targets_table(&targets).render()
    );
    let mut header = header(&plan, started);
    if !options.only.is_empty() {
        let list: Vec<String> = options.only.iter().map(u8::to_string).collect();
        header.mode += &format!("; only workloads {}", list.join(", "));
    }
    let doc = report::document(&header, &sections, &targets, &notes);
    let path = sh::workspace_root().join("docs/BENCHMARKS.md");
    fs::write(&path, doc).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!(
        "\nbench: wrote {} ({:.0} s in all)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    drop(env);
    if failures.is_empty() {
        Ok(0)
    } else {
        Err(format!(
            "some workloads failed (their sections say so): {}",
            failures.join("; ")
        ))
    }
}

fn git() -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(sh::workspace_root());
    cmd
}

fn header(plan: &Plan, started: Instant) -> report::Header {
    machine_header(format!(
        "{}; took {:.0} min",
        plan.describe(),
        started.elapsed().as_secs_f64() / 60.0
    ))
}

/// Date, kernel, CPUs and procwatch commit (marked when its sources have uncommitted changes),
/// with `mode` describing the run.
pub fn machine_header(mode: String) -> report::Header {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_owned());
    let commit = sh::output(git().args(["rev-parse", "--short=12", "HEAD"]))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let dirty = sh::output(git().args([
        "status",
        "--porcelain",
        "--",
        "procwatch",
        "procwatch-common",
        "procwatch-ebpf",
    ]))
    .is_some_and(|s| !s.trim().is_empty());
    report::Header {
        date: report::utc_date(secs),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        commit: if dirty {
            format!("{commit} (with uncommitted changes)")
        } else {
            commit
        },
        mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        assert_eq!(Options::parse(&[]), Ok(Options::default()));
        let o = Options::parse(&strings(&["--quick", "--only", "1,3", "--runs=5"])).expect("ok");
        assert!(o.quick);
        assert_eq!(o.only, [1, 3].into_iter().collect());
        assert_eq!(o.runs, Some(5));
        assert!(o.wants(3) && !o.wants(2));
        assert!(Options::parse(&strings(&["--only", "8"])).is_err());
        assert!(Options::parse(&strings(&["--only", "7"])).is_ok());
        assert!(Options::parse(&strings(&["--runs", "0"])).is_err());
        assert!(Options::parse(&strings(&["--runs"])).is_err());
        assert!(Options::parse(&strings(&["--fast"])).is_err());
    }

    #[test]
    fn plans() {
        let full = Plan::new(&Options::default(), 2);
        assert_eq!(full.runs, 3);
        assert_eq!(full.exec_rates, vec![Some(400.0), Some(1600.0), None]);
        assert_eq!(full.exec_secs, 15.0);
        assert_eq!(full.latency_samples, 500);
        assert_eq!(full.syscall_calls, 1_000_000);
        let quick = Plan::new(
            &Options {
                quick: true,
                runs: Some(2),
                ..Options::default()
            },
            2,
        );
        assert_eq!(quick.runs, 2);
        assert!(quick.exec_secs < full.exec_secs);
        assert_eq!(quick.latency_samples, 100);
    }
}
