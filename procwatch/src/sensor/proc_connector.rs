//! The netlink process connector: the fallback source of exec, fork and exit when eBPF cannot
//! load. The kernel multicasts one small message per event; exec is enriched from /proc at once,
//! because the connector only says *that* a pid exec'd, not what.
//!
//! Every datagram goes through [`decode_proc_event`], which checks each length before reading.
//! Only datagrams from the kernel (sender port 0) are accepted.
use std::{
    collections::{BTreeSet, HashMap},
    ffi::OsString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, warn};

use super::{
    event::{Event, EventBody, EventKind, Exec, Exit, Fork, SensorKind},
    stats::SensorStats,
    sweep::INVALID_ID,
};
use crate::{
    procfs::{Depth, sample, stat::StatReader},
    text::{os_from_bytes, until_nul},
};

const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const PROC_EVENT_HDRLEN: usize = 16;
/// Where `struct proc_event` starts in a datagram.
const EVENT_OFFSET: usize = NLMSG_HDRLEN + CN_MSG_LEN;

const NLMSG_NOOP: u16 = 1;
const NLMSG_DONE: u16 = 3;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_CN_MCAST_IGNORE: u32 = 2;

/// Receive buffer asked of the kernel: room for tens of thousands of events in a burst.
const RCVBUF_BYTES: libc::c_int = 8 * 1024 * 1024;
/// One connector datagram is under 100 bytes; a page leaves room and detects oversize ones.
const RECV_BUF_LEN: usize = 4096;
/// Events decoded before they are handed on, so one burst cannot starve the runtime.
const BATCH: usize = 256;
/// At most one overrun warning per this interval; every overrun is still counted.
const OVERRUN_WARN_EVERY: Duration = Duration::from_secs(5);
/// Processes whose identity is remembered; far above the live process count of a host.
const IDENTITIES_CAP: usize = 1 << 16;

/// `enum proc_cn_event` values procwatch knows, read through `TryFrom<u32>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    None,
    Fork,
    Exec,
    Uid,
    Gid,
    Sid,
    Ptrace,
    Comm,
    NonzeroExit,
    Coredump,
    Exit,
}

impl TryFrom<u32> for What {
    type Error = ProcDecodeError;
    fn try_from(what: u32) -> Result<Self, Self::Error> {
        Ok(match what {
            0 => What::None,
            0x1 => What::Fork,
            0x2 => What::Exec,
            0x4 => What::Uid,
            0x40 => What::Gid,
            0x80 => What::Sid,
            0x100 => What::Ptrace,
            0x200 => What::Comm,
            0x2000_0000 => What::NonzeroExit,
            0x4000_0000 => What::Coredump,
            0x8000_0000 => What::Exit,
            other => return Err(ProcDecodeError::UnknownWhat(other)),
        })
    }
}

/// Why a connector datagram was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcDecodeError {
    /// Shorter than a header it must contain.
    #[error("datagram of {len} bytes is too short for {what} (needs {need})")]
    TooShort {
        /// Which part did not fit.
        what: &'static str,
        /// Bytes available.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A length field points outside the datagram.
    #[error("{field} is {value} but only {available} bytes are there")]
    BadLength {
        /// Field name.
        field: &'static str,
        /// The claimed length.
        value: usize,
        /// What the datagram holds.
        available: usize,
    },
    /// A netlink message type the connector never sends.
    #[error("unexpected netlink message type {0}")]
    UnexpectedType(u16),
    /// Not a process connector message.
    #[error("connector message for {idx}:{val}, not the process connector")]
    NotProcConnector {
        /// cb_id.idx
        idx: u32,
        /// cb_id.val
        val: u32,
    },
    /// A `what` tag this build does not know.
    #[error("unknown process event {0:#x}")]
    UnknownWhat(u32),
}

