//! Forensic dumps of real processes (root): the dump holds the real executable even when it
//! was deleted or is a memfd, its environ and maps, and a manifest `sha256sum -c` accepts;
//! a hostile process name never leads a path out of DIR; a symlinked DIR is refused.
use std::{
    ffi::OsStr,
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use procwatch::{
    actions::dump::{self, DumpError, DumpLimits, DumpReport},
    alert::{self, Alert, SensorInfo, Trigger},
    config::Config,
    detect,
    process::{hash::sha256_file, merge::merge, table::Process},
    procfs::{
        Depth,
        sample::{self, Interest},
    },
    score,
    sensor::SensorKind,
};
use procwatch_tests::{TempDir, assert_valid_alert, eventually, require_root, scratch_base};

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(std::path::Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

/// A child this test started, killed and reaped on drop (also when an assertion fails).
struct Victim(std::process::Child);

impl Victim {
    fn spawn(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits until `/proc/<pid>/<file>` (a link when `link`) satisfies `pred`.
    fn wait_proc(&self, file: &str, link: bool, pred: impl Fn(&[u8]) -> bool) {
        let path = format!("/proc/{}/{file}", self.pid());
        let ok = eventually(Duration::from_secs(10), || {
            let bytes = if link {
                std::fs::read_link(&path).map(|p| p.into_os_string().into_encoded_bytes())
            } else {
                std::fs::read(&path)
            };
            bytes.is_ok_and(|b| pred(&b))
        });
        assert!(ok, "{path} never became what the test waits for");
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The alert the engine would build for `pid` from a full /proc sample.
fn alert_for(pid: u32) -> Alert {
    let s = sample::take(pid, Depth::Full, &Interest::none())
        .unwrap_or_else(|e| panic!("sample {pid}: {e}"));
    let mut p = Process::new(pid, SensorKind::Sweep);
    merge(&mut p, s, Instant::now());
    let cfg = Config::default();
    let verdict = score::score(detect::evaluate(&p, &cfg), 0.0, &cfg);
    let sensor = SensorInfo {
        name: SensorKind::Sweep,
        events_lost: 0,
        probes_missing: Vec::new(),
    };
    let mut a = alert::build(&p, &verdict, &Trigger::Sweep, None, sensor);
    // The id the action stage gives the alert before it acts (the dump carries it).
    a.id = 1;
    a
}

/// Start time of `pid` now (the dump names a process by pid and start time).
fn start_of(pid: u32) -> u64 {
    procwatch::procfs::stat::read_stat(pid)
        .unwrap_or_else(|e| panic!("stat {pid}: {e}"))
        .start_ticks
}

fn sha256_of(path: &Path) -> String {
    sha256_file(path, u64::MAX)
        .unwrap_or_else(|e| panic!("hash {}: {e}", path.display()))
        .digest()
        .unwrap_or_else(|| panic!("{} not hashed", path.display()))
        .to_string()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `sha256sum -c SHA256SUMS` in the dump directory, and its modes: 0700 and 0600.
fn assert_verified_and_private(report: &DumpReport) {
    let out = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&report.path)
        .output()
        .expect("run sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sha256sum -c failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().count(), report.files.len() - 1, "{text}");
    assert!(text.lines().all(|l| l.ends_with(": OK")), "{text}");
    assert_eq!(mode_of(&report.path), 0o700);
    for entry in std::fs::read_dir(&report.path).expect("ls dump") {
        let path = entry.expect("entry").path();
        assert_eq!(mode_of(&path), 0o600, "{}", path.display());
    }
}

fn file_sha(report: &DumpReport, name: &str) -> String {
    report
        .files
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#?}"))
        .sha256
        .clone()
}

/// Runs a copy of pw-actor with `args` and `env`, then deletes the copy: a `deleted_exe`
/// process, so its alert has a reason. Returns the victim, the copy's path and its sha256.
fn deleted_victim(
    work: &TempDir,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Victim, PathBuf, String) {
    let copy = work.copy_exe(&actor(), "pw-dump-victim");
    // The exe link shows the canonical path; the scratch base may hold `..`.
    let exe = std::fs::canonicalize(&copy).expect("canonicalize");
    let original = sha256_of(&exe);
    let victim = Victim::spawn(&exe, args, env);
    victim.wait_proc("exe", true, |l| l == exe.as_os_str().as_bytes());
    std::fs::remove_file(&exe).expect("delete the executable");
    victim.wait_proc("exe", true, |l| l.ends_with(b" (deleted)"));
    (victim, exe, original)
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn dump_holds_the_deleted_executable_its_environ_and_maps() {
    require_root!();
    let work = TempDir::new_in(&scratch_base(), "dump-deleted");
    let marker = [("PW_DUMP_MARKER", "canary-4242")];
    let (victim, exe, original) = deleted_victim(&work, &["sleep", "30"], &marker);

    let dir = work.0.join("dumps");
    let report = dump::dump_process(
        &dir,
        &alert_for(victim.pid()),
        start_of(victim.pid()),
        &DumpLimits::default(),
    )
    .expect("dump");
    assert!(report.skipped.is_empty(), "{:#?}", report.skipped);
    assert_eq!(mode_of(&dir), 0o700, "DIR created private");

    let copied = report.path.join("exe");
    assert_eq!(sha256_of(&copied), original, "the real, deleted executable");
    assert_eq!(file_sha(&report, "exe"), original);
    let environ = std::fs::read(report.path.join("environ")).expect("environ");
    assert!(
        environ
            .split(|&b| b == 0)
            .any(|v| v == b"PW_DUMP_MARKER=canary-4242"),
        "marker missing from environ"
    );
    let maps = std::fs::read_to_string(report.path.join("maps")).expect("maps");
    let deleted = format!("{} (deleted)", exe.display());
    assert!(maps.lines().any(|l| l.ends_with(&deleted)), "{maps}");
    let alert: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.path.join("alert.json")).expect("alert"))
            .expect("alert.json is JSON");
    assert_valid_alert(&alert);
    assert!(
        procwatch_tests::has_rule(&alert, "deleted_exe"),
        "{alert:#}"
    );
    assert_verified_and_private(&report);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn dump_of_a_memfd_process_holds_the_memfd_contents() {
    require_root!();
    let victim = Victim::spawn(&actor(), &["memfd-exec", "sleep", "30"], &[]);
    victim.wait_proc("exe", true, |l| l.starts_with(b"/memfd:"));
    let work = TempDir::new_in(&scratch_base(), "dump-memfd");
    let alert = alert_for(victim.pid());
    assert!(
        alert
            .exe
            .as_deref()
            .is_some_and(|e| e.starts_with("/memfd:"))
    );
    let report = dump::dump_process(
        &work.0.join("d"),
        &alert,
        start_of(alert.pid),
        &DumpLimits::default(),
    )
    .expect("dump");
    assert!(report.skipped.is_empty(), "{:#?}", report.skipped);
    assert_eq!(sha256_of(&report.path.join("exe")), sha256_of(&actor()));
    assert_verified_and_private(&report);
}

/// Every path under `root`, canonicalised.
fn walk(root: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(root).expect("ls") {
        let path = entry.expect("entry").path();
        out.push(std::fs::canonicalize(&path).expect("canonicalize"));
        if std::fs::symlink_metadata(&path).expect("lstat").is_dir() {
            walk(&path, out);
        }
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_hostile_name_stays_inside_dir_and_one_valid_record() {
    require_root!();
    // Newline, quote, an escape sequence, invalid UTF-8 and a path climb: 15 bytes of comm.
    let hostile: &[u8] = b"\n\"\x1b[2J\xff/../../x";
    assert!(hostile.len() <= 15);
    let hex: String = hostile.iter().map(|b| format!("{b:02x}")).collect();
    let work = TempDir::new_in(&scratch_base(), "dump-hostile");
    let (victim, _, _) = deleted_victim(&work, &["rename", &hex, "30"], &[]);
    victim.wait_proc("comm", false, |c| c.strip_suffix(b"\n") == Some(hostile));

    let dir = work.0.join("dumps");
    let alert = alert_for(victim.pid());
    assert_eq!(alert.name.as_bytes(), hostile);
    let report = dump::dump_process(&dir, &alert, start_of(alert.pid), &DumpLimits::default())
        .expect("dump");

    let root = std::fs::canonicalize(&dir).expect("canonicalize DIR");
    let entries: Vec<_> = std::fs::read_dir(&dir).expect("ls").collect();
    assert_eq!(entries.len(), 1, "one dump, nothing beside it");
    let name = report
        .path
        .file_name()
        .and_then(OsStr::to_str)
        .expect("an ASCII name");
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
        "{name:?}"
    );
    assert!(
        name.ends_with(&format!("-{}-____2J__.._.._x", victim.pid())),
        "{name}"
    );
    let mut paths = Vec::new();
    walk(&dir, &mut paths);
    assert!(paths.len() > 5, "{paths:?}");
    for p in &paths {
        assert!(
            p.starts_with(&root),
            "{} escapes {}",
            p.display(),
            root.display()
        );
    }

    let text = std::fs::read_to_string(report.path.join("alert.json")).expect("alert.json");
    assert_eq!(
        text.matches('\n').count(),
        1,
        "one record, one line: {text:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_valid_alert(&json);
    assert_eq!(json["name"], String::from_utf8_lossy(hostile).as_ref());
    let line = alert::terminal_line(&alert);
    assert!(!line.contains('\n') && !line.contains('\x1b'), "{line:?}");
    for file in ["NOTES", "fds"] {
        let t = std::fs::read(report.path.join(file)).expect("read");
        assert!(
            !t.iter().any(|&b| b == 0x1b || (b < 0x20 && b != b'\n')),
            "{file} holds control bytes"
        );
    }
    assert_verified_and_private(&report);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_symlinked_dir_is_refused_and_its_target_untouched() {
    require_root!();
    let victim = Victim::spawn(&actor(), &["sleep", "30"], &[]);
    victim.wait_proc("exe", true, |l| l == actor().as_os_str().as_bytes());
    let alert = alert_for(victim.pid());
    let work = TempDir::new_in(&scratch_base(), "dump-link");
    let target = work.0.join("elsewhere");
    std::fs::create_dir(&target).expect("mkdir");
    let link = work.0.join("dumps");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let limits = DumpLimits::default();
    for dir in [link.clone(), PathBuf::from(format!("{}/", link.display()))] {
        let err = dump::dump_process(&dir, &alert, start_of(alert.pid), &limits)
            .expect_err("a link is refused");
        assert!(matches!(err, DumpError::Symlink { .. }), "{err}");
    }
    assert_eq!(std::fs::read_dir(&target).expect("ls").count(), 0);
    // A dangling link: nothing is created where it points.
    let dangling = work.0.join("dangling");
    std::os::unix::fs::symlink(work.0.join("nowhere"), &dangling).expect("symlink");
    let err =
        dump::dump_process(&dangling, &alert, start_of(alert.pid), &limits).expect_err("refused");
    assert!(matches!(err, DumpError::Symlink { .. }), "{err}");
    assert!(!work.0.join("nowhere").exists());
    // World-writable (like /tmp itself): refused too.
    let shared = work.0.join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let err =
        dump::dump_process(&shared, &alert, start_of(alert.pid), &limits).expect_err("refused");
    assert!(matches!(err, DumpError::Writable { .. }), "{err}");
    assert_eq!(std::fs::read_dir(&shared).expect("ls").count(), 0);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn freeze_dump_thaw_a_live_process() {
    require_root!();
    let victim = Victim::spawn(&actor(), &["sleep", "30"], &[]);
    victim.wait_proc("exe", true, |l| l == actor().as_os_str().as_bytes());
    let pid = victim.pid();
    assert!(matches!(dump::freeze(pid), Ok(true)), "stopped");
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    assert!(state.contains(") T "), "{state}");
    let work = TempDir::new_in(&scratch_base(), "dump-frozen");
    let report = dump::dump_process(
        &work.0.join("d"),
        &alert_for(pid),
        start_of(pid),
        &DumpLimits::default(),
    )
    .expect("dump of a stopped process");
    assert!(report.skipped.is_empty(), "{:#?}", report.skipped);
    let status = std::fs::read_to_string(report.path.join("status")).expect("status");
    assert!(status.contains("State:\tT (stopped)"), "{status}");
    dump::thaw(pid).expect("thaw");
    assert!(eventually(Duration::from_secs(2), || !dump::is_stopped(
        pid
    )));
    for own in [1, std::process::id()] {
        assert!(matches!(
            dump::freeze(own),
            Err(dump::SignalError::Refused { .. })
        ));
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_process_gone_before_the_dump_leaves_alert_and_notes() {
    require_root!();
    let victim = Victim::spawn(&actor(), &["sleep", "30"], &[]);
    victim.wait_proc("exe", true, |l| l == actor().as_os_str().as_bytes());
    let pid = victim.pid();
    let alert = alert_for(pid);
    let start = start_of(pid);
    drop(victim); // killed and reaped
    let work = TempDir::new_in(&scratch_base(), "dump-gone");
    let report = dump::dump_process(&work.0.join("d"), &alert, start, &DumpLimits::default());
    if Path::new(&format!("/proc/{pid}")).exists() {
        return; // the pid was reused at once: nothing to check about a gone process
    }
    let report = report.expect("a dump, not an error");
    let names: Vec<&str> = report.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["alert.json", "NOTES", "SHA256SUMS"]);
    assert!(report.skipped.iter().any(|k| k.name == "exe"));
    let notes = std::fs::read_to_string(report.path.join("NOTES")).expect("notes");
    assert!(notes.contains("exe: the process is gone"), "{notes}");
    assert_verified_and_private(&report);
}
