//! Fast readers for what the monitor samples every few seconds: `/proc/<pid>/stat` (CPU ticks,
//! start time, RSS, state, ppid, comm), `/proc/<pid>/status` (tracer, real uid/gid) and W+X
//! regions of `/proc/<pid>/maps`.
//!
//! Public API:
//! - [`StatReader`] (reuses its buffer): [`StatReader::stat`], [`StatReader::status`],
//!   [`StatReader::both`] (one `/proc/<pid>` handle, so both describe the same process).
//! - [`read_stat`], [`read_status`]: one-off versions.
//! - [`ProcStat`], [`ProcStatus`]: what they return.
//! - [`cpu_pct`]: CPU % between two samples; [`clk_tck`], [`page_size`].
//! - [`wx_mappings`] → [`WxMapping`]: writable-and-executable regions.
//!
//! Errors are [`ReadError`]; a process that is gone is [`ReadError::Vanished`].
use std::{ffi::OsString, path::PathBuf, time::Instant};

use tracing::debug;

use super::{
    PidDir, ReadError,
    dir::{LINK_MAX, for_each_line},
    parse::{parse_hex_u64, parse_u64},
};
use crate::text::{os_from_bytes, path_from_bytes};

/// stat and status are a few KiB; everything procwatch reads is in the first lines.
const SMALL_FILE_MAX: usize = 16 * 1024;

/// The fields of `/proc/<pid>/stat` procwatch samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state (`R`, `S`, `D`, `Z`, `T`, ...).
    pub state: u8,
    /// Parent pid.
    pub ppid: u32,
    /// User-mode CPU time in clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time in clock ticks.
    pub stime: u64,
    /// Start time in clock ticks since boot (with the pid, identifies a process across reuse).
    pub start_ticks: u64,
    /// Resident set size in bytes (0 for kernel threads).
    pub rss_bytes: u64,
    /// comm, raw bytes.
    pub comm: OsString,
}

impl ProcStat {
    /// Total CPU time (user + kernel) in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime.saturating_add(self.stime)
    }
}

/// The fields of `/proc/<pid>/status` procwatch samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStatus {
    /// Pid of the process tracing this one (ptrace), 0 when none.
    pub tracer_pid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
}

/// A mapping that is both writable and executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WxMapping {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Permissions as the kernel prints them, e.g. `rwxp`.
    pub perms: String,
    /// Backing file or pseudo-name (`[heap]`, `/memfd:x (deleted)`); `None` when anonymous.
    pub path: Option<PathBuf>,
}

/// Reads stat and status, reusing one buffer between calls.
#[derive(Debug)]
pub struct StatReader {
    buf: Vec<u8>,
    page_size: u64,
}

impl Default for StatReader {
    fn default() -> Self {
        Self {
            buf: Vec::with_capacity(4096),
            page_size: page_size(),
        }
    }
}

/// Reads `/proc/<pid>/stat` once.
pub fn read_stat(pid: u32) -> Result<ProcStat, ReadError> {
    StatReader::default().stat(pid)
}

/// The start time of the process holding `pid` now, and the executable file it runs, both
/// read through one `/proc/<pid>` handle (so they describe the same process). The identity is
/// `None` for a process without one (kernel thread, zombie).
pub fn start_and_exe(pid: u32) -> Result<(u64, Option<crate::identity::ExeId>), ReadError> {
    let dir = PidDir::open(pid)?;
    let start = StatReader::default().stat_in(&dir)?.start_ticks;
    let exe = crate::identity::ExeId::of_proc_exe(pid, Some(dir.as_fd()));
    Ok((start, exe))
}

/// Reads `/proc/<pid>/status` once.
pub fn read_status(pid: u32) -> Result<ProcStatus, ReadError> {
    StatReader::default().status(pid)
}

impl StatReader {
    /// Reads `/proc/<pid>/stat`.
    pub fn stat(&mut self, pid: u32) -> Result<ProcStat, ReadError> {
        let dir = PidDir::open(pid)?;
        self.stat_in(&dir)
    }

    /// Reads `/proc/<pid>/status`.
    pub fn status(&mut self, pid: u32) -> Result<ProcStatus, ReadError> {
        let dir = PidDir::open(pid)?;
        self.status_in(&dir)
    }

    /// Reads stat and status of the same process.
    pub fn both(&mut self, pid: u32) -> Result<(ProcStat, ProcStatus), ReadError> {
        let dir = PidDir::open(pid)?;
        Ok((self.stat_in(&dir)?, self.status_in(&dir)?))
    }

