//! `xtask bench-worker <kind> ...`: the load generators, each its own process so that its pid
//! (the parent of every exec it makes, the caller of every connect) picks its events out of a
//! monitor's output, and so that it starts after a monitor is in place (auditd only audits
//! tasks forked after its rules exist). Built in release by `cargo xtask bench` and `soak`.
//! Prints one line of `key=value` results on stdout (with `--progress S`, a `progress ...` line
//! of the counts so far every S seconds before it). `wx` and `dial` are the short-lived children
//! the soak's exec generators start: they do one offending thing, print nothing and exit.
use std::{
    ffi::{CString, OsString},
    io::Write,
    net::{Ipv4Addr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    thread,
    time::{Duration, Instant},
};

use crate::sh::Result;

/// Entry point of the hidden `bench-worker` command; returns the exit code.
pub fn command(args: &[OsString]) -> Result<u8> {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (kind, rest) = args
        .split_first()
        .ok_or("bench-worker needs a kind: exec, connect, syscalls, wx or dial")?;
    let opts = Flags::parse(rest)?;
    let line = match kind.as_str() {
        "exec" => exec(&opts)?,
        "connect" => connect(&opts)?,
        "syscalls" => syscalls(&opts)?,
        "http-load" => super::api_load::http_load(&opts.api()?)?,
        "sse" => super::api_load::sse(&opts.api()?)?,
        "wx" => return wx().map(|()| 0),
        "dial" => return dial(&opts).map(|()| 0),
        other => return Err(format!("unknown bench-worker kind {other}")),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| format!("cannot write the result: {e}"))?;
    Ok(0)
}

/// `--name value` pairs.
#[derive(Debug, Default, PartialEq)]
struct Flags {
    path: Option<String>,
    /// Arguments for the program `exec` starts (`--arg`, repeated, in order).
    args: Vec<String>,
    rate: Option<f64>,
    duration: Option<f64>,
    count: Option<u64>,
    threads: Option<usize>,
    /// Loopback port: the one `connect` listens on, the one `dial` connects to.
    port: Option<u16>,
    /// Seconds between `progress` lines (none without it).
    progress: Option<f64>,
    /// Bearer token of the API (`http-load`, `sse`).
    token: Option<String>,
}

impl Flags {
    fn parse(args: &[String]) -> Result<Flags> {
        let mut flags = Flags::default();
        let mut it = args.iter();
        while let Some(name) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("bench-worker: {name} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("bench-worker: {name} {value}: {e}");
            match name.as_str() {
                "--path" => flags.path = Some(value.clone()),
                "--token" => flags.token = Some(value.clone()),
                "--arg" => flags.args.push(value.clone()),
                "--port" => flags.port = Some(value.parse().map_err(|e| bad(&e))?),
                "--progress" => flags.progress = Some(value.parse().map_err(|e| bad(&e))?),
                "--rate" => flags.rate = Some(value.parse().map_err(|e| bad(&e))?),
                "--duration" => flags.duration = Some(value.parse().map_err(|e| bad(&e))?),
                "--count" => flags.count = Some(value.parse().map_err(|e| bad(&e))?),
                "--threads" => flags.threads = Some(value.parse().map_err(|e| bad(&e))?),
                other => return Err(format!("bench-worker: unknown option {other}")),
            }
        }
        Ok(flags)
    }

    /// The options of the API load generators.
    fn api(&self) -> Result<super::api_load::Load> {
        Ok(super::api_load::Load {
            port: self
                .port
                .ok_or("bench-worker: --port (the API's) is needed")?,
            path: self.path.clone().unwrap_or_else(|| "/api/processes".into()),
            token: self.token.clone().unwrap_or_default(),
            clients: self.threads.unwrap_or(1).max(1),
            duration: self.duration(),
        })
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.unwrap_or(3600.0).max(0.0))
    }
}

/// A program started with `posix_spawn` (vfork-like, so the generator stays cheap), with an
/// empty environment.
struct Spawner {
    path: CString,
    /// Owns the strings `argv` points into.
    _args: Vec<CString>,
    argv: Vec<*mut libc::c_char>,
    envp: [*mut libc::c_char; 1],
}

