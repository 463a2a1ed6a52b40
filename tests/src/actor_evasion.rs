//! pw-actor's actions that take the less common way in: memory writes into another process
//! without ptrace, traffic without connect, 32-bit syscalls from this 64-bit program, W+X
//! without asking for both at once. Included by `src/bin/pw-actor.rs`.
use std::net::{Ipv4Addr, SocketAddrV4};

use super::{fail, reap, say, sleeping_child};

/// Runs `action` when it is one of these; false when it is not.
pub fn act(action: &str, args: &[String]) -> bool {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match action {
        "pvm-write" => pvm_write(),
        "proc-mem-write" => proc_mem_write(arg(1)),
        "proc-self-mem" => proc_self_mem(),
        "udp-send" => {
            let hold: Option<u32> = args.get(4).and_then(|s| s.parse().ok());
            let child = hold.map(napping_child);
            udp_send(arg(1), dest(arg(2), arg(3)));
            if let Some(secs) = hold {
                // SAFETY: plain sleep; the test kills or waits for us.
                unsafe { libc::sleep(secs) };
            }
            if let Some(c) = child {
                reap(c);
            }
        }
        "tcp-fastopen" => tcp_fastopen(dest(arg(1), arg(2))),
        "io-uring-connect" => io_uring_connect(dest(arg(1), arg(2))),
        "ia32" => ia32::act(arg(1), args.get(2..).unwrap_or(&[])),
        "memfd-alias" => memfd_alias(arg(1)),
        "personality-rw" => personality_rw(),
        "clone-tricks" => clone_tricks(),
        _ => return false,
    }
    true
}

/// Forks a child that sleeps `secs` (no PDEATHSIG: it outlives a killed parent unless
/// procwatch kills it too) and prints `child <pid>`.
fn napping_child(secs: u32) -> libc::pid_t {
    // SAFETY: plain fork; the child only calls async-signal-safe functions.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: close/sleep/_exit are async-signal-safe; stdout closed so the child never
        // holds the test's pipe open.
        unsafe {
            libc::close(1);
            libc::sleep(secs);
            libc::_exit(0);
        }
    }
    if pid < 0 {
        fail("fork");
    }
    say(&format!("child {pid}"));
    pid
}

fn dest(addr: &str, port: &str) -> SocketAddrV4 {
    let ip: Ipv4Addr = addr.parse().unwrap_or_else(|_| fail("IPv4 address"));
    SocketAddrV4::new(ip, port.parse().unwrap_or_else(|_| fail("port")))
}