    /// stat of the process behind an open `/proc/<pid>` handle.
    pub(crate) fn stat_in(&mut self, dir: &PidDir) -> Result<ProcStat, ReadError> {
        dir.read(c"stat", "stat", &mut self.buf, SMALL_FILE_MAX)?;
        let f = parse_stat(&self.buf).ok_or_else(|| dir.malformed("stat"))?;
        Ok(ProcStat {
            state: f.state,
            ppid: f.ppid,
            utime: f.utime,
            stime: f.stime,
            start_ticks: f.start_ticks,
            rss_bytes: f.rss_pages.saturating_mul(self.page_size),
            comm: os_from_bytes(f.comm),
        })
    }

    /// status of the process behind an open `/proc/<pid>` handle.
    pub(crate) fn status_in(&mut self, dir: &PidDir) -> Result<ProcStatus, ReadError> {
        dir.read(c"status", "status", &mut self.buf, SMALL_FILE_MAX)?;
        parse_status(&self.buf).ok_or_else(|| dir.malformed("status"))
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on every mainstream kernel).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

/// The page size in bytes (`sysconf(_SC_PAGESIZE)`), the unit of RSS in stat.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// CPU use between two samples in percent of one CPU (a busy process with several threads
/// can exceed 100, as in `top`). 0 when the interval is empty or the ticks went backwards
/// (the pid now belongs to another process).
pub fn cpu_pct(
    prev_ticks: u64,
    prev_at: Instant,
    now_ticks: u64,
    now_at: Instant,
    clk_tck: u64,
) -> f64 {
    let secs = now_at.saturating_duration_since(prev_at).as_secs_f64();
    if secs <= 0.0 || clk_tck == 0 || now_ticks < prev_ticks {
        return 0.0;
    }
    (now_ticks - prev_ticks) as f64 / clk_tck as f64 / secs * 100.0
}

/// Youngest age at which a process is judged by its CPU use since it started: below it, the
/// clock tick is too coarse a unit and a start-up burst too short to mean anything.
pub const MIN_AGE_TICKS_SECS: u64 = 1;

/// CPU % of one core a process used from its start (`start_ticks`, clock ticks since boot) to
/// `now_boot_ticks`, having used `cpu_ticks`: what a fresh process is judged by before a
/// second sample gives a window. `None` while it is younger than [`MIN_AGE_TICKS_SECS`].
pub fn cpu_pct_since_start(
    start_ticks: u64,
    cpu_ticks: u64,
    now_boot_ticks: u64,
    clk_tck: u64,
) -> Option<f64> {
    let age = now_boot_ticks.checked_sub(start_ticks)?;
    if start_ticks == 0 || clk_tck == 0 || age < MIN_AGE_TICKS_SECS * clk_tck {
        return None;
    }
    Some(cpu_ticks as f64 / age as f64 * 100.0)
}

/// The writable-and-executable regions of a process (JIT runtimes have some; injected code
/// usually does too).
pub fn wx_mappings(pid: u32) -> Result<Vec<WxMapping>, ReadError> {
    wx_mappings_in(&PidDir::open(pid)?)
}

/// [`wx_mappings`] through an open `/proc/<pid>` handle. Asks the kernel for W+X regions only
/// (PROCMAP_QUERY, Linux 6.11+), which skips formatting every line of a maps file that can be
/// megabytes: most of what a `scan` sweep spent. Older kernels get the text parsed.
pub(crate) fn wx_mappings_in(dir: &PidDir) -> Result<Vec<WxMapping>, ReadError> {
    let file = dir.open_file(c"maps", "maps")?;
    match procmap_query::wx(&file) {
        Ok(found) => return Ok(found),
        Err(e) if procmap_query::unsupported(&e) => {}
        Err(e) => return Err(dir.classify("maps", e)),
    }
    let mut out = Vec::new();
    let mut malformed = 0usize;
    let mut buf = Vec::new();
    // A line that does not parse is skipped rather than failing the whole read, so it cannot
    // hide the others.
    for_each_line(file, &mut buf, |line| match parse_maps_line(line) {
        Some(Some(m)) => out.push(m),
        Some(None) => {}
        None => malformed += 1,
    })
    .map_err(|e| dir.classify("maps", e))?;
    if malformed > 0 {
        debug!(
            pid = dir.pid(),
            malformed, "malformed lines in /proc/<pid>/maps skipped"
        );
    }
    Ok(out)
}

/// The PROCMAP_QUERY ioctl on a `/proc/<pid>/maps` file (`struct procmap_query`,
/// include/uapi/linux/fs.h).
mod procmap_query {
    use std::{fs::File, io, os::fd::AsRawFd};

