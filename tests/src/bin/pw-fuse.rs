//! A FUSE filesystem that hangs: what a monitored process can do to make reads of its
//! executable (a stat, an open, its bytes) block forever. Speaks the kernel's FUSE protocol on /dev/fuse directly (no libfuse, no fusermount:
//! the tests run as root and mount with mount(2)).
//!
//! Usage:
//!   pw-fuse serve MOUNTPOINT PROGRAM
//!       Mounts at MOUNTPOINT a directory with `data` (1 MiB; every READ of it is held forever)
//!       and `prog` (PROGRAM's bytes, mode 0755, served normally). Prints `mounted` once the
//!       mount is up. After SIGUSR1 every request but INIT/FORGET/INTERRUPT is held forever:
//!       a stat of `prog` or an open of a running `prog` then blocks. Ends when the mount goes
//!       away or on SIGTERM/SIGKILL (the kernel then fails every held request).
use std::{
    ffi::CString,
    io::Write,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
};

const LOOKUP: u32 = 1;
const FORGET: u32 = 2;
const GETATTR: u32 = 3;
const OPEN: u32 = 14;
const READ: u32 = 15;
const RELEASE: u32 = 18;
const FLUSH: u32 = 25;
const INIT: u32 = 26;
const OPENDIR: u32 = 27;
const READDIR: u32 = 28;
const RELEASEDIR: u32 = 29;
const INTERRUPT: u32 = 36;
const DESTROY: u32 = 38;
const BATCH_FORGET: u32 = 42;

const IN_HEADER: usize = 40;
const ROOT: u64 = 1;
const DATA: u64 = 2;
const PROG: u64 = 3;
const DATA_SIZE: u64 = 1 << 20;

static HANG_ALL: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    HANG_ALL.store(true, Ordering::SeqCst);
}

fn fail(msg: &str) -> ! {
    eprintln!("pw-fuse: {msg}: {}", std::io::Error::last_os_error());
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") if args.len() == 4 => serve(&args[2], &args[3]),
        _ => {
            eprintln!("usage: pw-fuse serve MOUNTPOINT PROGRAM");
            std::process::exit(2)
        }
    }
}

/// Appends `v` as native-endian bytes.
trait Put {
    fn u32(&mut self, v: u32) -> &mut Self;
    fn u64(&mut self, v: u64) -> &mut Self;
}

