//! What the soak reads every 10 s: procwatch's resources from /proc, the generators' counts,
//! and the alerts that reached the JSONL file and rsyslogd (read as they grow).
use std::{
    fs,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use crate::bench::json::Json;

/// Alerts on the load's own offending processes, by the rule that fired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds {
    /// The /tmp copy of /bin/true.
    pub tmp_exe: u64,
    /// The W+X children.
    pub wx_mem: u64,
    /// The children that connect to the suspicious port.
    pub suspicious_port: u64,
}

impl Kinds {
    pub fn minus(&self, earlier: &Kinds) -> Kinds {
        Kinds {
            tmp_exe: self.tmp_exe.saturating_sub(earlier.tmp_exe),
            wx_mem: self.wx_mem.saturating_sub(earlier.wx_mem),
            suspicious_port: self.suspicious_port.saturating_sub(earlier.suspicious_port),
        }
    }
}

/// One reading; counters are totals since the load started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the load started.
    pub at: f64,
    /// procwatch's VmRSS.
    pub rss_kib: u64,
    /// Entries of /proc/<procwatch>/fd: the fewest of a few readings in a row.
    pub fds: u64,
    /// The most of those readings.
    pub fds_max: u64,
    /// procwatch's utime + stime (all threads, live and exited), clock ticks.
    pub cpu_ticks: u64,
    /// Execs the generators made.
    pub execs: u64,
    /// Connects the connect generator made.
    pub connects: u64,
    /// Tasks created on the whole machine (`processes` of /proc/stat; threads included).
    pub tasks: u64,
    /// Alerts in the JSONL file.
    pub alerts: u64,
    pub ours: Kinds,
    /// procwatch's messages rsyslogd wrote out.
    pub syslog: u64,
    /// Events procwatch has reported lost (its last "events lost" warning).
    pub lost: u64,
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// What the open descriptors of `pid` point to, counted by kind (`socket`, `bpf-map`, a
/// file's path, ...), most first.
pub fn fd_kinds(pid: u32) -> Vec<(String, u64)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    for entry in dir.filter_map(|e| e.ok()) {
        if let Ok(target) = fs::read_link(entry.path()) {
            *kinds.entry(fd_kind(&target.to_string_lossy())).or_default() += 1;
        }
    }
    let mut out: Vec<(String, u64)> = kinds.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// `socket:[123]` → `socket`, `anon_inode:bpf-map` → `bpf-map`; paths stay as they are.
fn fd_kind(target: &str) -> String {
    if let Some(rest) = target.strip_prefix("anon_inode:") {
        return rest.trim_matches(|c| c == '[' || c == ']').to_owned();
    }
    match target.split_once(":[") {
        Some((kind, _)) if !target.starts_with('/') => kind.to_owned(),
        _ => target.to_owned(),
    }
}

/// Tasks created since boot (`processes` in /proc/stat).
pub fn machine_tasks() -> Option<u64> {
    parse_processes(&fs::read_to_string("/proc/stat").ok()?)
}

fn parse_processes(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("processes "))?
        .trim()
        .parse()
        .ok()
}