    use super::{LINK_MAX, WxMapping};
    use crate::text::path_from_bytes;

    const VMA_READABLE: u64 = 0x01;
    const VMA_WRITABLE: u64 = 0x02;
    const VMA_EXECUTABLE: u64 = 0x04;
    const VMA_SHARED: u64 = 0x08;
    const COVERING_OR_NEXT_VMA: u64 = 0x10;
    /// More W+X regions than any real process has; a bound on the loop, not a filter.
    const MAX_REGIONS: usize = 4096;

    #[repr(C)]
    #[derive(Default)]
    struct ProcmapQuery {
        size: u64,
        query_flags: u64,
        query_addr: u64,
        vma_start: u64,
        vma_end: u64,
        vma_flags: u64,
        vma_page_size: u64,
        vma_offset: u64,
        inode: u64,
        dev_major: u32,
        dev_minor: u32,
        vma_name_size: u32,
        build_id_size: u32,
        vma_name_addr: u64,
        build_id_addr: u64,
    }
    const _: () = assert!(size_of::<ProcmapQuery>() == 104);

    /// `_IOWR('f', 17, struct procmap_query)`.
    const PROCMAP_QUERY: libc::c_ulong =
        (3 << 30) | ((size_of::<ProcmapQuery>() as libc::c_ulong) << 16) | (0x66 << 8) | 17;

    /// True when the kernel has no PROCMAP_QUERY (older than 6.11): read the text instead.
    pub(super) fn unsupported(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::ENOTTY | libc::EINVAL | libc::EOPNOTSUPP | libc::ENAMETOOLONG)
        )
    }

    /// Every W+X region, walking the address space one matching region per call.
    pub(super) fn wx(maps: &File) -> io::Result<Vec<WxMapping>> {
        let mut out = Vec::new();
        let mut name = vec![0u8; LINK_MAX];
        let mut addr = 0u64;
        while out.len() < MAX_REGIONS {
            let mut q = ProcmapQuery {
                size: size_of::<ProcmapQuery>() as u64,
                query_flags: COVERING_OR_NEXT_VMA | VMA_WRITABLE | VMA_EXECUTABLE,
                query_addr: addr,
                vma_name_size: name.len() as u32,
                vma_name_addr: name.as_mut_ptr() as u64,
                ..ProcmapQuery::default()
            };
            // SAFETY: `q` is a correctly sized procmap_query whose name buffer is `name`,
            // valid for `vma_name_size` bytes; build_id_size 0 means no build-id buffer.
            let rc = unsafe { libc::ioctl(maps.as_raw_fd(), PROCMAP_QUERY, &raw mut q) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                // No (further) matching region.
                if e.raw_os_error() == Some(libc::ENOENT) {
                    break;
                }
                return Err(e);
            }
            if q.vma_end <= addr {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            // vma_name_size counts the terminating NUL; 0 when the region has no name.
            let len = (q.vma_name_size as usize).saturating_sub(1).min(name.len());
            let path = name.get(..len).filter(|n| !n.is_empty());
            out.push(WxMapping {
                start: q.vma_start,
                end: q.vma_end,
                perms: perms(q.vma_flags),
                path: path.map(path_from_bytes),
            });
            addr = q.vma_end;
        }
        Ok(out)
    }

    /// The four-letter form /proc/<pid>/maps prints.
    fn perms(flags: u64) -> String {
        let bit = |f: u64, c: char| if flags & f != 0 { c } else { '-' };
        [
            bit(VMA_READABLE, 'r'),
            bit(VMA_WRITABLE, 'w'),
            bit(VMA_EXECUTABLE, 'x'),
            if flags & VMA_SHARED != 0 { 's' } else { 'p' },
        ]
        .into_iter()
        .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The kernel's major and minor version from uname.
        fn kernel_version() -> (u32, u32) {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
            let mut parts = release
                .trim()
                .split(|c: char| !c.is_ascii_digit())
                .map(|p| p.parse::<u32>().unwrap_or(0));
            (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
        }

        #[test]
        fn query_is_used_where_the_kernel_has_it() {
            let maps = File::open("/proc/self/maps").expect("own maps");
            match wx(&maps) {
                Ok(_) => {}
                Err(e) if unsupported(&e) && kernel_version() < (6, 11) => {
                    eprintln!("skipped: PROCMAP_QUERY needs Linux 6.11 ({e}); text is parsed");
                }
                Err(e) => panic!("PROCMAP_QUERY failed on {:?}: {e}", kernel_version()),
            }
        }
    }
}

/// One maps line: `Some(None)` when it is not W+X, `None` when malformed.
fn parse_maps_line(line: &[u8]) -> Option<Option<WxMapping>> {
    if line.is_empty() {
        return Some(None);
    }
    // "start-end perms offset dev inode   path"; the path (which may hold spaces) is the rest.
    let mut rest = line;
    let range = next_field(&mut rest)?;
    let perms = next_field(&mut rest)?;
    if perms.len() != 4 {
        return None;
    }
    if !(perms.contains(&b'w') && perms.contains(&b'x')) {
        return Some(None);
    }
    let dash = range.iter().position(|&b| b == b'-')?;
    let start = parse_hex_u64(range.get(..dash)?)?;
    let end = parse_hex_u64(range.get(dash + 1..)?)?;
    for _ in 0..3 {
        next_field(&mut rest)?;
    }
    let path = rest.trim_ascii_start();
    Some(Some(WxMapping {
        start,
        end,
        perms: String::from_utf8_lossy(perms).into_owned(),
        path: (!path.is_empty()).then(|| path_from_bytes(path)),
    }))
}

/// Takes the next space-separated field off the front of `rest`.
fn next_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let s = rest.trim_ascii_start();
    let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    let (field, tail) = s.split_at(end);
    *rest = tail;
    (!field.is_empty()).then_some(field)
}

