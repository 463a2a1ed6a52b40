//! What names a process and what names an executable, in the terms the kernel uses.
//!
//! - A process is its pid plus its start time. The kernel side reads `start_boottime` (ns
//!   since boot, CLOCK_BOOTTIME); `/proc/PID/stat` shows the same instant in clock ticks, so
//!   [`ticks_from_boot_ns`] converts one to the other exactly as the kernel does.
//! - An executable is the file itself: its superblock's device and its inode number
//!   ([`ExeId`]), not the string it was exec'd with. An allowlisted program started through a
//!   symlink, a relative path or a hard link is the same file; a copy of it is not.
//!
//! Both the in-kernel exemption and the userspace whitelist compare [`ExeId`]s, built from
//! [`AllowIds`], so "allowlisted" means one thing everywhere.
use std::{
    collections::BTreeSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::config::Config;

/// An executable file as the kernel names it: `inode->i_sb->s_dev` (kernel encoding,
/// `major << 20 | minor`) and `inode->i_ino`.
///
/// `stat(2)` reports the same pair on the usual local filesystems (ext4, xfs, tmpfs); a
/// filesystem whose `st_dev` is not its superblock's (btrfs subvolumes, some overlayfs
/// setups) makes the kernel and stat disagree, and allowlist entries there do not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ExeId {
    /// Device of the file's filesystem, kernel encoding.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl ExeId {
    /// The id of the file `m` describes.
    pub fn from_metadata(m: &std::fs::Metadata) -> Self {
        let d = m.dev();
        Self {
            dev: (u64::from(libc::major(d)) << 20) | u64::from(libc::minor(d)),
            ino: m.ino(),
        }
    }

    /// The id of the file at `path` (symbolic links followed, as exec follows them).
    pub fn of_path(path: &Path) -> std::io::Result<Self> {
        std::fs::metadata(path).map(|m| Self::from_metadata(&m))
    }

    /// The id of the file process `pid` runs, through its `/proc/<pid>/exe` link (relative to
    /// `dirfd`, a `/proc/<pid>` handle, when given). Asked with `AT_STATX_DONT_SYNC`: FUSE and
    /// NFS then answer from cached attributes instead of asking their server, so a hung server
    /// cannot block the caller; device and inode never change, so the cached answer is exact.
    pub fn of_proc_exe(pid: u32, dirfd: Option<std::os::fd::BorrowedFd<'_>>) -> Option<Self> {
        use std::os::fd::AsRawFd;
        let (fd, path) = match dirfd {
            Some(d) => (d.as_raw_fd(), std::ffi::CString::new("exe").ok()?),
            None => (
                libc::AT_FDCWD,
                std::ffi::CString::new(format!("/proc/{pid}/exe")).ok()?,
            ),
        };
        // SAFETY: statx is plain data; all-zero is a valid value.
        let mut st: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: NUL-terminated path, a valid fd (or AT_FDCWD), a writable statx buffer.
        let rc = unsafe {
            libc::statx(
                fd,
                path.as_ptr(),
                libc::AT_STATX_DONT_SYNC,
                libc::STATX_INO,
                &mut st,
            )
        };
        (rc == 0 && st.stx_mask & libc::STATX_INO != 0).then(|| Self {
            dev: (u64::from(st.stx_dev_major) << 20) | u64::from(st.stx_dev_minor),
            ino: st.stx_ino,
        })
    }

    /// The id from an exec record: `None` when the kernel could not read it.
    pub fn from_kernel(dev: u32, ino: u64) -> Option<Self> {
        (ino != 0).then_some(Self {
            dev: u64::from(dev),
            ino,
        })
    }

    /// The map key the eBPF allowlist uses.
    pub fn key(self) -> procwatch_common::ExeKey {
        procwatch_common::ExeKey {
            dev: self.dev,
            ino: self.ino,
        }
    }
}

/// Clock ticks per second, as /proc reports times in.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `start_boottime` (ns) as the start time in `/proc/PID/stat` (clock ticks since boot);
/// `None` for 0, which the kernel side sends when it could not read it.
pub fn ticks_from_boot_ns(ns: u64) -> Option<u64> {
    // The kernel's nsec_to_clock_t: an exact division when the tick divides a second.
    let per_tick = 1_000_000_000 / clk_tck();
    (ns != 0).then(|| ns / per_tick)
}