fn sockaddr(d: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: d.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*d.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

const SOCKADDR_LEN: libc::socklen_t = size_of::<libc::sockaddr_in>() as libc::socklen_t;

/// Memory a forked child shares the address of: the target of the writes.
static mut TARGET: [u8; 64] = [0; 64];

fn target_addr() -> usize {
    (&raw const TARGET) as usize
}

/// `process_vm_writev` into a forked child's copy of `TARGET`.
fn pvm_write() {
    let child = sleeping_child();
    say(&format!("target {child}"));
    let data = *b"injected";
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: target_addr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    say("before");
    // SAFETY: valid iovecs; the remote one names memory the child has (same layout after fork).
    let n = unsafe { libc::process_vm_writev(child, &local, 1, &remote, 1, 0) };
    say(&format!("after {n}"));
    reap(child);
}

/// Opens a forked child's `mem` for writing (`abs`: /proc/PID/mem; `rel`: openat from a /proc
/// directory fd; `task`: /proc/PID/task/PID/mem) and writes into its `TARGET`.
fn proc_mem_write(how: &str) {
    let child = sleeping_child();
    say(&format!("target {child}"));
    let path = match how {
        "task" => format!("/proc/{child}/task/{child}/mem"),
        "rel" => format!("{child}/mem"),
        _ => format!("/proc/{child}/mem"),
    };
    let c = std::ffi::CString::new(path).unwrap_or_else(|_| fail("path"));
    say("before");
    // SAFETY: plain opens of NUL-terminated paths.
    let fd = unsafe {
        if how == "rel" {
            let dir = libc::open(c"/proc".as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
            libc::openat(dir, c.as_ptr(), libc::O_RDWR)
        } else {
            libc::open(c.as_ptr(), libc::O_RDWR)
        }
    };
    if fd < 0 {
        fail("open mem");
    }
    // SAFETY: writing a valid buffer at an offset (the child's address).
    let n = unsafe { libc::pwrite(fd, b"injected".as_ptr().cast(), 8, target_addr() as i64) };
    say(&format!("after {n}"));
    reap(child);
}

/// What some JITs and debuggers do: patch one's own memory through /proc/self/mem.
fn proc_self_mem() {
    say("before");
    // SAFETY: open and write of our own memory at a valid address.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDWR);
        if fd < 0 {
            fail("open /proc/self/mem");
        }
        libc::pwrite(fd, b"patched!".as_ptr().cast(), 8, target_addr() as i64)
    };
    say(&format!("after {n}"));
}

/// A UDP datagram to `d` without connect, by `sendto`, `sendmsg`, or `sendmmsg` (whose first
/// message goes to port 53 so only the second names `d`).
fn udp_send(how: &str, d: SocketAddrV4) {
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        fail("socket");
    }
    let to = sockaddr(d);
    let dns = sockaddr(SocketAddrV4::new(*d.ip(), 53));
    let payload = *b"ping";
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: zeroed msghdr is valid; fields set below.
    let mut msg = |name: &libc::sockaddr_in| {
        let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
        m.msg_name = (name as *const libc::sockaddr_in).cast_mut().cast();
        m.msg_namelen = SOCKADDR_LEN;
        m.msg_iov = &raw mut iov;
        m.msg_iovlen = 1;
        m
    };
    say("before");
    // SAFETY: valid buffers and lengths for each call.
    let n = unsafe {
        match how {
            "sendmsg" => libc::sendmsg(fd, &msg(&to), 0) as i64,
            "sendmmsg" => {
                let mut v = [
                    libc::mmsghdr {
                        msg_hdr: msg(&dns),
                        msg_len: 0,
                    },
                    libc::mmsghdr {
                        msg_hdr: msg(&to),
                        msg_len: 0,
                    },
                ];
                i64::from(libc::sendmmsg(fd, v.as_mut_ptr(), 2, 0))
            }
            _ => libc::sendto(
                fd,
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&raw const to).cast(),
                SOCKADDR_LEN,
            ) as i64,
        }
    };
    say(&format!("after {n}"));
}

/// TCP Fast Open: `sendto(MSG_FASTOPEN)` on an unconnected stream socket connects and sends.
fn tcp_fastopen(d: SocketAddrV4) {
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    if fd < 0 {
        fail("socket");
    }
    let to = sockaddr(d);
    say("before");
    // SAFETY: valid buffer and address.
    let n = unsafe {
        libc::sendto(
            fd,
            b"hi".as_ptr().cast(),
            2,
            libc::MSG_FASTOPEN,
            (&raw const to).cast(),
            SOCKADDR_LEN,
        )
    };
    say(&format!("after {n}"));
}

/// `struct io_uring_params` (uapi io_uring.h), 120 bytes.
#[repr(C)]
#[derive(Default)]
struct UringParams {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    /// head, tail, ring_mask, ring_entries, flags, dropped, array, resv1, user_addr
    sq_off: [u32; 10],
    /// head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1, user_addr
    cq_off: [u32; 10],
}