/// The running total of lost events in one of procwatch's "events lost" warnings
/// (`... lost_total=N ...`).
pub fn lost_total_in(line: &str) -> Option<u64> {
    if !line.contains("events lost") {
        return None;
    }
    let rest = &line[line.find("lost_total=")? + "lost_total=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The complete lines appended to a file since the last call (a line still being written
/// waits for its newline).
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    pub fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_owned(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// New complete lines; none while the file does not exist.
    pub fn lines(&mut self) -> Vec<String> {
        let Ok(mut f) = fs::File::open(&self.path) else {
            return Vec::new();
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(last_newline) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_newline + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        String::from_utf8_lossy(&done)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Alerts read so far, from the JSONL file or from rsyslogd's copy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AlertCount {
    /// Complete alerts (`procwatch.alert/v1` JSON objects).
    pub alerts: u64,
    /// Lines that were not one.
    pub malformed: u64,
    pub ours: Kinds,
}

/// The executables whose alerts are the load's own.
#[derive(Debug, Clone)]
pub struct OurExes {
    /// The /tmp copy of /bin/true (`tmp_exe`).
    pub payload: String,
    /// The xtask binary that the W+X and dialling children run.
    pub worker: String,
}

impl AlertCount {
    /// Counts one alert given as JSON text.
    pub fn add(&mut self, text: &str, ours: &OurExes) {
        let alert = match Json::parse(text) {
            Ok(a) if a.get("schema").and_then(Json::as_str) == Some("procwatch.alert/v1") => a,
            _ => {
                self.malformed += 1;
                return;
            }
        };
        self.alerts += 1;
        let names = |path: &str| {
            let is = |j: Option<&Json>| j.and_then(Json::as_str) == Some(path);
            is(alert.get("exe")) || is(alert.path(&["trigger", "filename"]))
        };
        let has = |rule: &str| match alert.get("reasons") {
            Some(Json::Arr(reasons)) => reasons
                .iter()
                .any(|r| r.get("rule").and_then(Json::as_str) == Some(rule)),
            _ => false,
        };
        if names(&ours.payload) && has("tmp_exe") {
            self.ours.tmp_exe += 1;
        }
        if names(&ours.worker) {
            if has("wx_mem") {
                self.ours.wx_mem += 1;
            }
            if has("suspicious_port") {
                self.ours.suspicious_port += 1;
            }
        }
    }
}

/// The JSON of one of procwatch's messages in rsyslogd's output (`app|msgid|msg` lines);
/// `None` for other programs' messages.
pub fn syslog_alert(line: &str) -> Option<&str> {
    let mut parts = line.splitn(3, '|');
    let (app, msgid, msg) = (parts.next()?, parts.next()?, parts.next()?);
    (app == "procwatch" && msgid == "alert").then(|| msg.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> OurExes {
        OurExes {
            payload: "/tmp/s/soak-payload".into(),
            worker: "/w/target/release/xtask".into(),
        }
    }

    #[test]
    fn counts_alerts_by_kind_and_malformed_lines() {
        let mut c = AlertCount::default();
        let alert = |exe: &str, rule: &str| {
            format!(
                r#"{{"schema":"procwatch.alert/v1","exe":{exe},"trigger":{{"filename":"/tmp/s/soak-payload"}},"reasons":[{{"rule":"{rule}"}}]}}"#
            )
        };
        c.add(&alert("null", "tmp_exe"), &ours());
        c.add(&alert("\"/w/target/release/xtask\"", "wx_mem"), &ours());
        c.add(
            &alert("\"/w/target/release/xtask\"", "suspicious_port"),
            &ours(),
        );
        c.add(&alert("\"/usr/bin/other\"", "wx_mem"), &ours());
        c.add(
            r#"{"schema":"procwatch.alert/v1","exe":"/x","reasons":[]"#,
            &ours(),
        );
        c.add(r#"{"schema":"other"}"#, &ours());
        assert_eq!(c.alerts, 4);
        assert_eq!(c.malformed, 2);
        // The payload named by the trigger counts (the process was gone before /proc was read).
        assert_eq!(
            c.ours,
            Kinds {
                tmp_exe: 1,
                wx_mem: 1,
                suspicious_port: 1
            }
        );
    }

    #[test]
    fn tail_returns_complete_lines_once() {
        let dir = std::env::temp_dir().join(format!("xtask-soak-tail-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("f");
        let mut t = Tail::new(&path);
        assert!(t.lines().is_empty());
        fs::write(&path, "a\nb\npart").expect("write");
        assert_eq!(t.lines(), ["a", "b"]);
        assert!(t.lines().is_empty());
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(&mut f, b"ial\nc\n").expect("append");
        assert_eq!(t.lines(), ["partial", "c"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn proc_and_log_parsing() {
        assert_eq!(
            parse_processes("cpu  1 2 3\nctxt 99\nprocesses 123456\nprocs_running 2\n"),
            Some(123_456)
        );
        assert_eq!(parse_processes("cpu 1\n"), None);
        let warn = "2026-12-02T04:00:00Z  WARN procwatch::commands::monitor: events lost: the \
                    sensor delivered fewer events lost=12 lost_total=345 kernel_lost={\"exec\": 3}";
        assert_eq!(lost_total_in(warn), Some(345));
        assert_eq!(lost_total_in("INFO monitoring lost_total=3"), None);
        assert_eq!(
            syslog_alert("procwatch|alert| {\"a\":1}"),
            Some("{\"a\":1}")
        );
        assert_eq!(syslog_alert("probe|ready|x"), None);
        assert_eq!(syslog_alert("procwatch|alert"), None);
        assert!(fd_count(std::process::id()).is_some_and(|n| n >= 3));
        assert_eq!(fd_kind("socket:[4242]"), "socket");
        assert_eq!(fd_kind("pipe:[7]"), "pipe");
        assert_eq!(fd_kind("anon_inode:bpf-map"), "bpf-map");
        assert_eq!(fd_kind("anon_inode:[eventpoll]"), "eventpoll");
        assert_eq!(fd_kind("/proc/123/net/tcp6"), "/proc/123/net/tcp6");
        let mine = fd_kinds(std::process::id());
        assert!(mine.iter().map(|(_, n)| n).sum::<u64>() >= 3, "{mine:?}");
        assert!(fd_count(u32::MAX).is_none());
    }
}