impl Spawner {
    fn new(path: &str, args: &[String]) -> Result<Spawner> {
        let c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
        let path = c(path)?;
        let args = args.iter().map(|a| c(a)).collect::<Result<Vec<_>>>()?;
        let argv = std::iter::once(path.as_ptr().cast_mut())
            .chain(args.iter().map(|a| a.as_ptr().cast_mut()))
            .chain([std::ptr::null_mut()])
            .collect();
        Ok(Spawner {
            path,
            _args: args,
            argv,
            envp: [std::ptr::null_mut()],
        })
    }

    /// The child's pid, or the errno.
    fn spawn(&self) -> std::result::Result<libc::pid_t, i32> {
        let mut pid: libc::pid_t = 0;
        // SAFETY: path, argv and envp are NUL-terminated and live as long as `self`; null
        // file actions and attributes are allowed.
        let rc = unsafe {
            libc::posix_spawn(
                &mut pid,
                self.path.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            )
        };
        if rc == 0 { Ok(pid) } else { Err(rc) }
    }
}

// SAFETY: the raw pointers point into `path` or `_args` (owned, never mutated) or are null.
unsafe impl Sync for Spawner {}

/// One line on stdout, flushed at once (the reader follows a long run as it goes).
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Emits `progress made=N failed=M` every `every` seconds while `work` runs (none without
/// `every`), so a long run can be followed from outside.
fn with_progress<T>(
    every: Option<f64>,
    made: &AtomicU64,
    failed: &AtomicU64,
    emit: impl Fn(&str) + Sync,
    work: impl FnOnce() -> T,
) -> T {
    let Some(every) = every.filter(|s| *s > 0.0) else {
        return work();
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            let period = Duration::from_secs_f64(every);
            let mut next = Instant::now() + period;
            while !done.load(Relaxed) {
                // Short naps, so the end of the work is not held up by a whole period.
                thread::sleep(Duration::from_millis(50).min(period));
                if Instant::now() < next {
                    continue;
                }
                next += period;
                emit(&format!(
                    "progress made={} failed={}",
                    made.load(Relaxed),
                    failed.load(Relaxed)
                ));
            }
        });
        let result = work();
        done.store(true, Relaxed);
        result
    })
}

fn wait_for(pid: libc::pid_t, flags: libc::c_int) -> libc::pid_t {
    let mut status = 0;
    // SAFETY: plain waitpid on our own child (or -1 for any child).
    unsafe { libc::waitpid(pid, &mut status, flags) }
}

/// Fixed rate (`--rate`, one thread, paced by the clock, children reaped as they exit) or as
/// fast as possible (`--threads` threads, each spawning and waiting), for `--duration` seconds
/// and/or `--count` execs of `--path` with the `--arg`s.
fn exec(opts: &Flags) -> Result<String> {
    let path = opts.path.as_deref().unwrap_or("/bin/true");
    let spawner = Spawner::new(path, &opts.args)?;
    let duration = opts.duration();
    let limit = opts.count.unwrap_or(u64::MAX);
    let made = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let start = Instant::now();
    let end = start + duration;
    with_progress(opts.progress, &made, &failed, print_line, || {
        match opts.rate {
            Some(rate) if rate > 0.0 => {
                let period = Duration::from_secs_f64(1.0 / rate);
                let mut i: u32 = 0;
                loop {
                    let due = start + period * i;
                    if due >= end || made.load(Relaxed) >= limit {
                        break;
                    }
                    let now = Instant::now();
                    if due > now {
                        thread::sleep(due - now);
                    }
                    match spawner.spawn() {
                        Ok(_) => made.fetch_add(1, Relaxed),
                        Err(_) => failed.fetch_add(1, Relaxed),
                    };
                    i += 1;
                    while wait_for(-1, libc::WNOHANG) > 0 {}
                }
                while wait_for(-1, 0) > 0 {}
            }
            _ => {
                let threads = opts.threads.unwrap_or(2).max(1);
                let claimed = AtomicU64::new(0);
                thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            while Instant::now() < end && claimed.fetch_add(1, Relaxed) < limit {
                                match spawner.spawn() {
                                    Ok(pid) => {
                                        wait_for(pid, 0);
                                        made.fetch_add(1, Relaxed);
                                    }
                                    Err(_) => {
                                        failed.fetch_add(1, Relaxed);
                                    }
                                }
                            }
                        });
                    }
                });
            }
        }
    });
    let elapsed = start.elapsed();
    Ok(format!(
        "made={} failed={} elapsed_ns={}",
        made.load(Relaxed),
        failed.load(Relaxed),
        elapsed.as_nanos()
    ))
}

