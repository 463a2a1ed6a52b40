//! auditd as a peer: its own configuration in a scratch directory (log there, never rotated),
//! the rule set equivalent to procwatch's probes, and the kernel's audit state put back after.
//!
//! One kernel fact shapes this module: once audit has been enabled, every task forked later
//! gets an audit context and takes the slow system-call path, even with no rules and auditd
//! gone, until reboot. A `-a never,task` rule stops that for new tasks. So while the bench runs
//! without auditd, that rule is in place (the "no monitor" rows are measured on the fast path,
//! as on a machine that never ran auditd), and it is lifted only while auditd is measured.
use std::{
    cell::Cell,
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::measure;
use crate::sh::{self, Result};

/// The key every bench rule carries.
pub const KEY: &str = "pwbench";

/// What auditd needs to see what procwatch sees: execve, connect, ptrace, and every mprotect
/// (audit cannot filter on W+X, so it records all of them).
pub const RULE: &[&str] = &[
    "always,exit",
    "-F",
    "arch=b64",
    "-S",
    "execve",
    "-S",
    "connect",
    "-S",
    "ptrace",
    "-S",
    "mprotect",
    "-k",
    KEY,
];

const NEVER_TASK: &str = "never,task";

fn auditctl(args: &[&str]) -> Result {
    let mut cmd = Command::new("auditctl");
    cmd.args(args).stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run auditctl (is the auditd package installed?): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            sh::display(&cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn add_rule(rule: &[&str]) -> Result {
    auditctl(&[&["-a"], rule].concat())
}

fn delete_rule(rule: &[&str]) -> Result {
    auditctl(&[&["-d"], rule].concat())
}

/// `auditctl -s` as key/value pairs.
pub fn status() -> Result<BTreeMap<String, String>> {
    let text = sh::output(Command::new("auditctl").arg("-s"))
        .ok_or("`auditctl -s` failed: is the auditd package installed and are you root?")?;
    Ok(parse_status(&text))
}

pub fn parse_status(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

fn status_u64(s: &BTreeMap<String, String>, key: &str) -> Option<u64> {
    s.get(key)?.parse().ok()
}

/// `auditctl -l`, one rule per entry (empty for "No rules").
pub fn rules() -> Result<Vec<String>> {
    let text = sh::output(Command::new("auditctl").arg("-l")).ok_or("`auditctl -l` failed")?;
    Ok(parse_rules(&text))
}

pub fn parse_rules(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "No rules")
        .map(str::to_owned)
        .collect()
}

fn has_never_task(rules: &[String]) -> bool {
    rules
        .iter()
        .any(|r| r == "-a never,task" || r == "-a task,never")
}

/// The kernel's audit settings before the bench, put back by `Drop`.
#[derive(Debug)]
pub struct Baseline {
    settings: BTreeMap<String, String>,
    rules_before: Vec<String>,
    added_never_task: bool,
    /// Set once auditd ran: from then on new tasks get audit contexts unless `never,task`.
    pub auditd_ran: Cell<bool>,
    /// Why auditd cannot be measured, if so.
    pub unavailable: Option<String>,
}

impl Baseline {
    pub fn prepare() -> Baseline {
        let mut b = Baseline {
            settings: BTreeMap::new(),
            rules_before: Vec::new(),
            added_never_task: false,
            auditd_ran: Cell::new(false),
            unavailable: None,
        };
        let (settings, rules) = match status().and_then(|s| Ok((s, rules()?))) {
            Ok(x) => x,
            Err(e) => {
                b.unavailable = Some(e);
                return b;
            }
        };
        if let Some(pid) = status_u64(&settings, "pid").filter(|p| *p != 0) {
            b.unavailable = Some(format!(
                "auditd already runs (pid {pid}); the bench starts its own with its own rules: \
                 stop it first"
            ));
        }
        if rules.is_empty() {
            match add_rule(&[NEVER_TASK]) {
                Ok(()) => b.added_never_task = true,
                Err(e) => eprintln!("bench: warning: {e}"),
            }
        } else if !has_never_task(&rules) {
            eprintln!(
                "bench: warning: audit rules are loaded ({}); if audit was ever enabled since \
                 boot, every process pays audit's syscall slow path, the baselines too",
                rules.join("; ")
            );
        }
        b.settings = settings;
        b.rules_before = rules;
        b
    }

    fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }

    /// Puts enabled/failure/backlog settings back as they were.
    fn restore_settings(&self) -> Result {
        let mut args: Vec<&str> = Vec::new();
        for (flag, key) in [
            ("-e", "enabled"),
            ("-f", "failure"),
            ("-b", "backlog_limit"),
            ("--backlog_wait_time", "backlog_wait_time"),
        ] {
            if let Some(v) = self.setting(key) {
                args.extend([flag, v]);
            }
        }
        if args.is_empty() {
            return Ok(());
        }
        auditctl(&args)
    }

    /// For the report: how the audit state was handled.
    pub fn note(&self) -> String {
        if let Some(why) = &self.unavailable {
            return format!("auditd was not measured: {why}");
        }
        let mut note = String::from(
            "Once audit has been enabled, the kernel gives every task forked afterwards an \
             audit context, which puts it on the slower system-call path until reboot, rules \
             or not. So that the other rows are measured on the fast path (as on a machine \
             that never ran auditd), the rule `-a never,task` is loaded whenever auditd is not \
             being measured.",
        );
        if self.added_never_task && self.auditd_ran.get() {
            note += " It was left loaded at the end, keeping new tasks on the fast path \
                     (`auditctl -D` removes it).";
        } else if self.rules_before.len() == 1 && has_never_task(&self.rules_before) {
            note += " It was already loaded before the bench.";
        } else if !self.added_never_task {
            note += " The machine had other audit rules loaded before the bench; they were \
                     kept, so the baselines may include audit's slow path.";
        }
        note
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if self.settings.is_empty() {
            return;
        }
        if let Err(e) = self.restore_settings() {
            eprintln!("bench: warning: restoring the audit settings: {e}");
        }
        if self.added_never_task && !self.auditd_ran.get() {
            let _ = delete_rule(&[NEVER_TASK]);
        }
    }
}

/// A running auditd of ours with the bench rule loaded. `stop` (or `Drop`) removes the rule,
/// stops auditd and restores the kernel settings.
#[derive(Debug)]
pub struct Session<'a> {
    baseline: &'a Baseline,
    child: Option<Child>,
    pub pid: u32,
    pub kauditd: Vec<u32>,
    pub log: PathBuf,
    lost_at_start: u64,
    lifted_never_task: bool,
    rule_loaded: bool,
}

impl<'a> Session<'a> {
    pub fn start(baseline: &'a Baseline, dir: &Path) -> Result<Session<'a>> {
        if let Some(why) = &baseline.unavailable {
            return Err(why.clone());
        }
        let log = dir.join("audit.log");
        write_config(dir, &log)?;
        let mut s = Session {
            baseline,
            child: None,
            pid: 0,
            kauditd: measure::pids_by_comm("kauditd"),
            log,
            lost_at_start: 0,
            lifted_never_task: false,
            rule_loaded: false,
        };
        if has_never_task(&rules()?) {
            delete_rule(&[NEVER_TASK])?;
            s.lifted_never_task = true;
        }
        // Debian's /etc/audit/rules.d/audit.rules settings.
        auditctl(&["-b", "8192", "--backlog_wait_time", "60000", "-f", "1"])?;
        let out = fs::File::create(dir.join("auditd.out"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot dup a file handle: {e}"))?;
        let mut cmd = Command::new("auditd");
        cmd.arg("-n")
            .arg("-c")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        super::monitors::own_group(&mut cmd, libc::SIGTERM);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start auditd (install the auditd package): {e}"))?;
        s.pid = child.id();
        s.child = Some(child);
        baseline.auditd_ran.set(true);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(c) = s.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                let said = fs::read_to_string(dir.join("auditd.out")).unwrap_or_default();
                return Err(format!("auditd exited at start ({st}): {}", said.trim()));
            }
            let st = status()?;
            if status_u64(&st, "pid") == Some(u64::from(s.pid)) {
                s.lost_at_start = status_u64(&st, "lost").unwrap_or(0);
                break;
            }
            if Instant::now() > deadline {
                return Err("auditd did not register with the kernel within 15 s".into());
            }
            thread::sleep(Duration::from_millis(50));
        }
        add_rule(RULE)?;
        s.rule_loaded = true;
        Ok(s)
    }

    /// Stops auditd and returns how many records the kernel lost meanwhile.
    pub fn stop(&mut self) -> Result<u64> {
        let mut errors = Vec::new();
        if self.rule_loaded {
            if let Err(e) = delete_rule(RULE) {
                errors.push(e);
            }
            self.rule_loaded = false;
        }
        // Let auditd take what kauditd still holds.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut lost = 0;
        while let Ok(st) = status() {
            lost = status_u64(&st, "lost")
                .unwrap_or(0)
                .saturating_sub(self.lost_at_start);
            if status_u64(&st, "backlog") == Some(0) || Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        if let Some(mut child) = self.child.take()
            && let Err(e) =
                super::monitors::terminate(&mut child, libc::SIGTERM, Duration::from_secs(20))
        {
            errors.push(format!("auditd: {e}"));
        }
        if self.lifted_never_task {
            if let Err(e) = add_rule(&[NEVER_TASK]) {
                errors.push(e);
            }
            self.lifted_never_task = false;
        }
        if let Err(e) = self.baseline.restore_settings() {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(lost)
        } else {
            Err(errors.join("; "))
        }
    }

    /// auditd itself and the kauditd kernel thread: where audit's work is charged.
    pub fn cpu_pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid];
        pids.extend(&self.kauditd);
        pids
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if (self.child.is_some() || self.rule_loaded || self.lifted_never_task)
            && let Err(e) = self.stop()
        {
            eprintln!("bench: warning: cleaning up auditd: {e}");
        }
    }
}

/// The system's auditd.conf with the log in `dir`, never rotated or suspended.
fn write_config(dir: &Path, log: &Path) -> Result {
    let system = "/etc/audit/auditd.conf";
    let text = fs::read_to_string(system)
        .map_err(|e| format!("cannot read {system} (install the auditd package): {e}"))?;
    let conf = bench_config(&text, log);
    let path = dir.join("auditd.conf");
    fs::write(&path, conf).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // auditd refuses a config that others can write.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

pub fn bench_config(system: &str, log: &Path) -> String {
    let overrides = [
        ("log_file", log.display().to_string()),
        ("max_log_file_action", "IGNORE".into()),
        ("space_left_action", "IGNORE".into()),
        ("admin_space_left_action", "IGNORE".into()),
        ("disk_full_action", "IGNORE".into()),
        ("disk_error_action", "IGNORE".into()),
    ];
    let mut out: Vec<String> = system
        .lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            !overrides.iter().any(|(k, _)| *k == key)
        })
        .map(str::to_owned)
        .collect();
    out.extend(overrides.iter().map(|(k, v)| format!("{k} = {v}")));
    out.join("\n") + "\n"
}

