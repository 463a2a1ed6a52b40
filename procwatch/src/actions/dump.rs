//! Forensic dumps (`--dump DIR`): for each alert, a directory
//! `DIR/<utc-time>-<pid>-<safe-name>/` with what the process was at that moment.
//!
//! Public API:
//! - [`dump_process`] → [`DumpReport`] (serialisable, for the log or the alert) or
//!   [`DumpError`]; [`DumpLimits`] comes from the config's `dump:` section.
//! - [`freeze`], [`thaw`], [`is_stopped`] ([`SignalError`]): SIGSTOP/SIGCONT through a
//!   pidfd, for freeze → dump → kill, so nothing changes under the dump.
//! - [`safe_name`], [`subdir_name`]: how a process name becomes part of a path.
//!
//! # Files of a dump
//! | file | content |
//! | --- | --- |
//! | `alert.json` | the alert, one JSON line |
//! | `cmdline`, `environ`, `status`, `maps` | raw bytes of `/proc/PID/<file>`, as the kernel gives them |
//! | `fds` | one line per fd, `N -> target`, the target escaped (control bytes as `\xNN`) |
//! | `net` | its TCP/UDP sockets from its own network namespace: `fd proto local remote state inode` |
//! | `exe` | the executable, read through `/proc/PID/exe` (works when deleted, or a memfd) |
//! | `NOTES` | what was skipped and why, the limits, whether the process exited meanwhile |
//! | `SHA256SUMS` | `<sha256>  <name>` of every other file: `sha256sum -c SHA256SUMS` verifies |
//!
//! A file is whole or absent: one that failed or did not fit is removed and listed in `NOTES`
//! and [`DumpReport::skipped`].
//!
//! # Safety policy (hostile local users, hostile processes)
//! - `DIR` is opened with `O_DIRECTORY|O_NOFOLLOW` (trailing slashes removed first: with one,
//!   the kernel would follow a link). Missing: created with `mkdir` mode 0700 (only the last
//!   component: its parent must exist). Refused when it is a symbolic link (even to a
//!   directory), not a directory, owned by another uid than procwatch's effective uid, or
//!   group- or world-writable (mode & 022: `/tmp` itself is refused). Readable by others is
//!   allowed: every dump inside is 0700. The parents of `DIR` are trusted: put it where only
//!   root can write, such as `/var/lib/procwatch/dumps`.
//! - Everything after that is relative to the opened `DIR` descriptor (`mkdirat`, `openat`),
//!   so swapping `DIR` for a link afterwards redirects nothing.
//! - The per-alert directory is created with `mkdirat` mode 0700 and never reused: when the
//!   name is taken, `-1` .. `-99` are tried, then the dump fails.
//! - Files are created with `O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY|O_CLOEXEC`, mode 0600 (modes
//!   are set with fchmod, whatever the umask).
//! - Names: the process name is reduced to `[A-Za-z0-9._-]` ([`safe_name`]); file names are
//!   fixed. No path is ever built from the process's data.
//! - Size: `max_total_bytes` caps all of `DIR` (regular files in it and one level down). A
//!   dump starts only if at least [`RESERVE_BYTES`] are left ([`DumpError::Full`] otherwise);
//!   a file that does not fit in what is left is skipped, later smaller ones may still fit,
//!   and the reserve keeps room for `NOTES` and `SHA256SUMS`. The executable is copied only
//!   up to `max_exe_bytes`; a larger one is recorded in `NOTES` by size and sha256 (hashed up
//!   to [`HASH_ONLY_MAX`] bytes, so a huge sparse file cannot stall procwatch).
//! - A process that exits mid-dump is no error: what was read is kept, the rest is listed as
//!   skipped. The process is named by pid and start time: `/proc/<pid>` is opened once and
//!   its start time checked, so a recycled pid is never dumped in the flagged one's place.
use std::{
    fmt::Write as _,
    fs::File,
    io::Read,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    alert::Alert,
    config,
    procfs::ReadError,
    text::{serialize_path, terminal_safe},
};

mod collect;
mod fs;
mod name;