/// One process-connector event procwatch uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// Answer to a (un)subscribe request; `err` is an errno, 0 for success.
    Ack {
        /// errno from the kernel.
        err: u32,
    },
    /// A task was created (a thread when child_pid != child_tgid).
    Fork {
        /// CLOCK_MONOTONIC ns.
        ktime_ns: u64,
        /// Thread that forked.
        parent_pid: u32,
        /// Its process.
        parent_tgid: u32,
        /// New task.
        child_pid: u32,
        /// Its process.
        child_tgid: u32,
    },
    /// A task's real or effective uid changed.
    Uid {
        /// Thread id.
        pid: u32,
        /// Process id.
        tgid: u32,
        /// New real uid.
        ruid: u32,
    },
    /// A task's real or effective gid changed.
    Gid {
        /// Thread id.
        pid: u32,
        /// Process id.
        tgid: u32,
        /// New real gid.
        rgid: u32,
    },
    /// A task renamed itself (prctl PR_SET_NAME or /proc/<pid>/comm).
    Comm {
        /// Thread id.
        pid: u32,
        /// Process id.
        tgid: u32,
        /// New comm, NUL-padded.
        comm: [u8; 16],
    },
    /// A task exec'd.
    Exec {
        /// CLOCK_MONOTONIC ns.
        ktime_ns: u64,
        /// Thread id.
        pid: u32,
        /// Process id.
        tgid: u32,
    },
    /// A task exited.
    Exit {
        /// CLOCK_MONOTONIC ns.
        ktime_ns: u64,
        /// Thread id.
        pid: u32,
        /// Process id.
        tgid: u32,
        /// Wait status (as from waitpid).
        exit_code: u32,
        /// Signal the parent is sent (normally SIGCHLD), not the cause of death.
        exit_signal: u32,
    },
}

// The readers below index only ranges `decode_proc_event` has length-checked.
fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(bytes)
}

fn need(what: &'static str, len: usize, need: usize) -> Result<(), ProcDecodeError> {
    if len < need {
        return Err(ProcDecodeError::TooShort { what, len, need });
    }
    Ok(())
}

/// Decodes one connector datagram (the kernel sends one netlink message per datagram).
///
/// `Ok(None)` is a valid message procwatch has no use for (sid, ptrace, coredump, no-op).
pub fn decode_proc_event(buf: &[u8]) -> Result<Option<ProcEvent>, ProcDecodeError> {
    need("the netlink header", buf.len(), NLMSG_HDRLEN)?;
    let nlmsg_len = u32_at(buf, 0) as usize;
    if nlmsg_len < NLMSG_HDRLEN || nlmsg_len > buf.len() {
        return Err(ProcDecodeError::BadLength {
            field: "nlmsg_len",
            value: nlmsg_len,
            available: buf.len(),
        });
    }
    // Bytes past nlmsg_len are alignment padding; nothing is read from them.
    let msg = &buf[..nlmsg_len];
    match u16_at(msg, 4) {
        NLMSG_DONE => {}
        NLMSG_NOOP => return Ok(None),
        other => return Err(ProcDecodeError::UnexpectedType(other)),
    }
    need("the connector header", msg.len(), NLMSG_HDRLEN + CN_MSG_LEN)?;
    let (idx, val) = (u32_at(msg, 16), u32_at(msg, 20));
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC) {
        return Err(ProcDecodeError::NotProcConnector { idx, val });
    }
    let data_len = usize::from(u16_at(msg, 32));
    if EVENT_OFFSET + data_len > msg.len() {
        return Err(ProcDecodeError::BadLength {
            field: "cn_msg.len",
            value: data_len,
            available: msg.len() - EVENT_OFFSET,
        });
    }
    let ev = &msg[EVENT_OFFSET..EVENT_OFFSET + data_len];
    need("the process event header", ev.len(), PROC_EVENT_HDRLEN)?;
    let what = What::try_from(u32_at(ev, 0))?;
    let ktime_ns = u64_at(ev, 8);
    let body_len = |n: usize| need("the event body", ev.len(), PROC_EVENT_HDRLEN + n);
    let d = PROC_EVENT_HDRLEN;
    Ok(Some(match what {
        What::None => {
            body_len(4)?;
            ProcEvent::Ack { err: u32_at(ev, d) }
        }
        What::Fork => {
            body_len(16)?;
            ProcEvent::Fork {
                ktime_ns,
                parent_pid: u32_at(ev, d),
                parent_tgid: u32_at(ev, d + 4),
                child_pid: u32_at(ev, d + 8),
                child_tgid: u32_at(ev, d + 12),
            }
        }
        What::Exec => {
            body_len(8)?;
            ProcEvent::Exec {
                ktime_ns,
                pid: u32_at(ev, d),
                tgid: u32_at(ev, d + 4),
            }
        }
        What::Exit => {
            body_len(16)?;
            ProcEvent::Exit {
                ktime_ns,
                pid: u32_at(ev, d),
                tgid: u32_at(ev, d + 4),
                exit_code: u32_at(ev, d + 8),
                exit_signal: u32_at(ev, d + 12),
            }
        }
        What::Uid => {
            body_len(16)?;
            ProcEvent::Uid {
                pid: u32_at(ev, d),
                tgid: u32_at(ev, d + 4),
                ruid: u32_at(ev, d + 8),
            }
        }
        What::Gid => {
            body_len(16)?;
            ProcEvent::Gid {
                pid: u32_at(ev, d),
                tgid: u32_at(ev, d + 4),
                rgid: u32_at(ev, d + 8),
            }
        }
        What::Comm => {
            body_len(24)?;
            let mut comm = [0u8; 16];
            comm.copy_from_slice(&ev[d + 8..d + 24]);
            ProcEvent::Comm {
                pid: u32_at(ev, d),
                tgid: u32_at(ev, d + 4),
                comm,
            }
        }
        What::Sid | What::Ptrace | What::NonzeroExit | What::Coredump => return Ok(None),
    }))
}