/// The fields of /proc/<pid>/stat procwatch uses, borrowed from the buffer.
#[derive(Debug, PartialEq, Eq)]
struct StatFields<'a> {
    comm: &'a [u8],
    state: u8,
    ppid: u32,
    utime: u64,
    stime: u64,
    start_ticks: u64,
    rss_pages: u64,
}

/// Parses /proc/<pid>/stat. comm may hold anything (spaces, parentheses, newlines), so it is
/// taken between the first '(' and the *last* ')'.
fn parse_stat(buf: &[u8]) -> Option<StatFields<'_>> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    let comm = buf.get(open + 1..close)?;
    let mut fields = buf
        .get(close + 1..)?
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    // Numbered as in proc(5): state(3) ppid(4) ... utime(14) stime(15) ... starttime(22)
    // vsize(23) rss(24).
    let state = match fields.next()? {
        [s] => *s,
        _ => return None,
    };
    let ppid = u32::try_from(parse_u64(fields.next()?)?).ok()?;
    let utime = parse_u64(fields.nth(9)?)?;
    let stime = parse_u64(fields.next()?)?;
    let start_ticks = parse_u64(fields.nth(6)?)?;
    let rss_pages = parse_i64_clamped(fields.nth(1)?)?;
    Some(StatFields {
        comm,
        state,
        ppid,
        utime,
        stime,
        start_ticks,
        rss_pages,
    })
}

/// TracerPid and the real uid/gid. The *last* matching lines count: they follow the `Name:`
/// line, so a name forging such a line could only come before them.
fn parse_status(buf: &[u8]) -> Option<ProcStatus> {
    let (mut tracer, mut uid, mut gid) = (None, None, None);
    for line in buf.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"TracerPid:") {
            tracer = first_u32(rest);
        } else if let Some(rest) = line.strip_prefix(b"Uid:") {
            uid = first_u32(rest);
        } else if let Some(rest) = line.strip_prefix(b"Gid:") {
            gid = first_u32(rest);
        }
    }
    Some(ProcStatus {
        tracer_pid: tracer?,
        uid: uid?,
        gid: gid?,
    })
}

fn first_u32(fields: &[u8]) -> Option<u32> {
    let field = fields
        .split(|b| b.is_ascii_whitespace())
        .find(|f| !f.is_empty())?;
    u32::try_from(parse_u64(field)?).ok()
}