pub use super::pidfd::{FREEZE_WAIT, SignalError, freeze, is_stopped, thaw};
pub use name::{SAFE_NAME_MAX, safe_name, subdir_name};

/// Bytes of the total budget kept for `NOTES` and `SHA256SUMS`, so they are always written.
pub const RESERVE_BYTES: u64 = 16 * 1024;
/// Largest executable hashed when it is too large to copy.
pub const HASH_ONLY_MAX: u64 = 1 << 30;
/// Longest `NOTES` (within the reserve, with room left for `SHA256SUMS`).
const NOTES_MAX: usize = 12 * 1024;
/// The `/proc/PID` files copied as they are.
const PROC_FILES: [&str; 4] = ["cmdline", "environ", "status", "maps"];
/// Every artifact read from the process, for the notes when it is gone before the dump.
const PROCESS_ARTIFACTS: [&str; 7] = ["cmdline", "environ", "status", "maps", "fds", "net", "exe"];

/// Size limits of a dump (from the config's `dump:` section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpLimits {
    /// Largest executable copied; a larger one is recorded by size and hash only.
    pub max_exe_bytes: u64,
    /// Most bytes the whole dump directory may hold.
    pub max_total_bytes: u64,
}

impl From<&config::Dump> for DumpLimits {
    fn from(d: &config::Dump) -> Self {
        Self {
            max_exe_bytes: d.max_exe_bytes,
            max_total_bytes: d.max_total_bytes,
        }
    }
}

impl Default for DumpLimits {
    fn default() -> Self {
        Self::from(&config::Dump::default())
    }
}

/// One file written into a dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DumpedFile {
    /// File name inside the dump directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256, lowercase hex.
    pub sha256: String,
}

/// One artifact not in a dump, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Artifact (file) name.
    pub name: String,
    /// Why it is missing.
    pub reason: String,
}