/// The start instant (ns since boot) a /proc start time in ticks stands for: what a sensor
/// that read /proc reports, so that [`ticks_from_boot_ns`] gives the ticks back exactly.
pub fn boot_ns_from_ticks(ticks: u64) -> Option<u64> {
    (ticks != 0).then(|| ticks.saturating_mul(1_000_000_000 / clk_tck()))
}

/// CLOCK_BOOTTIME now, in clock ticks (the unit of /proc's start times); `None` if unreadable.
pub fn boot_ticks_now() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    let ns = u64::try_from(ts.tv_sec).ok()? * 1_000_000_000 + u64::try_from(ts.tv_nsec).ok()?;
    Some(ns / (1_000_000_000 / clk_tck()))
}

/// CLOCK_BOOTTIME minus CLOCK_MONOTONIC now: what to add to an event's monotonic kernel time
/// to compare it with start times (they differ by the time spent suspended).
pub fn boot_minus_monotonic_ns() -> u64 {
    fn now(clock: libc::clockid_t) -> Option<u128> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
            return None;
        }
        Some(u128::try_from(ts.tv_sec).ok()? * 1_000_000_000 + u128::try_from(ts.tv_nsec).ok()?)
    }
    match (now(libc::CLOCK_BOOTTIME), now(libc::CLOCK_MONOTONIC)) {
        (Some(b), Some(m)) => u64::try_from(b.saturating_sub(m)).unwrap_or(0),
        _ => 0,
    }
}

/// True when a process that /proc says started at `start_ticks` can be the one that caused
/// an event at monotonic time `event_ktime_ns`: it must have started no later than the event.
/// (A recycled pid belongs to a process started after the event.) /proc's tick granularity
/// cannot tell apart a process started within the same tick as the event.
pub fn started_by(start_ticks: u64, event_ktime_ns: u64) -> bool {
    let per_tick = 1_000_000_000 / clk_tck();
    let event_boot_ns = event_ktime_ns.saturating_add(boot_minus_monotonic_ns());
    start_ticks.saturating_mul(per_tick) <= event_boot_ns
}

/// This boot of this host: `/proc/sys/kernel/random/boot_id` (read once; the host name when
/// it cannot be read). With a boot-relative time and a pid it names one process image
/// anywhere, at any time.
pub fn host_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| crate::alert::hostname().to_owned())
    })
}

/// An id unique per exec (like Tetragon's `exec_id`): base64 of `host_key:boot_ns:pid`, where
/// `boot_ns` is when the image began (its exec, or the process's start for an image it
/// inherited at fork), CLOCK_BOOTTIME ns. Two execs of one pid differ in time; two processes
/// that reuse a pid differ in time too.
pub fn exec_id(host: &str, image_boot_ns: u64, pid: u32) -> String {
    base64(format!("{host}:{image_boot_ns}:{pid}").as_bytes())
}

/// Standard base64 with padding (RFC 4648).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The executables the config names, resolved to file identities: the userspace whitelist
/// (`whitelist.exe_paths`: no alerts) and the kill exemption (`enforce.allow_exe_paths` and
/// the whitelist: never killed, in the kernel or from user space).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowIds {
    /// `whitelist.exe_paths`.
    pub whitelist: BTreeSet<ExeId>,
    /// `enforce.allow_exe_paths` plus `whitelist.exe_paths`.
    pub exempt: BTreeSet<ExeId>,
    /// Paths that could not be resolved (missing file, ...), with the reason.
    pub unresolved: Vec<(PathBuf, String)>,
}

impl AllowIds {
    /// Resolves every path `cfg` lists (a file replaced since is picked up by calling again).
    pub fn from_config(cfg: &Config) -> Self {
        let mut ids = Self::default();
        for path in &cfg.whitelist.exe_paths {
            if let Some(id) = ids.resolve(path) {
                ids.whitelist.insert(id);
                ids.exempt.insert(id);
            }
        }
        for path in &cfg.enforce.allow_exe_paths {
            if let Some(id) = ids.resolve(path) {
                ids.exempt.insert(id);
            }
        }
        ids
    }