/// An `IORING_OP_CONNECT` to `d` through a ring of one entry, by raw syscalls.
fn io_uring_connect(d: SocketAddrV4) {
    const IORING_OFF_SQ_RING: i64 = 0;
    const IORING_OFF_SQES: i64 = 0x1000_0000;
    const IORING_OP_CONNECT: u8 = 16;
    const IORING_ENTER_GETEVENTS: u32 = 1;
    let mut p = UringParams::default();
    // SAFETY: io_uring_setup with a valid params struct.
    let ring = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, &raw mut p) } as i32;
    if ring < 0 {
        fail("io_uring_setup");
    }
    let map = |len: usize, off: i64| {
        // SAFETY: mapping the ring's own regions at the offsets the ABI defines.
        let m = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                ring,
                off,
            )
        };
        if m == libc::MAP_FAILED {
            fail("mmap ring");
        }
        m.cast::<u8>()
    };
    let sq_len = p.sq_off[6] as usize + p.sq_entries as usize * 4;
    let sq = map(sq_len.max(4096), IORING_OFF_SQ_RING);
    let sqes = map(64 * p.sq_entries as usize, IORING_OFF_SQES);
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    let to = sockaddr(d);
    // SAFETY: writing the one SQE (64 bytes) and the ring's array/tail inside the mappings.
    unsafe {
        std::ptr::write_bytes(sqes, 0, 64);
        *sqes = IORING_OP_CONNECT;
        *sqes.add(4).cast::<i32>() = fd;
        // off (addr2) = addrlen, addr = sockaddr
        *sqes.add(8).cast::<u64>() = u64::from(SOCKADDR_LEN);
        *sqes.add(16).cast::<u64>() = (&raw const to) as u64;
        *sq.add(p.sq_off[6] as usize).cast::<u32>() = 0;
        let tail = sq.add(p.sq_off[1] as usize).cast::<u32>();
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        tail.write_volatile(tail.read_volatile() + 1);
    }
    say("before");
    // SAFETY: io_uring_enter on our ring.
    let n = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            ring,
            1u32,
            1u32,
            IORING_ENTER_GETEVENTS,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    say(&format!("after {n}"));
}

/// A memfd mapped shared twice, W in one mapping and X in the other (`wx` or `xw`: which
/// comes first; `ww`: both writable, no X, the benign shared-memory case).
fn memfd_alias(order: &str) {
    // SAFETY: plain calls on our own memfd.
    unsafe {
        let fd = libc::memfd_create(c"jit".as_ptr(), 0);
        if fd < 0 || libc::ftruncate(fd, 4096) != 0 {
            fail("memfd");
        }
        let map = |prot| {
            let m = libc::mmap(std::ptr::null_mut(), 4096, prot, libc::MAP_SHARED, fd, 0);
            if m == libc::MAP_FAILED {
                fail("mmap memfd");
            }
        };
        let (w, x) = (
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_READ | libc::PROT_EXEC,
        );
        say("before");
        if order == "xw" {
            map(x);
            map(w);
        } else if order == "ww" {
            map(w);
            map(w);
        } else {
            map(w);
            map(x);
        }
    }
    say("after");
}

/// `personality(READ_IMPLIES_EXEC)`, then a plain read+write mapping (which the kernel makes
/// executable too).
fn personality_rw() {
    const READ_IMPLIES_EXEC: libc::c_ulong = 0x040_0000;
    // SAFETY: personality and an anonymous mapping.
    unsafe {
        if libc::personality(READ_IMPLIES_EXEC) < 0 {
            fail("personality");
        }
        say("before");
        let m = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        say(&format!("after {}", m != libc::MAP_FAILED));
    }
}

/// A clone3 that fails (CLONE_THREAD without CLONE_SIGHAND: no task is made), then a raw
/// `clone(CLONE_PARENT)` whose child is the caller's sibling (its real parent is ours).
/// Prints `failed <rc>` and `child <pid>`; the child exits after 200 ms, unreaped by us.
fn clone_tricks() {
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
    }
    let args = CloneArgs {
        flags: libc::CLONE_THREAD as u64,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: 0,
        stack: 0,
        stack_size: 0,
        tls: 0,
    };
    // SAFETY: clone3 with a valid args struct; the kernel refuses these flags.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, &raw const args, size_of::<CloneArgs>()) };
    say(&format!("failed {rc}"));
    // SAFETY: a fork-like clone (no shared memory); the child only sleeps and _exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: async-signal-safe calls in the child.
        unsafe {
            libc::usleep(200_000);
            libc::_exit(0);
        }
    }
    say(&format!("child {pid}"));
}