/// The exit status of a wait status word, when the process exited normally (not by a signal).
pub fn exit_status(wait_status: u32) -> Option<i32> {
    let status = wait_status as libc::c_int;
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

/// Why the connector could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A socket call failed.
    #[error("netlink process connector: {step} failed: {source}{}", hint(source))]
    Socket {
        /// Which call.
        step: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel ignores subscriptions from outside the initial PID and user namespaces.
    #[error(
        "netlink process connector: procwatch runs in a {0} namespace other than the host's, \
         where the kernel silently ignores subscriptions; run procwatch on the host \
         (e.g. a container with --pid=host and without a user namespace)"
    )]
    Namespace(&'static str),
}

fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            " (before Linux 6.6 subscribing needs root or CAP_NET_ADMIN)"
        }
        Some(libc::EPROTONOSUPPORT) => " (kernel built without CONFIG_PROC_EVENTS)",
        _ => "",
    }
}

fn os_err(step: &'static str) -> ConnectorError {
    ConnectorError::Socket {
        step,
        source: io::Error::last_os_error(),
    }
}

/// A subscribed process-connector socket. Dropping it unsubscribes.
pub struct ProcConnector {
    fd: OwnedFd,
}

impl ProcConnector {
    /// Opens the socket, joins the process-events group and asks the kernel to start sending.
    pub fn subscribe() -> Result<Self, ConnectorError> {
        check_namespaces()?;
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(os_err("socket(NETLINK_CONNECTOR)"));
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_rcvbuf(&fd);
        // SAFETY: all-zero is a valid sockaddr_nl; the fields that matter are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = CN_IDX_PROC;
        // SAFETY: valid address of the stated length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os_err("bind"));
        }
        let connector = Self { fd };
        connector.send_op(PROC_CN_MCAST_LISTEN)?;
        Ok(connector)
    }

    /// Sends a multicast control op. The 4-byte form works on every kernel; the 8-byte
    /// filtered form (6.6+) would be silently ignored by older kernels.
    fn send_op(&self, op: u32) -> Result<(), ConnectorError> {
        let msg = control_message(op);
        // SAFETY: valid buffer of the given length; netlink's default destination is the kernel.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(os_err("send(PROC_CN_MCAST_*)"));
        }
        Ok(())
    }

    /// Starts the task that turns connector messages into events until `stop` fires.
    pub fn spawn(
        self,
        ctx: ConnectorContext,
        stop: watch::Receiver<bool>,
    ) -> Result<JoinHandle<()>, ConnectorError> {
        // SAFETY: the socket is an OwnedFd that `self` owns and never replaces; it stays open
        // until the AsyncFd (which owns `self`) is dropped.
        let fd =
            unsafe { AsyncFd::register_with_interest(self, Interest::READABLE) }.map_err(|e| {
                ConnectorError::Socket {
                    step: "registering with the runtime",
                    source: e.into_parts().1,
                }
            })?;
        Ok(tokio::spawn(read_loop(fd, ctx, stop)))
    }

    /// One non-blocking recv; `Ok(None)` for a datagram not sent by the kernel.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: all-zero is a valid sockaddr_nl, filled in by the kernel.
        let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut from_len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: valid buffer and address pointers with their lengths. MSG_TRUNC makes the
        // return value the real datagram size, so an oversize one is detected, not misread.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&raw mut from).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if from.nl_pid != 0 {
            return Ok(None);
        }
        Ok(Some(n.unsigned_abs()))
    }
}