/// Loopback TCP connects for `--duration` seconds to a listener in this process (an accept
/// thread takes each connection and drops it), as fast as possible or at `--rate` per second
/// (paced by the clock); the listener's port is `--port`, or an ephemeral one. Each client
/// socket closes with SO_LINGER 0 (a RST), so no TIME_WAIT piles up and the ephemeral ports
/// never run out. The client never runs more than [`AHEAD`] connections ahead of the accept
/// thread, so the accept queue (4096 deep) never overflows: an overflow drops the SYN and the
/// client waits a second to retransmit.
fn connect(opts: &Flags) -> Result<String> {
    let listener = listen_loopback(opts.port.unwrap_or(0))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;
    let accepted = Arc::new(AtomicU64::new(0));
    let acc = accepted.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            if conn.is_ok() {
                acc.fetch_add(1, Relaxed);
            }
        }
    });
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let period = opts
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let overflows0 = listen_overflows();
    let made = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let mut waits = 0u64;
    let start = Instant::now();
    let end = start + opts.duration();
    with_progress(opts.progress, &made, &failed, print_line, || {
        let mut i: u32 = 0;
        while Instant::now() < end {
            if made.load(Relaxed).saturating_sub(accepted.load(Relaxed)) >= AHEAD {
                waits += 1;
                thread::sleep(Duration::from_micros(50));
                continue;
            }
            if let Some(period) = period {
                let due = start + period * i;
                let now = Instant::now();
                if due >= end {
                    break;
                }
                if due > now {
                    thread::sleep(due - now);
                }
                i += 1;
            }
            match TcpStream::connect(addr) {
                Ok(stream) => {
                    made.fetch_add(1, Relaxed);
                    // SAFETY: a valid socket fd and a correctly sized `linger`.
                    unsafe {
                        libc::setsockopt(
                            stream.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_LINGER,
                            (&raw const linger).cast(),
                            std::mem::size_of::<libc::linger>() as libc::socklen_t,
                        );
                    }
                }
                Err(_) => {
                    failed.fetch_add(1, Relaxed);
                }
            }
        }
    });
    let elapsed = start.elapsed();
    let overflows = listen_overflows()
        .zip(overflows0)
        .map_or(0, |(b, a)| b.saturating_sub(a));
    Ok(format!(
        "made={} failed={} elapsed_ns={} accepted={} waits={waits} \
         listen_overflows={overflows}",
        made.load(Relaxed),
        failed.load(Relaxed),
        elapsed.as_nanos(),
        accepted.load(Relaxed)
    ))
}