/// 32-bit syscalls (`int 0x80`) from this 64-bit process. Their pointers are 32 bits, so
/// everything they point at lives in a `MAP_32BIT` page.
mod ia32 {
    use super::{dest, fail, reap, say, sleeping_child};

    const OPEN: u32 = 5;
    const EXECVE: u32 = 11;
    const PTRACE: u32 = 26;
    const OPENAT: u32 = 295;
    const SOCKETCALL: u32 = 102;
    const MPROTECT: u32 = 125;
    const MMAP2: u32 = 192;
    const PROCESS_VM_WRITEV: u32 = 348;
    const CONNECT: u32 = 362;
    const SENDTO: u32 = 369;

    /// One ia32 syscall. ebx and ebp cannot be named as operands (LLVM reserves them), so
    /// they are saved and loaded by hand.
    fn int80(nr: u32, a: [u32; 6]) -> i32 {
        let ret: i32;
        // SAFETY: the caller passes arguments valid for that syscall; every register the
        // instruction changes is declared or restored.
        unsafe {
            std::arch::asm!(
                "push rbx",
                "push rbp",
                "mov ebx, {a0:e}",
                "mov ebp, {a5:e}",
                "int 0x80",
                "pop rbp",
                "pop rbx",
                a0 = in(reg) a[0],
                a5 = in(reg) a[5],
                inlateout("eax") nr => ret,
                in("ecx") a[1],
                in("edx") a[2],
                in("esi") a[3],
                in("edi") a[4],
            );
        }
        ret
    }