    fn resolve(&mut self, path: &Path) -> Option<ExeId> {
        match ExeId::of_path(path) {
            Ok(id) => Some(id),
            Err(e) => {
                self.unresolved.push((path.to_path_buf(), e.to_string()));
                None
            }
        }
    }
}

/// Resolves `paths` to identities, with the paths that could not be.
pub fn resolve_all(paths: &[PathBuf]) -> (BTreeSet<ExeId>, Vec<(PathBuf, String)>) {
    let mut ids = BTreeSet::new();
    let mut bad = Vec::new();
    for p in paths {
        match ExeId::of_path(p) {
            Ok(id) => {
                ids.insert(id);
            }
            Err(e) => bad.push((p.clone(), e.to_string())),
        }
    }
    (ids, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc, "{plain}");
        }
    }

    #[test]
    fn exec_ids_differ_per_exec_and_per_pid() {
        let a = exec_id("host", 1_000, 42);
        assert_eq!(a, base64(b"host:1000:42"));
        assert_ne!(
            a,
            exec_id("host", 1_001, 42),
            "a second exec of the same pid"
        );
        assert_ne!(a, exec_id("host", 1_000, 43));
        assert_ne!(a, exec_id("other", 1_000, 42));
    }

    #[test]
    fn a_symlink_and_a_hard_link_are_the_same_executable_and_a_copy_is_not() {
        let dir = std::env::temp_dir().join(format!("pw-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("mkdir");
        let file = dir.join("prog");
        std::fs::write(&file, b"x").expect("write");
        std::os::unix::fs::symlink(&file, dir.join("sym")).expect("symlink");
        std::fs::hard_link(&file, dir.join("hard")).expect("link");
        std::fs::copy(&file, dir.join("copy")).expect("copy");
        let id = |n: &str| ExeId::of_path(&dir.join(n)).expect("stat");
        assert_eq!(id("prog"), id("sym"));
        assert_eq!(id("prog"), id("hard"));
        assert_ne!(id("prog"), id("copy"));
        let (ids, bad) = resolve_all(&[dir.join("sym"), dir.join("missing")]);
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), [id("prog")]);
        assert_eq!(bad.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn start_times_convert_as_the_kernel_does() {
        let per_tick = 1_000_000_000 / clk_tck();
        assert_eq!(ticks_from_boot_ns(0), None);
        assert_eq!(
            ticks_from_boot_ns(per_tick * 1234 + per_tick - 1),
            Some(1234)
        );
        assert_eq!(
            boot_ns_from_ticks(1234).and_then(ticks_from_boot_ns),
            Some(1234)
        );
        assert_eq!(boot_ns_from_ticks(0), None);
        // This process: /proc's start time in ticks is not after now.
        let st = crate::procfs::stat::read_stat(std::process::id()).expect("stat");
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let now = u64::try_from(ts.tv_sec).expect("secs") * 1_000_000_000
            + u64::try_from(ts.tv_nsec).expect("ns");
        assert!(started_by(st.start_ticks, now));
        assert!(!started_by(st.start_ticks, 0), "not before boot");
    }

    #[test]
    fn config_paths_resolve_into_whitelist_and_exemption() {
        let cfg = Config::from_yaml(
            "t",
            "whitelist:\n  exe_paths: [/bin/sh]\nenforce:\n  allow_exe_paths: [/bin/true, /nonexistent/x]\n",
        )
        .expect("cfg");
        let ids = AllowIds::from_config(&cfg);
        let sh = ExeId::of_path(Path::new("/bin/sh")).expect("sh");
        let t = ExeId::of_path(Path::new("/bin/true")).expect("true");
        assert!(ids.whitelist.contains(&sh) && !ids.whitelist.contains(&t));
        assert!(ids.exempt.contains(&sh) && ids.exempt.contains(&t));
        assert_eq!(ids.unresolved.len(), 1);
    }
}