/// What a dump holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DumpReport {
    /// The per-alert directory (`DIR` joined with its name).
    #[serde(serialize_with = "serialize_path")]
    pub path: PathBuf,
    /// Files written, in order (`SHA256SUMS` last).
    pub files: Vec<DumpedFile>,
    /// Artifacts missing, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Why no dump was made.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// `DIR` is a symbolic link.
    #[error("dump directory {}: is a symbolic link; refusing to use it", .path.display())]
    Symlink {
        /// `DIR`.
        path: PathBuf,
    },
    /// `DIR` exists and is not a directory.
    #[error("dump directory {}: exists and is not a directory", .path.display())]
    NotDirectory {
        /// `DIR`.
        path: PathBuf,
    },
    /// `DIR` belongs to another user, who could change it under procwatch.
    #[error("dump directory {}: owned by uid {uid}, not {expected}; refusing to use it", .path.display())]
    WrongOwner {
        /// `DIR`.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// procwatch's effective uid.
        expected: u32,
    },
    /// `DIR` is group- or world-writable.
    #[error("dump directory {}: mode {mode:o} is group- or world-writable; refusing to use it", .path.display())]
    Writable {
        /// `DIR`.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `DIR` already holds `max_total_bytes` (less the reserve).
    #[error("dump directory {} is full: {used} bytes of max_total_bytes {max}", .path.display())]
    Full {
        /// `DIR`.
        path: PathBuf,
        /// Bytes in it.
        used: u64,
        /// The limit.
        max: u64,
    },
    /// Every candidate name for the per-alert directory was taken.
    #[error("dump directory {}: no free name for {base}", .path.display())]
    NoFreeName {
        /// `DIR`.
        path: PathBuf,
        /// The name tried first.
        base: String,
    },
    /// An operation on `DIR` failed.
    #[error("dump directory {}: {what}: {source}", .path.display())]
    Io {
        /// `DIR`.
        path: PathBuf,
        /// Which operation.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Which process a dump is of, beyond its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// Start time in clock ticks; 0 (unknown) means no process is read.
    pub start_ticks: u64,
    /// The executable file it runs, when known.
    pub exe: Option<crate::identity::ExeId>,
}

impl From<u64> for Expect {
    fn from(start_ticks: u64) -> Self {
        Self {
            start_ticks,
            exe: None,
        }
    }
}

/// Dumps the process of `alert`, the one `expect` describes, into a new directory
/// under `dir` (see the module docs for the files and the safety policy). Errors only when no
/// dump directory could be made; a missing artifact is in [`DumpReport::skipped`]. When the
/// pid now names another process (or `start_ticks` is 0, unknown), nothing is read from it:
/// the dump holds the alert and the notes saying why.
pub fn dump_process(
    dir: &Path,
    alert: &Alert,
    expect: impl Into<Expect>,
    limits: &DumpLimits,
) -> Result<DumpReport, DumpError> {
    let expect = expect.into();
    let root = fs::open_root(dir)?;
    let used = fs::dir_usage(&root).map_err(|source| DumpError::Io {
        path: dir.to_path_buf(),
        what: "measure",
        source,
    })?;
    let left = limits.max_total_bytes.saturating_sub(used);
    if left < RESERVE_BYTES {
        return Err(DumpError::Full {
            path: dir.to_path_buf(),
            used,
            max: limits.max_total_bytes,
        });
    }
    let base = subdir_name(chrono::Utc::now(), alert.pid, alert.name.as_encoded_bytes());
    let (name, sub) = fs::make_subdir(&root, dir, &base)?;
    let mut w = Writer::new(sub, left - RESERVE_BYTES);
    w.put_alert(alert);
    match collect::Target::open(alert.pid) {
        // Every file is read through this handle: checked once, it is that process for good.
        Ok(target) if !target.is(&expect) => {
            let why = if expect.start_ticks == 0 {
                "start time unknown: the pid cannot be tied to the flagged process".to_string()
            } else {
                format!(
                    "pid {} now names another process (or another program than the one \
                     flagged)",
                    alert.pid
                )
            };
            for artifact in PROCESS_ARTIFACTS {
                w.skip(artifact, why.clone());
            }
        }
        Ok(target) => w.collect(&target, limits),
        Err(e) => {
            let why = collect::reason(&e);
            for artifact in PROCESS_ARTIFACTS {
                w.skip(artifact, why.clone());
            }
        }
    }
    Ok(w.finish(dir.join(name), alert, limits, used))
}

/// Writes the files of one dump, keeping the budget and the lists of the report.
struct Writer {
    dir: OwnedFd,
    left: u64,
    files: Vec<DumpedFile>,
    skipped: Vec<Skipped>,
    notes: Vec<String>,
}

impl Writer {
    fn new(dir: OwnedFd, budget: u64) -> Self {
        Self {
            dir,
            left: budget,
            files: Vec::new(),
            skipped: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn skip(&mut self, name: &str, reason: String) {
        self.skipped.push(Skipped {
            name: name.to_string(),
            reason,
        });
    }

    /// Copies `src` into the new file `name`: at most `own_cap` bytes and what is left.
    fn put(&mut self, name: &str, src: &mut dyn Read, own_cap: u64) {
        let c = match fs::c_name(name.as_bytes()) {
            Ok(c) => c,
            Err(e) => return self.skip(name, e.to_string()),
        };
        let cap = own_cap.min(self.left);
        match fs::write_capped(&self.dir, &c, src, cap) {
            Ok(w) => {
                self.left = self.left.saturating_sub(w.bytes);
                self.files.push(DumpedFile {
                    name: name.to_string(),
                    bytes: w.bytes,
                    sha256: w.sha256,
                });
            }
            Err(fs::CopyError::TooLarge) if cap < own_cap => self.skip(
                name,
                format!("more than the {cap} bytes left of max_total_bytes"),
            ),
            Err(fs::CopyError::TooLarge) => {
                self.skip(name, format!("more than {cap} bytes (grew while copied)"));
            }
            Err(fs::CopyError::Read(e)) => self.skip(name, format!("reading it failed: {e}")),
            Err(fs::CopyError::Write(e)) => self.skip(name, format!("writing it failed: {e}")),
        }
    }

    fn put_bytes(&mut self, name: &str, bytes: &[u8]) {
        self.put(name, &mut &bytes[..], u64::MAX);
    }

    fn put_result(&mut self, name: &str, r: Result<Vec<u8>, ReadError>) {
        match r {
            Ok(bytes) => self.put_bytes(name, &bytes),
            Err(e) => self.skip(name, collect::reason(&e)),
        }
    }

    /// The alert as one JSON line: the same record the JSONL sink writes.
    fn put_alert(&mut self, alert: &Alert) {
        match serde_json::to_vec(alert) {
            Ok(mut line) => {
                line.push(b'\n');
                self.put_bytes("alert.json", &line);
            }
            Err(e) => self.skip("alert.json", format!("serialising failed: {e}")),
        }
    }

    fn collect(&mut self, t: &collect::Target, limits: &DumpLimits) {
        // Opened first: an open executable stays readable even if the process exits while
        // the other files are read.
        let exe = t.exe();
        for name in PROC_FILES {
            match t.file(name) {
                Ok(mut f) => self.put(name, &mut f, u64::MAX),
                Err(e) => self.skip(name, collect::reason(&e)),
            }
        }
        self.put_result("fds", t.fds_text());
        self.put_result("net", t.net_text());
        self.put_exe(exe, limits.max_exe_bytes);
        if !t.alive() {
            self.notes.push(
                "the process exited during the dump: files read after that may be empty".into(),
            );
        }
    }

    /// Copies the executable, or records its size and hash when it is over a limit.
    fn put_exe(&mut self, exe: Result<File, ReadError>, max_exe: u64) {
        let mut file = match exe {
            Ok(f) => f,
            Err(e) => return self.skip("exe", collect::reason(&e)),
        };
        let size = match file.metadata() {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return self.skip("exe", "not a regular file".into()),
            Err(e) => return self.skip("exe", format!("fstat failed: {e}")),
        };
        let why = if size > max_exe {
            format!("{size} bytes, more than max_exe_bytes ({max_exe})")
        } else if size > self.left {
            format!(
                "{size} bytes, more than the {} bytes left of max_total_bytes",
                self.left
            )
        } else {
            return self.put("exe", &mut file, max_exe);
        };
        let digest = digest_only(&mut file, size);
        self.skip("exe", format!("{why}: not copied; sha256 {digest}"));
    }

    /// Writes `NOTES` and `SHA256SUMS` (in the reserve) and returns the report.
    fn finish(
        mut self,
        path: PathBuf,
        alert: &Alert,
        limits: &DumpLimits,
        used: u64,
    ) -> DumpReport {
        self.left = self.left.saturating_add(RESERVE_BYTES);
        let notes = self.notes_text(alert, limits, used);
        self.put_bytes("NOTES", notes.as_bytes());
        let sums = self.sums_text();
        self.put_bytes("SHA256SUMS", sums.as_bytes());
        DumpReport {
            path,
            files: self.files,
            skipped: self.skipped,
        }
    }

    fn notes_text(&self, alert: &Alert, limits: &DumpLimits, used: u64) -> String {
        let name = terminal_safe(alert.name.as_encoded_bytes());
        let mut s = format!(
            "procwatch dump of pid {} ({name}) for the alert of {}\n\
             limits: max_exe_bytes {}, max_total_bytes {} ({used} bytes in the dump directory before)\n\
             skipped:\n",
            alert.pid,
            terminal_safe(alert.timestamp.as_bytes()),
            limits.max_exe_bytes,
            limits.max_total_bytes,
        );
        if self.skipped.is_empty() {
            s.push_str("  (none)\n");
        }
        for k in &self.skipped {
            let _ = writeln!(s, "  {}: {}", k.name, terminal_safe(k.reason.as_bytes()));
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {}", terminal_safe(n.as_bytes()));
        }
        if s.len() > NOTES_MAX {
            let mut end = NOTES_MAX;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push_str("\n[cut]\n");
        }
        s
    }

    /// `sha256sum` format: hash, two spaces (text mode), name.
    fn sums_text(&self) -> String {
        self.files
            .iter()
            .map(|f| format!("{}  {}\n", f.sha256, f.name))
            .collect()
    }
}

/// sha256 of an executable too large to copy (bounded by [`HASH_ONLY_MAX`]).
fn digest_only(file: &mut File, size: u64) -> String {
    if size > HASH_ONLY_MAX {
        return format!("not computed (over {HASH_ONLY_MAX} bytes)");
    }
    match fs::hash_capped(file, HASH_ONLY_MAX) {
        Ok(Some(d)) => d,
        Ok(None) => format!("not computed (grew over {HASH_ONLY_MAX} bytes)"),
        Err(e) => format!("not computed: {e}"),
    }
}

/// Helpers shared by the dump module's tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::{os::unix::fs::PermissionsExt, path::PathBuf};

    /// A private (0700) scratch directory for one test, removed on drop.
    pub(crate) struct Scratch(pub(crate) PathBuf);

    impl Scratch {
        /// Creates it fresh under the system temp dir.
        pub(crate) fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("pw-dump-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir(&p).expect("mkdir scratch");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).expect("chmod");
            Self(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Permission bits of `p` (not following a symlink).
    pub(crate) fn mode_of(p: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(p)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::{
        alert::{SensorInfo, Trigger},
        process::{hash::hash_exe_of_pid, table::Process},
        score::Verdict,
        sensor::SensorKind,
    };

    use super::test_support::Scratch;

    fn alert_for(pid: u32, name: &[u8]) -> Alert {
        let mut p = Process::new(pid, SensorKind::Sweep);
        p.name = crate::text::os_from_bytes(name);
        let verdict = Verdict::default();
        let sensor = SensorInfo {
            name: SensorKind::Sweep,
            events_lost: 0,
            probes_missing: Vec::new(),
        };
        crate::alert::build(&p, &verdict, &Trigger::Sweep, None, sensor)
    }

    fn own_start() -> u64 {
        crate::procfs::stat::read_stat(std::process::id())
            .expect("own stat")
            .start_ticks
    }

    #[test]
    fn a_pid_with_another_start_time_is_not_dumped() {
        let s = Scratch::new("reused");
        let me = std::process::id();
        for start in [own_start() + 1, 0] {
            let report = dump_process(
                &s.0.join("d"),
                &alert_for(me, b"x"),
                start,
                &DumpLimits::default(),
            )
            .expect("dump");
            assert_eq!(names(&report.files), ["alert.json", "NOTES", "SHA256SUMS"]);
            assert_eq!(report.skipped.len(), PROCESS_ARTIFACTS.len());
        }
    }

    fn names(files: &[DumpedFile]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    use super::test_support::mode_of;

    #[test]
    fn dumps_this_process_with_a_verifiable_manifest() {
        let s = Scratch::new("self");
        let dir = s.0.join("dumps");
        let me = std::process::id();
        // A 1-byte exe cap: the executable is recorded by hash, not copied.
        let limits = DumpLimits {
            max_exe_bytes: 1,
            ..DumpLimits::default()
        };
        let report =
            dump_process(&dir, &alert_for(me, b"x/../\n\x1b"), own_start(), &limits).expect("dump");
        let sub = report.path.clone();
        let sub_name = sub
            .file_name()
            .and_then(std::ffi::OsStr::to_str)
            .expect("utf-8 name");
        assert!(sub_name.ends_with(&format!("-{me}-x_..___")), "{sub_name}");
        assert_eq!(sub.parent(), Some(dir.as_path()));
        assert_eq!(
            names(&report.files),
            [
                "alert.json",
                "cmdline",
                "environ",
                "status",
                "maps",
                "fds",
                "net",
                "NOTES",
                "SHA256SUMS"
            ]
        );
        let (_, outcome) = hash_exe_of_pid(me, u64::MAX).expect("own exe");
        let digest = outcome.digest().expect("hashed");
        assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
        assert_eq!(report.skipped[0].name, "exe");
        assert!(report.skipped[0].reason.contains("max_exe_bytes"));
        assert!(
            report.skipped[0]
                .reason
                .ends_with(&format!("sha256 {digest}"))
        );
        assert_eq!((mode_of(&dir), mode_of(&sub)), (0o700, 0o700));
        for f in &report.files {
            let bytes = std::fs::read(sub.join(&f.name)).expect("read");
            assert_eq!(bytes.len() as u64, f.bytes, "{}", f.name);
            assert_eq!(mode_of(&sub.join(&f.name)), 0o600, "{}", f.name);
        }
        let sums = std::fs::read_to_string(sub.join("SHA256SUMS")).expect("sums");
        let listed: Vec<(&str, &str)> = sums
            .lines()
            .map(|l| l.split_once("  ").expect("two spaces"))
            .collect();
        assert_eq!(listed.len(), report.files.len() - 1, "all but itself");
        for ((hash, name), f) in listed.iter().zip(&report.files) {
            assert_eq!((*hash, *name), (f.sha256.as_str(), f.name.as_str()));
            assert!(
                hash.len() == 64
                    && hash
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            let actual =
                crate::process::hash::sha256_file(&sub.join(name), u64::MAX).expect("hash");
            assert_eq!(actual.digest(), Some(*hash), "{name}");
        }
        let notes = std::fs::read_to_string(sub.join("NOTES")).expect("notes");
        assert!(
            notes.contains("  exe: ") && !notes.contains('\x1b'),
            "{notes}"
        );
        let alert: serde_json::Value =
            serde_json::from_slice(&std::fs::read(sub.join("alert.json")).expect("read"))
                .expect("valid JSON");
        assert_eq!(alert["pid"], me);
        let json = serde_json::to_value(&report).expect("report serialises");
        assert_eq!(json["files"][0]["name"], "alert.json");
    }

    #[test]
    fn total_cap_skips_what_does_not_fit_and_then_refuses() {
        let s = Scratch::new("cap");
        let dir = s.0.join("dumps");
        let me = std::process::id();
        let limits = DumpLimits {
            max_exe_bytes: u64::MAX,
            max_total_bytes: RESERVE_BYTES + 100,
        };
        let report =
            dump_process(&dir, &alert_for(me, b"cap"), own_start(), &limits).expect("dump");
        // 100 bytes: the alert (several hundred bytes) does not fit; status and maps neither.
        assert!(report.skipped.iter().any(|k| k.name == "alert.json"));
        for k in &report.skipped {
            assert!(k.reason.contains("max_total_bytes"), "{k:?}");
        }
        assert!(names(&report.files).ends_with(&["NOTES", "SHA256SUMS"]));
        let total: u64 = report.files.iter().map(|f| f.bytes).sum();
        assert!(total <= limits.max_total_bytes, "{total}");
        let root = fs::open_root(&dir).expect("root");
        assert_eq!(fs::dir_usage(&root).expect("usage"), total);
        // What is left is below the reserve: the next dump is refused outright.
        let err =
            dump_process(&dir, &alert_for(me, b"cap"), own_start(), &limits).expect_err("full");
        assert!(matches!(err, DumpError::Full { .. }), "{err}");
        assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), 1);
    }

    #[test]
    fn a_gone_process_still_gets_its_alert_and_notes() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("reaped");
        let s = Scratch::new("gone");
        let report = dump_process(
            &s.0.join("d"),
            &alert_for(pid, b"true"),
            1,
            &DumpLimits::default(),
        );
        // The pid may have been reused already; only a pid with no process is checked.
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        let report = report.expect("dump");
        assert_eq!(names(&report.files), ["alert.json", "NOTES", "SHA256SUMS"]);
        assert_eq!(report.skipped.len(), PROCESS_ARTIFACTS.len());
        assert!(
            report
                .skipped
                .iter()
                .all(|k| k.reason == "the process is gone")
        );
    }

    #[test]
    fn a_symlinked_dir_is_refused_and_nothing_is_written() {
        let s = Scratch::new("link");
        let target = s.0.join("target");
        std::fs::create_dir(&target).expect("mkdir");
        let link = s.0.join("dumps");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = dump_process(
            &link,
            &alert_for(std::process::id(), b"x"),
            own_start(),
            &DumpLimits::default(),
        )
        .expect_err("refused");
        assert!(matches!(err, DumpError::Symlink { .. }), "{err}");
        assert_eq!(std::fs::read_dir(&target).expect("ls").count(), 0);
    }
}