    /// A zeroed read+write page below 4 GiB.
    fn low_page() -> *mut u8 {
        // SAFETY: anonymous private mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            fail("mmap MAP_32BIT");
        }
        p.cast()
    }

    fn low(p: *const u8) -> u32 {
        u32::try_from(p as usize).unwrap_or_else(|_| fail("MAP_32BIT page above 4 GiB"))
    }

    /// Writes a `sockaddr_in` for `d` at `at`.
    fn put_sockaddr(at: *mut u8, d: std::net::SocketAddrV4) {
        let sa = super::sockaddr(d);
        // SAFETY: `at` has room for it inside the low page.
        unsafe { at.cast::<libc::sockaddr_in>().write_unaligned(sa) };
    }

    /// `args` are the ones after `what`; `execve` takes the path and the argv to run.
    pub fn act(what: &str, args: &[String]) {
        let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
        let page = low_page();
        let lp = low(page);
        let rwx = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u32;
        match what {
            "mprotect-wx" => {
                say("before");
                let rc = int80(MPROTECT, [lp, 4096, rwx, 0, 0, 0]);
                say(&format!("after {rc}"));
            }
            "mmap2-wx" => {
                say("before");
                let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32;
                let rc = int80(MMAP2, [0, 4096, rwx, flags, u32::MAX, 0]);
                say(&format!("after {rc}"));
            }
            "ptrace-attach-pid" => {
                let pid: u32 = arg(0).parse().unwrap_or_else(|_| fail("pid"));
                say("before");
                let rc = int80(PTRACE, [libc::PTRACE_ATTACH, pid, 0, 0, 0, 0]);
                say(&format!("after {rc}"));
            }
            "ptrace-attach" => {
                let child = sleeping_child();
                say(&format!("target {child}"));
                say("before");
                let rc = int80(PTRACE, [libc::PTRACE_ATTACH, child as u32, 0, 0, 0, 0]);
                say(&format!("after {rc}"));
                reap(child);
            }
            "connect" | "socketcall-connect" | "sendto" => {
                let d = dest(arg(0), arg(1));
                // SAFETY: plain socket call (64-bit; only the connect is 32-bit).
                let kind = if what == "sendto" {
                    libc::SOCK_DGRAM
                } else {
                    libc::SOCK_STREAM
                };
                let fd = unsafe { libc::socket(libc::AF_INET, kind, 0) } as u32;
                put_sockaddr(page, d);
                say("before");
                let rc = match what {
                    "connect" => int80(CONNECT, [fd, lp, 16, 0, 0, 0]),
                    "sendto" => int80(SENDTO, [fd, lp + 64, 1, 0, lp, 16]),
                    _ => {
                        // socketcall(SYS_CONNECT, {fd, addr, addrlen})
                        let argv = [fd, lp, 16];
                        // SAFETY: the array fits in the page after the sockaddr.
                        unsafe { page.add(64).cast::<[u32; 3]>().write_unaligned(argv) };
                        int80(SOCKETCALL, [3, lp + 64, 0, 0, 0, 0])
                    }
                };
                say(&format!("after {rc}"));
            }
            "open" | "openat" => {
                // A read-only open of the path given, by int 0x80.
                let path = format!("{}\0", arg(0));
                if path.len() > 1024 {
                    fail("path too long");
                }
                // SAFETY: the path fits in the page.
                unsafe { page.copy_from_nonoverlapping(path.as_ptr(), path.len()) };
                say("before");
                let fd = if what == "openat" {
                    int80(OPENAT, [libc::AT_FDCWD as u32, lp, 0, 0, 0, 0])
                } else {
                    int80(OPEN, [lp, 0, 0, 0, 0, 0])
                };
                say(&format!("after {fd}"));
            }
            "proc-mem-write" => {
                // open (or openat from AT_FDCWD) of /proc/PID/mem for writing, by int 0x80;
                // the write itself is an ordinary 64-bit pwrite.
                let child = sleeping_child();
                say(&format!("target {child}"));
                let path = format!("/proc/{child}/mem\0");
                // SAFETY: the path is far shorter than the page.
                unsafe { page.copy_from_nonoverlapping(path.as_ptr(), path.len()) };
                let rdwr = libc::O_RDWR as u32;
                say("before");
                let fd = if arg(0) == "openat" {
                    int80(OPENAT, [libc::AT_FDCWD as u32, lp, rdwr, 0, 0, 0])
                } else {
                    int80(OPEN, [lp, rdwr, 0, 0, 0, 0])
                };
                if fd < 0 {
                    fail("int 0x80 open of mem");
                }
                let target = (&raw const super::TARGET) as i64;
                // SAFETY: writing a valid buffer at the child's copy of TARGET.
                let n = unsafe { libc::pwrite(fd, b"injected".as_ptr().cast(), 8, target) };
                say(&format!("after {n}"));
                reap(child);
            }
            "pvm-write" => {
                // The target buffer is in the low page, which the child inherits.
                let child = sleeping_child();
                say(&format!("target {child}"));
                // SAFETY: compat iovecs {base, len} and the data, all inside the page.
                unsafe {
                    page.add(128)
                        .copy_from_nonoverlapping(b"injected".as_ptr(), 8);
                    page.cast::<[u32; 4]>()
                        .write_unaligned([lp + 128, 8, lp + 256, 8]);
                }
                say("before");
                let rc = int80(PROCESS_VM_WRITEV, [child as u32, lp, 1, lp + 8, 1, 0]);
                say(&format!("after {rc}"));
                reap(child);
            }
            "execve" => {
                // execve(path, argv) with the strings and the 32-bit pointer array in the page.
                let mut at = 1024usize;
                let mut ptrs: Vec<u32> = Vec::new();
                for s in args.iter().filter(|s| s.len() < 256) {
                    // SAFETY: at + len + 1 stays inside the page (at most 8 strings of < 256).
                    unsafe {
                        page.add(at).copy_from_nonoverlapping(s.as_ptr(), s.len());
                        *page.add(at + s.len()) = 0;
                    }
                    ptrs.push(lp + at as u32);
                    at += s.len() + 1;
                    if ptrs.len() == 8 {
                        break;
                    }
                }
                ptrs.push(0);
                // SAFETY: the pointer array fits at the start of the page.
                unsafe {
                    page.cast::<u32>()
                        .copy_from_nonoverlapping(ptrs.as_ptr(), ptrs.len())
                };
                say("before");
                let rc = int80(EXECVE, [ptrs[0], lp, 0, 0, 0, 0]);
                say(&format!("after {rc}"));
            }
            other => {
                eprintln!("pw-actor: unknown ia32 action {other}");
                std::process::exit(2)
            }
        }
    }
}