/// The fields of one audit record line (`key=value`, quotes removed); the ENRICHED part after
/// the 0x1d separator is dropped.
pub fn record_fields(line: &str) -> BTreeMap<&str, &str> {
    let raw = line.split('\u{1d}').next().unwrap_or(line);
    raw.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k, v.trim_matches('"')))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_rules() {
        let s =
            parse_status("enabled 1\nfailure 1\npid 42\nlost 7\nloginuid_immutable 0 unlocked\n");
        assert_eq!(status_u64(&s, "pid"), Some(42));
        assert_eq!(status_u64(&s, "lost"), Some(7));
        assert!(parse_rules("No rules\n").is_empty());
        let r = parse_rules("-a never,task\n-w /etc -p wa\n");
        assert_eq!(r.len(), 2);
        assert!(has_never_task(&r));
    }

    #[test]
    fn config_overrides_replace_the_system_values() {
        let conf = bench_config(
            "log_file = /var/log/audit/audit.log\nflush = INCREMENTAL_ASYNC\nmax_log_file_action = ROTATE\n",
            Path::new("/tmp/x/audit.log"),
        );
        assert!(conf.contains("log_file = /tmp/x/audit.log\n"));
        assert!(conf.contains("flush = INCREMENTAL_ASYNC\n"));
        assert!(conf.contains("max_log_file_action = IGNORE\n"));
        assert!(!conf.contains("ROTATE"));
        assert!(!conf.contains("/var/log"));
    }

    #[test]
    fn audit_record_fields() {
        let line = "type=SYSCALL msg=audit(1.1:868): arch=c000003e syscall=59 success=yes \
                    exit=0 ppid=15691 pid=15896 comm=\"tail\" exe=\"/usr/bin/tail\" \
                    key=\"pwbench\"\u{1d}ARCH=x86_64 SYSCALL=execve";
        let f = record_fields(line);
        assert_eq!(f.get("type"), Some(&"SYSCALL"));
        assert_eq!(f.get("syscall"), Some(&"59"));
        assert_eq!(f.get("ppid"), Some(&"15691"));
        assert_eq!(f.get("exe"), Some(&"/usr/bin/tail"));
        assert_eq!(f.get("key"), Some(&"pwbench"));
        assert_eq!(f.get("SYSCALL"), None);
    }
}