impl AsRawFd for ProcConnector {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for ProcConnector {
    fn drop(&mut self) {
        // The kernel counts listeners and keeps generating events while any is left; closing
        // the socket alone does not decrement that count.
        if let Err(e) = self.send_op(PROC_CN_MCAST_IGNORE) {
            debug!(error = %e, "unsubscribing from the process connector failed");
        }
    }
}

/// Fails when procwatch is certainly outside the initial PID or user namespace; when the
/// files cannot be read it lets the subscription try.
fn check_namespaces() -> Result<(), ConnectorError> {
    if let Ok(status) = std::fs::read("/proc/self/status")
        && nested_pid_namespace(&status)
    {
        return Err(ConnectorError::Namespace("PID"));
    }
    if let Ok(map) = std::fs::read("/proc/self/uid_map")
        && !is_initial_uid_map(&map)
    {
        return Err(ConnectorError::Namespace("user"));
    }
    Ok(())
}

/// `NSpid:` lists one pid per PID namespace level; more than one means a nested namespace.
fn nested_pid_namespace(status: &[u8]) -> bool {
    status
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"NSpid:"))
        .is_some_and(|pids| {
            pids.split(|b| b.is_ascii_whitespace())
                .filter(|f| !f.is_empty())
                .count()
                > 1
        })
}

/// The initial user namespace maps every uid to itself: `0 0 4294967295`.
fn is_initial_uid_map(map: &[u8]) -> bool {
    let fields: Vec<&[u8]> = map
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .collect();
    fields == [b"0".as_slice(), b"0", b"4294967295"]
}

fn set_rcvbuf(fd: &OwnedFd) {
    let size: libc::c_int = RCVBUF_BYTES;
    for (opt, name) in [
        (libc::SO_RCVBUFFORCE, "SO_RCVBUFFORCE"),
        (libc::SO_RCVBUF, "SO_RCVBUF"),
    ] {
        // SAFETY: valid pointer to a c_int of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
        debug!(option = name, error = %io::Error::last_os_error(), "cannot enlarge the netlink receive buffer");
    }
}

/// nlmsghdr + cn_msg + the 4-byte op, in native byte order.
fn control_message(op: u32) -> Vec<u8> {
    let total = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&std::process::id().to_ne_bytes());
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&op.to_ne_bytes());
    m
}

/// What the connector learned about a pid, for the sweeper: lets it report only what the
/// connector missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The pid started (fork) or exec'd.
    Started(u32),
    /// The process exited.
    Exited(u32),
    /// Messages were lost; a sweep soon would help.
    Overrun,
}

/// Everything the reader task needs besides the socket.
pub struct ConnectorContext {
    /// Where events go.
    pub tx: mpsc::Sender<Event>,
    /// Loss and delivery counters.
    pub stats: Arc<SensorStats>,
    /// Kinds to emit.
    pub kinds: BTreeSet<EventKind>,
    /// Notes for the sweeper, when one runs.
    pub seen: Option<mpsc::Sender<Seen>>,
}

/// Who a process is, as far as event headers go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Who {
    uid: u32,
    gid: u32,
    comm: OsString,
}

impl Who {
    const UNKNOWN: Who = Who {
        uid: INVALID_ID,
        gid: INVALID_ID,
        comm: OsString::new(),
    };
}

/// Who each live process is, as last seen, so the exit of a process reaped before /proc could
/// be read still names it. The connector's own uid/gid/comm messages keep it current; it is
/// cleared on overrun (a missed change would make it lie) and when full (bounded memory).
#[derive(Debug, Default)]
struct Identities {
    map: HashMap<u32, Who>,
}

impl Identities {
    fn insert(&mut self, tgid: u32, who: Who) {
        if self.map.len() >= IDENTITIES_CAP && !self.map.contains_key(&tgid) {
            self.map.clear();
        }
        self.map.insert(tgid, who);
    }

    fn update(&mut self, tgid: u32, f: impl FnOnce(&mut Who)) {
        if let Some(who) = self.map.get_mut(&tgid) {
            f(who);
        }
    }
}

struct Reader {
    ctx: ConnectorContext,
    stat: StatReader,
    ids: Identities,
    self_tgid: u32,
    buf: Vec<u8>,
    overruns: u64,
    last_overrun_warning: Option<Instant>,
}