impl Put for Vec<u8> {
    fn u32(&mut self, v: u32) -> &mut Self {
        self.extend_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.extend_from_slice(&v.to_ne_bytes());
        self
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

/// `struct fuse_attr` (88 bytes).
fn attr(ino: u64, size: u64, mode: u32, out: &mut Vec<u8>) {
    out.u64(ino).u64(size).u64(size.div_ceil(512));
    out.u64(0).u64(0).u64(0); // atime mtime ctime
    out.u32(0).u32(0).u32(0); // their nsecs
    out.u32(mode).u32(1).u32(0).u32(0).u32(0).u32(4096).u32(0);
}

/// `struct fuse_entry_out` with no caching: every lookup and stat comes back to the server.
fn entry(ino: u64, size: u64, mode: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.u64(ino).u64(0).u64(0).u64(0).u32(0).u32(0);
    attr(ino, size, mode, &mut out);
    out
}

fn serve(mountpoint: &str, program: &str) -> ! {
    let prog = std::fs::read(program).unwrap_or_else(|_| fail("read PROGRAM"));
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGUSR1,
            on_usr1 as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    // SAFETY: a NUL-terminated path; the result is checked.
    let raw = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        fail("open /dev/fuse");
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    let dev = unsafe { OwnedFd::from_raw_fd(raw) };
    let target = CString::new(mountpoint).unwrap_or_else(|_| fail("MOUNTPOINT"));
    let opts = CString::new(format!(
        "fd={raw},rootmode=40000,user_id=0,group_id=0,allow_other"
    ))
    .unwrap_or_else(|_| fail("options"));
    // SAFETY: NUL-terminated strings; the result is checked.
    let rc = unsafe {
        libc::mount(
            c"pw-fuse".as_ptr(),
            target.as_ptr(),
            c"fuse".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        fail("mount");
    }
    println!("mounted");
    let _ = std::io::stdout().flush();
    let mut buf = vec![0u8; (1 << 20) + 4096];
    loop {
        // SAFETY: a valid descriptor and a writable buffer of that length.
        let n = unsafe { libc::read(dev.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR | libc::EAGAIN | libc::ENOENT) => continue,
                // ENODEV: unmounted.
                _ => std::process::exit(0),
            }
        }
        let req = &buf[..usize::try_from(n).unwrap_or(0)];
        if req.len() < IN_HEADER {
            continue;
        }
        let opcode = u32_at(req, 4);
        let unique = u64_at(req, 8);
        let node = u64_at(req, 16);
        let body = &req[IN_HEADER..];
        if matches!(opcode, FORGET | BATCH_FORGET | INTERRUPT) {
            continue; // no reply expected
        }
        if HANG_ALL.load(Ordering::SeqCst) && opcode != INIT {
            continue; // held forever
        }
        let answer: Result<Vec<u8>, i32> = match opcode {
            INIT => {
                let max_readahead = u32_at(body, 8);
                let mut out = Vec::with_capacity(64);
                out.u32(7).u32(31).u32(max_readahead).u32(0);
                out.extend_from_slice(&16u16.to_ne_bytes()); // max_background
                out.extend_from_slice(&12u16.to_ne_bytes()); // congestion_threshold
                out.u32(128 * 1024).u32(1); // max_write, time_gran
                out.extend_from_slice(&32u16.to_ne_bytes()); // max_pages
                out.extend_from_slice(&0u16.to_ne_bytes()); // map_alignment
                out.u32(0).u32(0); // flags2, max_stack_depth
                out.resize(64, 0);
                Ok(out)
            }
            LOOKUP => {
                let name = body.split(|&b| b == 0).next().unwrap_or_default();
                match (node, name) {
                    (ROOT, b"data") => Ok(entry(DATA, DATA_SIZE, libc::S_IFREG | 0o644)),
                    (ROOT, b"prog") => Ok(entry(PROG, prog.len() as u64, libc::S_IFREG | 0o755)),
                    _ => Err(libc::ENOENT),
                }
            }
            GETATTR => {
                let mut out = Vec::with_capacity(104);
                out.u64(0).u32(0).u32(0);
                match node {
                    ROOT => attr(ROOT, 0, libc::S_IFDIR | 0o755, &mut out),
                    DATA => attr(DATA, DATA_SIZE, libc::S_IFREG | 0o644, &mut out),
                    PROG => attr(PROG, prog.len() as u64, libc::S_IFREG | 0o755, &mut out),
                    _ => {}
                }
                if out.len() > 16 {
                    Ok(out)
                } else {
                    Err(libc::ENOENT)
                }
            }
            OPEN | OPENDIR => {
                // FOPEN_KEEP_CACHE: an open does not drop the pages already read, so a running
                // `prog` whose file was read whole never needs the server again.
                let mut out = Vec::with_capacity(16);
                out.u64(0).u32(2).u32(0);
                Ok(out)
            }
            // Every read of `data` waits forever: that is what the file is for.
            READ if node == DATA => continue,
            READ if node == PROG => {
                let offset = usize::try_from(u64_at(body, 8)).unwrap_or(usize::MAX);
                let size = usize::try_from(u32_at(body, 16)).unwrap_or(0);
                let start = offset.min(prog.len());
                let end = start.saturating_add(size).min(prog.len());
                Ok(prog[start..end].to_vec())
            }
            READDIR => Ok(Vec::new()),
            RELEASE | RELEASEDIR | FLUSH => Ok(Vec::new()),
            DESTROY => {
                reply(&dev, unique, Ok(Vec::new()));
                std::process::exit(0)
            }
            _ => Err(libc::ENOSYS),
        };
        reply(&dev, unique, answer);
    }
}

/// Writes `struct fuse_out_header` and the payload (or the negated errno).
fn reply(dev: &OwnedFd, unique: u64, r: Result<Vec<u8>, i32>) {
    let (error, payload) = match r {
        Ok(p) => (0i32, p),
        Err(e) => (-e, Vec::new()),
    };
    let mut out = Vec::with_capacity(16 + payload.len());
    out.u32(16 + payload.len() as u32);
    out.extend_from_slice(&error.to_ne_bytes());
    out.u64(unique);
    out.extend_from_slice(&payload);
    // SAFETY: a valid descriptor and a buffer of that length. A failed write (the request was
    // interrupted meanwhile) needs nothing more.
    unsafe { libc::write(dev.as_raw_fd(), out.as_ptr().cast(), out.len()) };
}