/// One TCP connect to 127.0.0.1:`--port`, closed at once with a RST (SO_LINGER 0). A refused
/// connect is fine: the attempt is what a monitor sees.
fn dial(opts: &Flags) -> Result<()> {
    let port = opts.port.ok_or("dial needs --port")?;
    if let Ok(stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket fd and a correctly sized `linger`.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
    Ok(())
}

/// Asks for write+execute memory the way injected code does: a private page made
/// read-write-execute with `mprotect`.
fn wx() -> Result<()> {
    // SAFETY: an anonymous private mapping; checked below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err("mmap of one page failed".into());
    }
    // SAFETY: changing the protection of our own page, which nothing else uses.
    let rc = unsafe {
        libc::mprotect(
            page,
            4096,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        )
    };
    if rc != 0 {
        return Err(format!("mprotect RWX: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Connections the client may be ahead of the accept thread.
const AHEAD: u64 = 1024;

/// A listener on 127.0.0.1:`port` (0: an ephemeral one) with a 4096-deep accept queue (std's
/// is 128).
fn listen_loopback(port: u16) -> Result<TcpListener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: plain socket call; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(err("socket"));
    }
    // SAFETY: a fresh fd nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid sockaddr_in of the size given.
    let rc = unsafe {
        libc::bind(
            fd,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(err(&format!("bind 127.0.0.1:{port}")));
    }
    // SAFETY: listen on our socket.
    if unsafe { libc::listen(fd, 4096) } != 0 {
        return Err(err("listen"));
    }
    Ok(TcpListener::from(owned))
}

/// TcpExt ListenOverflows from /proc/net/netstat (machine-wide).
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?.split_whitespace();
    let values = lines.next()?.split_whitespace();
    names
        .zip(values)
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
}

/// `--count` calls of `mprotect(page, 4096, PROT_READ)` (never W+X) on a page of our own, then
/// as many `getppid()`; raw `syscall` instructions so the loop costs only the call.
fn syscalls(opts: &Flags) -> Result<String> {
    let count = opts.count.unwrap_or(1_000_000).max(1);
    // SAFETY: an anonymous private mapping; checked below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err("mmap of one page failed".into());
    }
    let addr = page as u64;
    let mprotect = || raw::syscall3(libc::SYS_mprotect, addr, 4096, libc::PROT_READ as u64);
    let getppid = || raw::syscall3(libc::SYS_getppid, 0, 0, 0);
    if mprotect() != 0 {
        return Err("mprotect(page, 4096, PROT_READ) failed".into());
    }
    let time = |f: &dyn Fn() -> i64, n: u64| {
        let start = Instant::now();
        let mut i = 0;
        while i < n {
            std::hint::black_box(f());
            i += 1;
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    // An open/close pair of a file under a watched prefix (procwatch's file-open probe sends
    // it once, then finds it in its kernel map) and of one outside them (dropped in the
    // kernel after the prefix test).
    let open_close = |path: &'static std::ffi::CStr| {
        move || {
            let fd = raw::syscall3(
                libc::SYS_openat,
                libc::AT_FDCWD as u64,
                path.as_ptr() as u64,
                (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            );
            if fd >= 0 {
                raw::syscall3(libc::SYS_close, fd as u64, 0, 0);
            }
            fd
        }
    };
    let watched = open_close(c"/etc/passwd");
    let unwatched = open_close(c"/usr/lib/os-release");
    if watched() < 0 || unwatched() < 0 {
        return Err("cannot open /etc/passwd and /usr/lib/os-release".into());
    }
    // Warm up caches and the page tables.
    time(&mprotect, 10_000);
    time(&getppid, 10_000);
    time(&watched, 10_000);
    time(&unwatched, 10_000);
    let mprotect_ns = time(&mprotect, count);
    let getppid_ns = time(&getppid, count);
    let opens = (count / 4).max(1);
    let open_watched_ns = time(&watched, opens);
    let open_unwatched_ns = time(&unwatched, opens);
    Ok(format!(
        "mprotect_ns={mprotect_ns:.2} getppid_ns={getppid_ns:.2} \
         open_watched_ns={open_watched_ns:.2} open_unwatched_ns={open_unwatched_ns:.2} \
         count={count}"
    ))
}

mod raw {
    /// A raw three-argument system call; returns what the kernel returned (-errno on error).
    #[cfg(target_arch = "x86_64")]
    pub fn syscall3(nr: libc::c_long, a: u64, b: u64, c: u64) -> i64 {
        let ret: i64;
        // SAFETY: the callers pass system calls (mprotect on our own page, getppid) that touch
        // no memory of ours; rcx and r11 are clobbered by the instruction.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") nr => ret,
                in("rdi") a,
                in("rsi") b,
                in("rdx") c,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn syscall3(nr: libc::c_long, a: u64, b: u64, c: u64) -> i64 {
        // SAFETY: as above.
        let r = unsafe { libc::syscall(nr, a, b, c) };
        r as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags() {
        let f = Flags::parse(&strings(&[
            "--rate",
            "400",
            "--duration",
            "1.5",
            "--path",
            "/x",
        ]))
        .expect("parses");
        assert_eq!(f.rate, Some(400.0));
        assert_eq!(f.duration(), Duration::from_millis(1500));
        assert_eq!(f.path.as_deref(), Some("/x"));
        assert!(Flags::parse(&strings(&["--rate"])).is_err());
        assert!(Flags::parse(&strings(&["--bogus", "1"])).is_err());
        assert!(Flags::parse(&strings(&["--count", "x"])).is_err());
        let f = Flags::parse(&strings(&[
            "--arg",
            "bench-worker",
            "--port",
            "4444",
            "--arg",
            "wx",
            "--progress",
            "2",
        ]))
        .expect("parses");
        assert_eq!(f.args, ["bench-worker", "wx"]);
        assert_eq!(f.port, Some(4444));
        assert_eq!(f.progress, Some(2.0));
        assert!(Flags::parse(&strings(&["--port", "70000"])).is_err());
    }

    #[test]
    fn children_get_their_arguments() {
        let dir = std::env::temp_dir().join(format!("xtask-worker-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("ran");
        let r = exec(&Flags {
            path: Some("/bin/sh".into()),
            args: strings(&["-c", &format!("echo ran > {}", file.display())]),
            count: Some(1),
            threads: Some(1),
            ..Flags::default()
        })
        .expect("exec");
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(r.contains("made=1 "), "{r}");
        assert_eq!(text, "ran\n");
    }

    #[test]
    fn progress_lines_count_as_the_work_goes() {
        let made = AtomicU64::new(0);
        let failed = AtomicU64::new(0);
        let lines = std::sync::Mutex::new(Vec::<String>::new());
        let emit = |l: &str| lines.lock().expect("lock").push(l.to_owned());
        with_progress(Some(0.05), &made, &failed, emit, || {
            for _ in 0..4 {
                made.fetch_add(1, Relaxed);
                thread::sleep(Duration::from_millis(100));
            }
        });
        let lines = lines.into_inner().expect("lock");
        assert!(lines.len() >= 2, "{lines:?}");
        assert!(
            lines.iter().all(|l| l.starts_with("progress made=")),
            "{lines:?}"
        );
        let counts: Vec<f64> = lines
            .iter()
            .filter_map(|l| {
                crate::bench::measure::parse_key_values(l)
                    .get("made")
                    .copied()
            })
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        // Without a period the work runs alone.
        let quiet = std::sync::atomic::AtomicBool::new(true);
        with_progress(
            None,
            &made,
            &failed,
            |_: &str| quiet.store(false, Relaxed),
            || (),
        );
        assert!(quiet.load(Relaxed));
    }

    #[test]
    fn the_soak_children_do_their_one_thing() {
        wx().expect("a page of our own can be made W+X");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        dial(&Flags {
            port: Some(port),
            ..Flags::default()
        })
        .expect("dial");
        // The connection was established before it was reset: accept still hands it out.
        let end = Instant::now() + Duration::from_secs(5);
        let accepted = loop {
            match listener.accept() {
                Ok(_) => break true,
                Err(_) if Instant::now() < end => thread::sleep(Duration::from_millis(10)),
                Err(_) => break false,
            }
        };
        assert!(accepted, "dial made no connection to port {port}");
        assert!(dial(&Flags::default()).is_err(), "dial without a port");
    }

    #[test]
    fn the_generators_run_without_root() {
        let kv = |s: String| crate::bench::measure::parse_key_values(&s);
        let r = kv(exec(&Flags {
            count: Some(5),
            threads: Some(2),
            ..Flags::default()
        })
        .expect("exec"));
        assert_eq!(r.get("made"), Some(&5.0));
        let r = kv(exec(&Flags {
            rate: Some(200.0),
            duration: Some(0.05),
            ..Flags::default()
        })
        .expect("exec at a rate"));
        assert!(
            r.get("made").is_some_and(|n| (5.0..=11.0).contains(n)),
            "{r:?}"
        );
        let r = kv(syscalls(&Flags {
            count: Some(1000),
            ..Flags::default()
        })
        .expect("syscalls"));
        assert!(r.get("getppid_ns").is_some_and(|n| *n > 0.0));
        let r = kv(connect(&Flags {
            duration: Some(0.05),
            ..Flags::default()
        })
        .expect("connect"));
        assert!(r.get("made").is_some_and(|n| *n > 0.0), "{r:?}");
        // Paced: never more connects than the clock allowed, on the port asked for.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let r = kv(connect(&Flags {
            rate: Some(100.0),
            duration: Some(0.1),
            port: Some(port),
            ..Flags::default()
        })
        .expect("connect at a rate"));
        assert!(
            r.get("made").is_some_and(|n| (1.0..=10.0).contains(n)),
            "{r:?}"
        );
    }
}