async fn read_loop(
    fd: AsyncFd<ProcConnector>,
    ctx: ConnectorContext,
    mut stop: watch::Receiver<bool>,
) {
    let mut r = Reader {
        ctx,
        stat: StatReader::default(),
        ids: Identities::default(),
        self_tgid: std::process::id(),
        buf: vec![0; RECV_BUF_LEN],
        overruns: 0,
        last_overrun_warning: None,
    };
    let mut batch = Vec::with_capacity(BATCH);
    while !*stop.borrow() {
        tokio::select! {
            guard = fd.readable() => {
                let mut guard = match guard {
                    Ok(g) => g,
                    Err(e) => {
                        warn!(error = %e, "process connector poll failed; connector reader stops");
                        return;
                    }
                };
                let drained = r.fill(guard.get_inner(), &mut batch);
                if drained {
                    guard.clear_ready();
                }
                if !r.send(&mut batch).await {
                    return;
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Deliver what the kernel had already queued when the stop came.
    loop {
        let drained = r.fill(fd.get_ref(), &mut batch);
        if !r.send(&mut batch).await || drained {
            break;
        }
    }
}

impl Reader {
    /// Reads datagrams into `batch` until the socket is empty (returns true) or the batch is
    /// full (returns false).
    fn fill(&mut self, conn: &ProcConnector, batch: &mut Vec<Event>) -> bool {
        while batch.len() < BATCH {
            match conn.recv(&mut self.buf) {
                Ok(Some(n)) => self.handle_datagram(n, batch),
                Ok(None) => {
                    self.ctx.stats.malformed();
                    debug!("datagram from a non-kernel sender ignored");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => self.overrun(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Unexpected, but the socket stays usable; never stop on one bad recv.
                    self.ctx.stats.malformed();
                    warn!(error = %e, "process connector recv failed");
                    return true;
                }
            }
        }
        false
    }

    fn handle_datagram(&mut self, n: usize, batch: &mut Vec<Event>) {
        let Some(bytes) = self.buf.get(..n) else {
            self.ctx.stats.malformed();
            debug!(size = n, "oversize connector datagram skipped");
            return;
        };
        match decode_proc_event(bytes) {
            Ok(Some(ev)) => {
                self.note(&ev);
                if let Some(event) = self.handle(ev)
                    && self.ctx.kinds.contains(&event.kind())
                {
                    batch.push(event);
                }
            }
            Ok(None) => {}
            Err(e) => {
                self.ctx.stats.malformed();
                debug!(error = %e, "malformed connector datagram skipped");
            }
        }
    }

    fn overrun(&mut self) {
        // ENOBUFS says only that something was dropped, not how much: count at least one.
        self.ctx.stats.fallback_lost(1);
        self.overruns += 1;
        self.ids.map.clear();
        self.tell_sweeper(Seen::Overrun);
        let now = Instant::now();
        if self
            .last_overrun_warning
            .is_none_or(|t| now.duration_since(t) >= OVERRUN_WARN_EVERY)
        {
            self.last_overrun_warning = Some(now);
            warn!(
                overruns = self.overruns,
                "process connector overrun: the kernel dropped events (counted as lost); \
                 a /proc sweep will catch up on processes"
            );
        }
    }

    fn note(&self, ev: &ProcEvent) {
        match *ev {
            ProcEvent::Fork {
                child_pid,
                child_tgid,
                ..
            } if child_pid == child_tgid => self.tell_sweeper(Seen::Started(child_tgid)),
            ProcEvent::Exec { tgid, .. } => self.tell_sweeper(Seen::Started(tgid)),
            ProcEvent::Exit { pid, tgid, .. } if pid == tgid => {
                self.tell_sweeper(Seen::Exited(tgid));
            }
            _ => {}
        }
    }

    fn tell_sweeper(&self, seen: Seen) {
        // A full queue only means the sweeper may report a process the connector also saw.
        if let Some(tx) = &self.ctx.seen {
            let _ = tx.try_send(seen);
        }
    }

    /// Updates the identities and returns the event for a message, if it makes one.
    fn handle(&mut self, ev: ProcEvent) -> Option<Event> {
        match ev {
            ProcEvent::Ack { err } => {
                if err != 0 {
                    warn!(errno = err, error = %io::Error::from_raw_os_error(err as i32),
                        "the kernel refused the process connector subscription");
                }
                None
            }
            ProcEvent::Uid { tgid, ruid, .. } => {
                self.ids.update(tgid, |w| w.uid = ruid);
                None
            }
            ProcEvent::Gid { tgid, rgid, .. } => {
                self.ids.update(tgid, |w| w.gid = rgid);
                None
            }
            ProcEvent::Comm { pid, tgid, comm } => {
                // A process is named after its leader thread.
                if pid == tgid {
                    self.ids
                        .update(tgid, |w| w.comm = os_from_bytes(until_nul(&comm)));
                }
                None
            }
            ProcEvent::Fork {
                ktime_ns,
                parent_pid,
                parent_tgid,
                child_pid,
                child_tgid,
            } => (child_pid == child_tgid)
                .then(|| self.fork_event(ktime_ns, parent_pid, parent_tgid, child_tgid))
                .flatten(),
            ProcEvent::Exec {
                ktime_ns,
                pid,
                tgid,
            } => self.exec_event(ktime_ns, pid, tgid),
            ProcEvent::Exit {
                ktime_ns,
                pid,
                tgid,
                exit_code,
                ..
            } => (pid == tgid)
                .then(|| self.exit_event(ktime_ns, tgid, exit_code))
                .flatten(),
        }
    }

    /// Who `tgid` is: remembered, else read from /proc (and remembered), else unknown.
    fn who(&mut self, tgid: u32) -> Who {
        if let Some(who) = self.ids.map.get(&tgid) {
            return who.clone();
        }
        match self.stat.both(tgid) {
            Ok((stat, status)) => {
                let who = Who {
                    uid: status.uid,
                    gid: status.gid,
                    comm: stat.comm,
                };
                self.ids.insert(tgid, who.clone());
                who
            }
            Err(_) => Who::UNKNOWN,
        }
    }

    fn fork_event(
        &mut self,
        ktime_ns: u64,
        parent_pid: u32,
        parent_tgid: u32,
        child_tgid: u32,
    ) -> Option<Event> {
        let who = self.who(parent_tgid);
        // The child starts as a copy of its parent.
        self.ids.insert(child_tgid, who.clone());
        if parent_tgid == self.self_tgid {
            return None;
        }
        let body = EventBody::Fork(Fork {
            parent_tgid,
            child_tgid,
            child_start_time_ns: None,
        });
        Some(event(who, ktime_ns, parent_pid, parent_tgid, None, body))
    }

    fn exit_event(&mut self, ktime_ns: u64, tgid: u32, wait_status: u32) -> Option<Event> {
        // The zombie may still be in /proc, but the parent may have reaped it already.
        let who = match self.ids.map.remove(&tgid) {
            Some(who) => who,
            None => self.who(tgid),
        };
        self.ids.map.remove(&tgid);
        if tgid == self.self_tgid {
            return None;
        }
        let body = EventBody::Exit(Exit {
            exit_code: exit_status(wait_status),
        });
        Some(event(who, ktime_ns, tgid, tgid, None, body))
    }

    /// An exec event, enriched from /proc at once: a short-lived process is gone within
    /// milliseconds, and then only `args_missing` can be said.
    fn exec_event(&mut self, ktime_ns: u64, pid: u32, tgid: u32) -> Option<Event> {
        let mut start_time_ns = None;
        let body = match sample::take(tgid, Depth::Identity, &sample::Interest::none()) {
            Ok(info) => {
                // /proc names the process that holds the pid now: it is the one that exec'd
                // only if it started no later than the exec (else the pid was recycled).
                if crate::identity::started_by(info.start_ticks, ktime_ns) {
                    start_time_ns = crate::identity::boot_ns_from_ticks(info.start_ticks);
                }
                let who = Who {
                    uid: info.uid,
                    gid: info.gid,
                    comm: info.name,
                };
                self.ids.insert(tgid, who);
                EventBody::Exec(Exec {
                    filename: info.exe.unwrap_or_default(),
                    args_missing: info.cmdline.is_empty(),
                    argv: info.cmdline,
                    args_truncated: info.cmdline_truncated,
                    ppid: info.ppid,
                    old_pid: pid,
                    exe: None,
                    resolved: Default::default(),
                })
            }
            Err(_) => {
                // exec keeps the real uid/gid but renames the process to a name not known here.
                self.ids.update(tgid, |w| w.comm = OsString::new());
                EventBody::Exec(Exec {
                    filename: PathBuf::new(),
                    argv: Vec::new(),
                    args_truncated: false,
                    args_missing: true,
                    ppid: 0,
                    old_pid: pid,
                    exe: None,
                    resolved: Default::default(),
                })
            }
        };
        if tgid == self.self_tgid {
            return None;
        }
        let who = self.ids.map.get(&tgid).cloned().unwrap_or(Who::UNKNOWN);
        Some(event(who, ktime_ns, pid, tgid, start_time_ns, body))
    }

    /// Hands the batch on; false when the consumer has gone away.
    async fn send(&self, batch: &mut Vec<Event>) -> bool {
        for event in batch.drain(..) {
            let kind = event.kind();
            if self.ctx.tx.send(event).await.is_err() {
                return false;
            }
            self.ctx.stats.received(kind);
        }
        true
    }
}

fn event(
    who: Who,
    ktime_ns: u64,
    pid: u32,
    tgid: u32,
    start_time_ns: Option<u64>,
    body: EventBody,
) -> Event {
    Event {
        sensor: SensorKind::ProcConnector,
        ktime_ns,
        pid,
        tgid,
        uid: who.uid,
        gid: who.gid,
        comm: who.comm,
        start_time_ns,
        kernel_action: None,
        compat: false,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram as the kernel builds it: nlmsghdr, cn_msg, proc_event header, body.
    fn datagram(what: u32, body: &[u32]) -> Vec<u8> {
        let data_len = PROC_EVENT_HDRLEN + body.len() * 4;
        let total = EVENT_OFFSET + data_len;
        let mut m = Vec::new();
        m.extend_from_slice(&(total as u32).to_ne_bytes());
        m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&9u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(data_len as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&what.to_ne_bytes());
        m.extend_from_slice(&1u32.to_ne_bytes()); // cpu
        m.extend_from_slice(&123_456_789_012u64.to_ne_bytes());
        for v in body {
            m.extend_from_slice(&v.to_ne_bytes());
        }
        m
    }

    #[test]
    fn fork_exec_exit_decode() {
        let fork = datagram(0x1, &[10, 10, 11, 11, 0, 0]);
        assert_eq!(
            decode_proc_event(&fork),
            Ok(Some(ProcEvent::Fork {
                ktime_ns: 123_456_789_012,
                parent_pid: 10,
                parent_tgid: 10,
                child_pid: 11,
                child_tgid: 11
            }))
        );
        let exec = datagram(0x2, &[20, 20, 0, 0, 0, 0]);
        assert_eq!(
            decode_proc_event(&exec),
            Ok(Some(ProcEvent::Exec {
                ktime_ns: 123_456_789_012,
                pid: 20,
                tgid: 20
            }))
        );
        let exit = datagram(0x8000_0000, &[30, 30, 7 << 8, 17, 1, 1]);
        assert_eq!(
            decode_proc_event(&exit),
            Ok(Some(ProcEvent::Exit {
                ktime_ns: 123_456_789_012,
                pid: 30,
                tgid: 30,
                exit_code: 7 << 8,
                exit_signal: 17
            }))
        );
        assert_eq!(
            decode_proc_event(&datagram(0, &[0])),
            Ok(Some(ProcEvent::Ack { err: 0 }))
        );
    }

    #[test]
    fn identity_changes_decode() {
        assert_eq!(
            decode_proc_event(&datagram(0x4, &[5, 5, 1000, 0])),
            Ok(Some(ProcEvent::Uid {
                pid: 5,
                tgid: 5,
                ruid: 1000
            }))
        );
        assert_eq!(
            decode_proc_event(&datagram(0x40, &[5, 5, 100, 0])),
            Ok(Some(ProcEvent::Gid {
                pid: 5,
                tgid: 5,
                rgid: 100
            }))
        );
        let name = u32::from_ne_bytes(*b"ev\nl");
        let comm = datagram(0x200, &[6, 5, name, 0xff, 0, 0]);
        let Ok(Some(ProcEvent::Comm { pid, tgid, comm })) = decode_proc_event(&comm) else {
            panic!("comm not decoded")
        };
        assert_eq!((pid, tgid), (6, 5));
        assert_eq!(&comm[..5], b"ev\nl\xff");
        // A comm message too short for its 16-byte name.
        assert!(decode_proc_event(&datagram(0x200, &[6, 5, name])).is_err());
    }

    #[test]
    fn ignored_kinds_and_padding() {
        // sid and ptrace changes: valid, not used.
        assert_eq!(decode_proc_event(&datagram(0x80, &[1, 1])), Ok(None));
        assert_eq!(decode_proc_event(&datagram(0x100, &[1, 1, 2, 2])), Ok(None));
        // Trailing alignment padding past nlmsg_len is ignored.
        let mut padded = datagram(0x2, &[5, 5]);
        padded.extend_from_slice(&[0xff; 4]);
        assert!(matches!(
            decode_proc_event(&padded),
            Ok(Some(ProcEvent::Exec { pid: 5, .. }))
        ));
    }

    #[test]
    fn unknown_what_is_rejected() {
        assert_eq!(
            decode_proc_event(&datagram(0x8, &[1, 1, 0, 0])),
            Err(ProcDecodeError::UnknownWhat(0x8))
        );
    }

    #[test]
    fn truncated_datagrams_are_rejected() {
        let full = datagram(0x1, &[10, 10, 11, 11]);
        for cut in [0, 3, 15, 16, 30, 35, 40, full.len() - 1] {
            assert!(
                decode_proc_event(&full[..cut]).is_err(),
                "cut at {cut} accepted"
            );
        }
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        // nlmsg_len larger than the datagram.
        let mut m = datagram(0x2, &[1, 1]);
        let claimed = m.len() as u32 + 8;
        m[..4].copy_from_slice(&claimed.to_ne_bytes());
        assert!(matches!(
            decode_proc_event(&m),
            Err(ProcDecodeError::BadLength {
                field: "nlmsg_len",
                ..
            })
        ));
        // nlmsg_len smaller than its own header.
        let mut m = datagram(0x2, &[1, 1]);
        m[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(matches!(
            decode_proc_event(&m),
            Err(ProcDecodeError::BadLength { .. })
        ));
        // cn_msg.len beyond the message.
        let mut m = datagram(0x2, &[1, 1]);
        m[32..34].copy_from_slice(&200u16.to_ne_bytes());
        assert!(matches!(
            decode_proc_event(&m),
            Err(ProcDecodeError::BadLength {
                field: "cn_msg.len",
                ..
            })
        ));
        // A fork whose body is too short for its four pids.
        let m = datagram(0x1, &[10, 10]);
        assert!(matches!(
            decode_proc_event(&m),
            Err(ProcDecodeError::TooShort {
                what: "the event body",
                ..
            })
        ));
    }

    #[test]
    fn foreign_messages_are_rejected() {
        let mut m = datagram(0x2, &[1, 1]);
        m[16..20].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(
            decode_proc_event(&m),
            Err(ProcDecodeError::NotProcConnector { idx: 7, val: 1 })
        );
        let mut m = datagram(0x2, &[1, 1]);
        m[4..6].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(
            decode_proc_event(&m),
            Err(ProcDecodeError::UnexpectedType(2))
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic byte generator: every length, many patterns.
        let mut x: u32 = 0x1234_5678;
        for len in 0..200 {
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                let _ = decode_proc_event(&bytes);
            }
        }
        // Valid headers with garbage lengths.
        let base = datagram(0x1, &[1, 2, 3, 4]);
        for v in [0u32, 1, 15, 16, 35, 36, 51, u32::MAX] {
            let mut m = base.clone();
            m[..4].copy_from_slice(&v.to_ne_bytes());
            let _ = decode_proc_event(&m);
        }
    }

    #[test]
    fn wait_status_decoding() {
        assert_eq!(exit_status(7 << 8), Some(7));
        assert_eq!(exit_status(0), Some(0));
        assert_eq!(exit_status(255 << 8), Some(255));
        assert_eq!(exit_status(9), None); // SIGKILL
        assert_eq!(exit_status(0x80 | 11), None); // SIGSEGV with core
    }

    #[test]
    fn namespace_detection() {
        assert!(!nested_pid_namespace(b"Name:\tx\nNSpid:\t42\n"));
        assert!(nested_pid_namespace(b"Name:\tx\nNSpid:\t4242\t7\n"));
        assert!(!nested_pid_namespace(b"Name:\tx\n"));
        assert!(is_initial_uid_map(b"         0          0 4294967295\n"));
        assert!(!is_initial_uid_map(b"         0     100000      65536\n"));
        assert!(!is_initial_uid_map(b""));
    }

    #[test]
    fn control_message_layout() {
        let m = control_message(PROC_CN_MCAST_LISTEN);
        assert_eq!(m.len(), 40);
        assert_eq!(u32_at(&m, 0), 40);
        assert_eq!(u16_at(&m, 4), NLMSG_DONE);
        assert_eq!((u32_at(&m, 16), u32_at(&m, 20)), (CN_IDX_PROC, CN_VAL_PROC));
        assert_eq!(u16_at(&m, 32), 4);
        assert_eq!(u32_at(&m, 36), PROC_CN_MCAST_LISTEN);
    }
}