/// A signed decimal clamped at 0: stat prints rss as a signed long.
fn parse_i64_clamped(field: &[u8]) -> Option<u64> {
    match field.strip_prefix(b"-") {
        Some(digits) => parse_u64(digits).map(|_| 0),
        None => parse_u64(field),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        os::fd::{AsRawFd, FromRawFd, OwnedFd},
        time::Duration,
    };

    use super::*;

    #[test]
    fn cpu_since_start_judges_a_fresh_process_once_it_is_a_second_old() {
        // 100 ticks/s: 150 ticks of CPU over 2 s of life is 75 %.
        assert_eq!(cpu_pct_since_start(1_000, 150, 1_200, 100), Some(75.0));
        assert_eq!(cpu_pct_since_start(1_000, 100, 1_100, 100), Some(100.0));
        assert_eq!(
            cpu_pct_since_start(1_000, 99, 1_099, 100),
            None,
            "too young"
        );
        assert_eq!(
            cpu_pct_since_start(1_000, 5, 900, 100),
            None,
            "clock before start"
        );
        assert_eq!(cpu_pct_since_start(0, 5, 900, 100), None, "start unknown");
    }

    #[test]
    fn stat_with_hostile_comm() {
        let line = b"42 (a) b (c) S 7 42 42 0 -1 4194560 100 0 0 0 11 22 0 0 20 0 1 0 98765 \
                     1000 33 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let s = parse_stat(line).expect("parses");
        assert_eq!(s.comm, b"a) b (c");
        assert_eq!(
            (
                s.state,
                s.ppid,
                s.utime,
                s.stime,
                s.start_ticks,
                s.rss_pages
            ),
            (b'S', 7, 11, 22, 98765, 33)
        );
        let newline = b"1 (x\n) R 0 0 0 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 9 0 -1";
        let s = parse_stat(newline).expect("parses");
        assert_eq!((s.comm, s.rss_pages), (&b"x\n"[..], 0));
    }

    #[test]
    fn stat_rejects_truncated_and_garbage() {
        assert_eq!(parse_stat(b"42 (abc S 7"), None);
        assert_eq!(parse_stat(b"42 (abc) S 7 1 1 0"), None);
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b")("), None);
        let bad_state = b"1 (x) SS 0 0 0 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 9 0 1";
        assert_eq!(parse_stat(bad_state), None);
        let bad_num = b"1 (x) S 0 0 0 0 -1 0 0 0 0 0 5x 6 0 0 20 0 1 0 9 0 1";
        assert_eq!(parse_stat(bad_num), None);
    }

    #[test]
    fn status_takes_the_real_ids_and_the_last_lines() {
        let status = b"Name:\tx\nTracerPid:\t9\nUid:\t0\t0\t0\t0\nUmask:\t0022\n\
                       TracerPid:\t0\nUid:\t1000\t0\t0\t0\nGid:\t100\t5\t5\t5\n";
        let s = parse_status(status).expect("parses");
        assert_eq!((s.tracer_pid, s.uid, s.gid), (0, 1000, 100));
        assert_eq!(parse_status(b"Uid:\t1\nGid:\t1\n"), None);
        assert_eq!(parse_status(b"TracerPid:\tx\nUid:\t1\nGid:\t1\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let (stat, status) = StatReader::default().both(me).expect("own process");
        // SAFETY: getppid/getuid/getgid have no preconditions.
        let (ppid, uid, gid) = unsafe { (libc::getppid(), libc::getuid(), libc::getgid()) };
        assert_eq!(i64::from(stat.ppid), i64::from(ppid));
        assert_eq!((status.uid, status.gid), (uid, gid));
        assert!(stat.rss_bytes > 0 && stat.rss_bytes % page_size() == 0);
        assert!(stat.start_ticks > 0);
        assert!(stat.state.is_ascii_uppercase());
        let comm = std::fs::read("/proc/self/comm").expect("comm");
        assert_eq!(
            stat.comm.as_encoded_bytes(),
            comm.strip_suffix(b"\n").unwrap_or(&comm)
        );
    }

    #[test]
    fn cpu_ticks_grow_when_busy() {
        // Busy for 200 ms of this thread's own CPU time, however long a loaded machine makes
        // that take: /proc must then show at least half of it (clock ticks are coarse).
        fn thread_cpu() -> Duration {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes the timespec it is given.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
            Duration::new(
                u64::try_from(ts.tv_sec).unwrap_or(0),
                u32::try_from(ts.tv_nsec).unwrap_or(0),
            )
        }
        let me = std::process::id();
        let before = read_stat(me).expect("stat").cpu_ticks();
        let spent = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - spent < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = read_stat(me).expect("stat").cpu_ticks();
        let ticks = after.saturating_sub(before);
        assert!(
            ticks * 1000 >= clk_tck() * 100,
            "{ticks} ticks for 200 ms of CPU at {} ticks/s",
            clk_tck()
        );
    }

    #[test]
    fn cpu_pct_maths() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        assert!((cpu_pct(100, t0, 200, t1, 100) - 50.0).abs() < 1e-9);
        assert!((cpu_pct(0, t0, 400, t1, 100) - 200.0).abs() < 1e-9);
        assert_eq!(cpu_pct(200, t0, 100, t1, 100), 0.0);
        assert_eq!(cpu_pct(100, t1, 200, t0, 100), 0.0);
        assert_eq!(cpu_pct(100, t0, 200, t0, 100), 0.0);
        assert_eq!(cpu_pct(100, t0, 200, t1, 0), 0.0);
    }

    #[test]
    fn vanished_is_typed() {
        assert!(read_stat(u32::MAX).expect_err("no pid").is_vanished());
        assert!(wx_mappings(u32::MAX).expect_err("no pid").is_vanished());
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("reaped");
        assert!(read_status(pid).expect_err("reaped").is_vanished());
    }

    #[test]
    fn maps_lines() {
        let wx = b"7f0000000000-7f0000001000 rwxp 00000000 00:00 0 ";
        let m = parse_maps_line(wx).expect("valid").expect("w+x");
        assert_eq!(
            (m.start, m.end, m.perms.as_str()),
            (0x7f00_0000_0000, 0x7f00_0000_1000, "rwxp")
        );
        assert_eq!(m.path, None);
        let named = b"55d0-55e0 -wx- 00001000 08:01 1234      /tmp/my lib.so (deleted)";
        let m = parse_maps_line(named).expect("valid").expect("w+x");
        assert_eq!(m.path, Some(PathBuf::from("/tmp/my lib.so (deleted)")));
        assert_eq!(
            parse_maps_line(b"1000-2000 r-xp 0 08:01 5 /bin/sh"),
            Some(None)
        );
        assert_eq!(parse_maps_line(b""), Some(None));
        assert_eq!(parse_maps_line(b"1000-zz rwxp 0 00:00 0"), None);
        assert_eq!(parse_maps_line(b"1000-2000 rwxp 0"), None);
        assert_eq!(parse_maps_line(b"1000-2000 rwxpq 0 00:00 0"), None);
    }

    #[test]
    fn finds_own_wx_mapping() {
        // SAFETY: anonymous mapping with no address hint; checked and unmapped below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(
            addr,
            libc::MAP_FAILED,
            "mmap W+X refused (SELinux execmem?)"
        );
        let start = addr as u64;
        // A named one too (a memfd, whose name reads "/memfd:... (deleted)"), so names agree.
        // SAFETY: a NUL-terminated name; the fd is owned below.
        let memfd = unsafe { libc::memfd_create(c"pw wx\ttest".as_ptr(), 0) };
        assert!(memfd >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: the fd was just created and is not owned elsewhere.
        let memfd = unsafe { OwnedFd::from_raw_fd(memfd) };
        // SAFETY: a valid fd, grown to one page before it is mapped.
        assert_eq!(unsafe { libc::ftruncate(memfd.as_raw_fd(), 4096) }, 0);
        // SAFETY: private mapping of one page of the memfd; unmapped below.
        let named = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE,
                memfd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(named, libc::MAP_FAILED, "mmap of a memfd W+X refused");
        let found = wx_mappings(std::process::id()).expect("own maps");
        // The text of the same maps file, parsed line by line, must say the same.
        let text = std::fs::read("/proc/self/maps").expect("own maps text");
        let from_text: Vec<WxMapping> = text
            .split(|&b| b == b'\n')
            .filter_map(|l| parse_maps_line(l).flatten())
            .collect();
        // SAFETY: the mappings made above, of that length.
        unsafe {
            libc::munmap(addr, 4096);
            libc::munmap(named, 4096);
        }
        assert!(
            found.iter().any(|m| m
                .path
                .as_ref()
                .is_some_and(|p| p.to_string_lossy().starts_with("/memfd:pw wx"))),
            "memfd mapping not in {found:x?}"
        );
        assert!(
            found
                .iter()
                .any(|m| m.start <= start && start < m.end && m.perms == "rwxp"),
            "{start:x} not in {found:x?}"
        );
        assert_eq!(found, from_text);
    }

    #[test]
    fn signed_numbers_clamp_at_zero() {
        assert_eq!(parse_i64_clamped(b"-1"), Some(0));
        assert_eq!(parse_i64_clamped(b"-x"), None);
        assert_eq!(parse_i64_clamped(b"33"), Some(33));
    }
}
