//! Sockets: the TCP/UDP tables of a network namespace (`/proc/net/{tcp,tcp6,udp,udp6}`) and
//! which of them a process holds (its `/proc/<pid>/fd` links `socket:[inode]`).
//!
//! Public API:
//! - [`SocketTable::read_host`], [`SocketTable::read_for_pid`]: every socket of one network
//!   namespace keyed by inode; [`SocketTable::get`], [`SocketTable::listening_ports`],
//!   [`SocketTable::malformed`].
//! - [`netns_of`]: the namespace of a pid, to read one table per namespace in a sweep.
//! - [`parse_line`] → [`Conn`] ([`Proto`], [`TcpState`]) or [`MalformedLine`].
//! - [`is_outbound`]: the "this process connected out" heuristic.
//! - [`socket_inodes`], [`stdio_sockets`], [`conns_of`] → [`ProcessConns`], [`owners`].
//!
//! A table only describes the namespace it was read from: match a process against the table
//! of its own namespace (see [`netns_of`]), or its inodes will simply not be found.
use std::{
    collections::{HashMap, HashSet},
    ffi::CStr,
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::{ControlFlow, RangeInclusive},
    os::fd::{AsRawFd, OwnedFd},
};

use super::{
    PidDir, ReadError, classify, for_each_line, open_raw,
    parse::{parse_hex_u64, parse_u64},
    proc_path, read_link_at,
};

/// Transport protocol of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (`tcp`, `tcp6`).
    Tcp,
    /// UDP (`udp`, `udp6`).
    Udp,
}

impl Proto {
    /// Lowercase name, as in `ss` and the alert schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// The `st` column: the kernel's TCP state numbers. UDP reuses them: `Established` for a
/// connected socket, `Close` for an unconnected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// 01.
    Established,
    /// 02: connect() sent, no answer yet.
    SynSent,
    /// 03.
    SynRecv,
    /// 04.
    FinWait1,
    /// 05.
    FinWait2,
    /// 06 (such sockets have inode 0).
    TimeWait,
    /// 07 (an unconnected UDP socket).
    Close,
    /// 08.
    CloseWait,
    /// 09.
    LastAck,
    /// 0A.
    Listen,
    /// 0B.
    Closing,
    /// 0C.
    NewSynRecv,
    /// 0D: bound, not listening nor connected (kernel 6.5+).
    BoundInactive,
    /// A number this code does not know.
    Unknown(u8),
}

impl From<u8> for TcpState {
    fn from(st: u8) -> Self {
        use TcpState::*;
        match st {
            0x01 => Established,
            0x02 => SynSent,
            0x03 => SynRecv,
            0x04 => FinWait1,
            0x05 => FinWait2,
            0x06 => TimeWait,
            0x07 => Close,
            0x08 => CloseWait,
            0x09 => LastAck,
            0x0A => Listen,
            0x0B => Closing,
            0x0C => NewSynRecv,
            0x0D => BoundInactive,
            other => Unknown(other),
        }
    }
}

/// One socket from `/proc/net/{tcp,tcp6,udp,udp6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    /// TCP or UDP.
    pub proto: Proto,
    /// Local address. IPv4 peers of a v6 socket stay `::ffff:a.b.c.d`, as the kernel has them.
    pub local: SocketAddr,
    /// Remote address (port 0 when not connected).
    pub remote: SocketAddr,
    /// State.
    pub state: TcpState,
    /// Socket inode: what `/proc/<pid>/fd/N -> socket:[inode]` names.
    pub inode: u64,
    /// Owner uid (of the creating process).
    pub uid: u32,
}

/// Why a line of a /proc/net table could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed /proc/net socket line: {0}")]
pub struct MalformedLine(pub &'static str);

/// `(protocol, local port)` of the listening (TCP) or bound-unconnected (UDP) sockets.
pub type ListeningPorts = HashSet<(Proto, u16)>;

/// What one process has connected to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessConns {
    /// Its outbound sockets (see [`is_outbound`]), one per socket even when several fds share it.
    pub outbound: Vec<Conn>,
    /// Their remote ports, sorted, without duplicates.
    pub remote_ports: Vec<u16>,
}

/// Every TCP and UDP socket of one network namespace, keyed by inode.
#[derive(Debug, Clone, Default)]
pub struct SocketTable {
    conns: HashMap<u64, Conn>,
    malformed: u64,
}

/// One table file: its name under `/proc/<pid>/`, and whether it may be missing (IPv6 off).
struct NetFile {
    rel: &'static CStr,
    name: &'static str,
    proto: Proto,
    optional: bool,
}

const NET_FILES: [NetFile; 4] = [
    NetFile {
        rel: c"net/tcp",
        name: "net/tcp",
        proto: Proto::Tcp,
        optional: false,
    },
    NetFile {
        rel: c"net/tcp6",
        name: "net/tcp6",
        proto: Proto::Tcp,
        optional: true,
    },
    NetFile {
        rel: c"net/udp",
        name: "net/udp",
        proto: Proto::Udp,
        optional: false,
    },
    NetFile {
        rel: c"net/udp6",
        name: "net/udp6",
        proto: Proto::Udp,
        optional: true,
    },
];

impl SocketTable {
    /// Reads `/proc/net/*`: the namespace procwatch itself runs in (the host's, normally).
    pub fn read_host() -> io::Result<Self> {
        let proc = open_raw(None, c"/proc", libc::O_RDONLY | libc::O_DIRECTORY)?;
        let mut table = Self::default();
        let mut buf = Vec::new();
        for f in &NET_FILES {
            match open_raw(Some(&proc), f.rel, libc::O_RDONLY) {
                Ok(fd) => table.fill(File::from(fd), f.proto, &mut buf)?,
                Err(e) if f.optional && e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(table)
    }

    /// Reads `/proc/<pid>/net/*`: the namespace of that process.
    pub fn read_for_pid(pid: u32) -> Result<Self, ReadError> {
        let dir = PidDir::open(pid)?;
        let mut table = Self::default();
        let mut buf = Vec::new();
        for f in &NET_FILES {
            match dir.open_file(f.rel, f.name) {
                Ok(file) => table
                    .fill(file, f.proto, &mut buf)
                    .map_err(|e| dir.classify(f.name, e))?,
                // ENOENT means "gone" or "IPv6 disabled"; the process tells which.
                Err(e) if f.optional && e.is_vanished() && dir.alive() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(table)
    }

    /// The socket with this inode, when it is a TCP/UDP socket of this namespace.
    pub fn get(&self, inode: u64) -> Option<&Conn> {
        self.conns.get(&inode)
    }

    /// Every socket, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.conns.values()
    }

    /// Number of sockets.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// True when there is no socket.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Lines that could not be parsed (skipped).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Local ports of listening TCP sockets and of bound, unconnected UDP sockets.
    pub fn listening_ports(&self) -> ListeningPorts {
        self.iter()
            .filter(|c| match c.proto {
                Proto::Tcp => c.state == TcpState::Listen,
                Proto::Udp => c.remote.port() == 0,
            })
            .map(|c| (c.proto, c.local.port()))
            .collect()
    }

    fn fill(&mut self, file: File, proto: Proto, buf: &mut Vec<u8>) -> io::Result<()> {
        let mut header = true;
        for_each_line(file, buf, |line| {
            if std::mem::take(&mut header) || line.trim_ascii().is_empty() {
                return;
            }
            match parse_line(line, proto) {
                // Inode 0 (TIME_WAIT, half-open requests) belongs to no fd of any process.
                Ok(c) if c.inode == 0 => {}
                Ok(c) => {
                    self.conns.insert(c.inode, c);
                }
                Err(_) => self.malformed += 1,
            }
        })
    }
}

impl FromIterator<Conn> for SocketTable {
    fn from_iter<I: IntoIterator<Item = Conn>>(iter: I) -> Self {
        Self {
            conns: iter.into_iter().map(|c| (c.inode, c)).collect(),
            malformed: 0,
        }
    }
}

/// Parses one data line of a /proc/net/{tcp,tcp6,udp,udp6} table:
/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
pub fn parse_line(line: &[u8], proto: Proto) -> Result<Conn, MalformedLine> {
    let mut fields = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let mut next = |what| fields.next().ok_or(MalformedLine(what));
    next("missing slot")?;
    let local = parse_addr(next("missing local address")?).ok_or(MalformedLine("local address"))?;
    let remote =
        parse_addr(next("missing remote address")?).ok_or(MalformedLine("remote address"))?;
    let st = parse_hex_u64(next("missing state")?)
        .and_then(|s| u8::try_from(s).ok())
        .ok_or(MalformedLine("state"))?;
    for what in ["missing queues", "missing timer", "missing retransmits"] {
        next(what)?;
    }
    let uid = parse_u64(next("missing uid")?)
        .and_then(|u| u32::try_from(u).ok())
        .ok_or(MalformedLine("uid"))?;
    next("missing timeout")?;
    let inode = parse_u64(next("missing inode")?).ok_or(MalformedLine("inode"))?;
    Ok(Conn {
        proto,
        local,
        remote,
        state: TcpState::from(st),
        inode,
        uid,
    })
}

/// `HEX:PORT`. The address is the raw `__be32` words printed as native u32s (`%08X`), so
/// each word's native-endian bytes are the address bytes in network order.
fn parse_addr(field: &[u8]) -> Option<SocketAddr> {
    let colon = field.iter().position(|&b| b == b':')?;
    let (hex, port) = (field.get(..colon)?, field.get(colon + 1..)?);
    if port.len() != 4 {
        return None;
    }
    let port = u16::try_from(parse_hex_u64(port)?).ok()?;
    let ip = match hex.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(hex)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (chunk, out) in hex.chunks_exact(8).zip(bytes.chunks_exact_mut(4)) {
                out.copy_from_slice(&word(chunk)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Eight hex digits of one address word → its bytes in memory order.
fn word(hex: &[u8]) -> Option<[u8; 4]> {
    let v = u32::try_from(parse_hex_u64(hex)?).ok()?;
    Some(v.to_ne_bytes())
}

/// True when `conn` looks like a connection this side opened.
///
/// TCP: a connecting or connected state (SynSent through LastAck, not Listen/TimeWait) with a
/// remote port, whose local port is not a listening port of the namespace: an accepted
/// connection shares its listener's port, while connect() never picks an ephemeral port that
/// a listener has bound. UDP: connected (remote port set), same local-port test, which
/// excludes servers that connect() a per-client socket on their service port (QUIC, some DNS).
/// A client that binds a listening port before connecting (rare: FTP active mode) is missed.
pub fn is_outbound(conn: &Conn, listening: &ListeningPorts) -> bool {
    use TcpState::*;
    if conn.remote.port() == 0 || listening.contains(&(conn.proto, conn.local.port())) {
        return false;
    }
    match conn.proto {
        Proto::Tcp => matches!(
            conn.state,
            Established | SynSent | FinWait1 | FinWait2 | CloseWait | Closing | LastAck
        ),
        Proto::Udp => true,
    }
}

/// True when `conn` is a socket a server put there to be reached: TCP in LISTEN, or a bound,
/// unconnected UDP socket on a port outside `ephemeral` (a client's unconnected socket is given
/// an ephemeral port when it first sends; that is no service).
pub fn is_listener(conn: &Conn, ephemeral: &RangeInclusive<u16>) -> bool {
    match conn.proto {
        Proto::Tcp => conn.state == TcpState::Listen,
        Proto::Udp => {
            let port = conn.local.port();
            conn.remote.port() == 0 && port != 0 && !ephemeral.contains(&port)
        }
    }
}

/// True when `conn` is a TCP connection this side accepted: connected, on a listening port of
/// the namespace (the counterpart of [`is_outbound`]).
pub fn is_accepted(conn: &Conn, listening: &ListeningPorts) -> bool {
    use TcpState::*;
    conn.proto == Proto::Tcp
        && conn.remote.port() != 0
        && listening.contains(&(Proto::Tcp, conn.local.port()))
        && matches!(
            conn.state,
            Established | SynRecv | CloseWait | FinWait1 | FinWait2
        )
}

/// The ports the kernel hands out as ephemeral ones (`net.ipv4.ip_local_port_range`; the
/// kernel's default when it cannot be read).
pub fn ephemeral_ports() -> RangeInclusive<u16> {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_ascii_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => lo..=hi,
        _ => 32768..=60999,
    }
}

/// The network namespace of a process (the `N` of `/proc/<pid>/ns/net -> net:[N]`); `None`
/// when it is gone or the link is unreadable.
pub fn netns_of(pid: u32) -> Option<u64> {
    let mut path = [0u8; 64];
    let path = proc_path(pid, "/ns/net", &mut path)?;
    let mut link = [0u8; 64];
    let n = read_link_at(None, path, &mut link).ok()?;
    bracketed(link.get(..n)?, b"net:[")
}

/// The socket inodes a process holds, as `(fd, inode)` in directory order. Fds that close
/// meanwhile are skipped; a process that is gone is [`ReadError::Vanished`], one whose fds
/// may not be read (ptrace access check) is [`ReadError::Io`].
pub fn socket_inodes(pid: u32) -> Result<Vec<(u32, u64)>, ReadError> {
    let dir = FdDir::open(pid)?;
    let mut out = Vec::new();
    dir.for_each_socket(&mut [0u8; DENTS_BUF], |fd, inode| {
        out.push((fd, inode));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// The socket inodes on fds 0, 1 and 2 (`None` for a non-socket, a closed fd, or a process
/// that is gone). Cheap enough for every exec of a shell.
pub fn stdio_sockets(pid: u32) -> [Option<u64>; 3] {
    let Ok(dir) = FdDir::open(pid) else {
        return [None; 3];
    };
    [c"0", c"1", c"2"].map(|name| dir.socket_inode(name).ok().flatten())
}

/// The outbound connections of `pid`. `table` and `listening` must be of the process's
/// network namespace; sockets opened after `table` was read are not in it and not reported.
pub fn conns_of(
    pid: u32,
    table: &SocketTable,
    listening: &ListeningPorts,
) -> Result<ProcessConns, ReadError> {
    let dir = FdDir::open(pid)?;
    let mut outbound = Vec::new();
    dir.for_each_socket(&mut [0u8; DENTS_BUF], |_, inode| {
        if let Some(c) = table.get(inode).filter(|c| is_outbound(c, listening)) {
            outbound.push(*c);
        }
        ControlFlow::Continue(())
    })?;
    // dup2 (a shell's 0, 1 and 2) puts one socket on several fds.
    outbound.sort_unstable_by_key(|c| c.inode);
    outbound.dedup_by_key(|c| c.inode);
    let mut remote_ports: Vec<u16> = outbound.iter().map(|c| c.remote.port()).collect();
    remote_ports.sort_unstable();
    remote_ports.dedup();
    Ok(ProcessConns {
        outbound,
        remote_ports,
    })
}

/// For each inode, a pid among `pids` holding it (the first found when several share it).
/// Stops reading fds as soon as every inode has an owner; unreadable processes are skipped.
pub fn owners(inodes: &HashSet<u64>, pids: impl IntoIterator<Item = u32>) -> HashMap<u64, u32> {
    let mut found = HashMap::with_capacity(inodes.len());
    if inodes.is_empty() {
        return found;
    }
    let mut dents = [0u8; DENTS_BUF];
    for pid in pids {
        let Ok(dir) = FdDir::open(pid) else { continue };
        let _ = dir.for_each_socket(&mut dents, |_, inode| {
            if inodes.contains(&inode) {
                found.entry(inode).or_insert(pid);
                if found.len() == inodes.len() {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if found.len() == inodes.len() {
            break;
        }
    }
    found
}

/// `prefix` N `]` → N.
fn bracketed(link: &[u8], prefix: &[u8]) -> Option<u64> {
    parse_u64(link.strip_prefix(prefix)?.strip_suffix(b"]")?)
}

/// Bytes of getdents64 output read per syscall: 256 fds (records of up to 32 bytes for fd
/// names); small enough for the stack.
const DENTS_BUF: usize = 8 * 1024;

/// Offset of d_reclen, d_name in `struct linux_dirent64` (after u64 d_ino, i64 d_off).
const DIRENT_RECLEN: usize = 16;
const DIRENT_NAME: usize = 19;

/// An open `/proc/<pid>/fd`: every link is read relative to it, so a reused pid is never mixed
/// with the process it replaced.
struct FdDir {
    fd: OwnedFd,
    pid: u32,
}

impl FdDir {
    fn open(pid: u32) -> Result<Self, ReadError> {
        let mut path = [0u8; 64];
        let path = proc_path(pid, "/fd", &mut path).ok_or(ReadError::Vanished { pid })?;
        let fd = open_raw(None, path, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| classify(pid, "fd", e))?;
        Ok(Self { fd, pid })
    }

    /// N when fd `name` is `socket:[N]`.
    fn socket_inode(&self, name: &CStr) -> io::Result<Option<u64>> {
        // "socket:[18446744073709551615]" is 29 bytes; anything longer is not a socket.
        let mut link = [0u8; 40];
        let n = read_link_at(Some(&self.fd), name, &mut link)?;
        Ok(link.get(..n).and_then(|l| bracketed(l, b"socket:[")))
    }

    /// Calls `f(fd, inode)` for each socket fd until it breaks. A short getdents result is not
    /// taken as the end: the kernel also stops early when a signal is pending.
    fn for_each_socket(
        &self,
        dents: &mut [u8],
        mut f: impl FnMut(u32, u64) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        loop {
            let n = self.getdents(dents)?;
            if n == 0 {
                return Ok(());
            }
            let mut rest = dents.get(..n).ok_or_else(|| self.malformed())?;
            while !rest.is_empty() {
                let (name, reclen) = dirent_name(rest).ok_or_else(|| self.malformed())?;
                rest = rest.get(reclen..).ok_or_else(|| self.malformed())?;
                let Some(fd) = parse_u64(name.to_bytes()).and_then(|v| u32::try_from(v).ok())
                else {
                    continue; // "." and ".."
                };
                let inode = match self.socket_inode(name) {
                    Ok(Some(inode)) => inode,
                    Ok(None) => continue,
                    // The ptrace check behind it is per process: no fd of it is readable, and
                    // "no sockets" would be a lie.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                        return Err(classify(self.pid, "fd", e));
                    }
                    Err(_) => continue, // closed meanwhile
                };
                if f(fd, inode).is_break() {
                    return Ok(());
                }
            }
        }
    }

    fn getdents(&self, buf: &mut [u8]) -> Result<usize, ReadError> {
        // SAFETY: a valid directory fd and a writable buffer of `buf.len()` bytes.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                self.fd.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        usize::try_from(n).map_err(|_| classify(self.pid, "fd", io::Error::last_os_error()))
    }

    fn malformed(&self) -> ReadError {
        ReadError::Malformed {
            pid: self.pid,
            file: "fd",
        }
    }
}

/// The name and length of the `linux_dirent64` record at the start of `rec`.
fn dirent_name(rec: &[u8]) -> Option<(&CStr, usize)> {
    let reclen = rec.get(DIRENT_RECLEN..DIRENT_RECLEN + 2)?;
    let reclen = usize::from(u16::from_ne_bytes([reclen[0], reclen[1]]));
    let name = rec.get(DIRENT_NAME..reclen)?;
    Some((CStr::from_bytes_until_nul(name).ok()?, reclen))
}

#[cfg(test)]
mod tests {
    use std::{
        net::{TcpListener, TcpStream, UdpSocket},
        os::fd::AsFd,
        process::{Command, Stdio},
    };

    use super::*;

    /// The inode of an open socket, as /proc/<pid>/fd shows it.
    fn inode_of(s: &impl AsFd) -> u64 {
        let fd = s.as_fd().as_raw_fd();
        let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).expect("fd stat");
        std::os::unix::fs::MetadataExt::ino(&meta)
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    /// Lines captured from this machine's /proc/net/* (x86_64, kernel 6.18): a Python process
    /// with a v6 listener on [::]:4444, clients over ::1, fd00::2 and 127.0.0.1 (v4-mapped),
    /// connected UDP sockets and a TCP connect to an unreachable host.
    #[cfg(target_endian = "little")]
    #[test]
    fn parses_captured_lines() {
        let cases: [(&[u8], Proto, Conn); 6] = [
            (
                b"   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1087 1 00000000059b6ea8 100 0 0 10 0",
                Proto::Tcp,
                Conn { proto: Proto::Tcp, local: sa("0.0.0.0:2024"), remote: sa("0.0.0.0:0"), state: TcpState::Listen, inode: 1087, uid: 0 },
            ),
            (
                b"   1: 020200C0:BAC4 4D0200C0:20FB 02 00000001:00000000 01:00000064 00000000     0        0 114754 2 000000001db0885a 100 0 0 10 -1",
                Proto::Tcp,
                Conn { proto: Proto::Tcp, local: sa("192.0.2.2:47812"), remote: sa("192.0.2.77:8443"), state: TcpState::SynSent, inode: 114754, uid: 0 },
            ),
            (
                b"   1: 00000000000000000000000001000000:9F7E 00000000000000000000000001000000:115C 01 00000000:00000000 00:00000000 00000000     0        0 114746 2 00000000181e31ce 20 0 0 10 -1",
                Proto::Tcp,
                Conn { proto: Proto::Tcp, local: sa("[::1]:40830"), remote: sa("[::1]:4444"), state: TcpState::Established, inode: 114746, uid: 0 },
            ),
            (
                b"   4: 0000000000000000FFFF00000100007F:115C 0000000000000000FFFF00000100007F:C1F6 01 00000000:00000000 00:00000000 00000000     0        0 114749 1 000000007580c17b 20 0 0 10 -1",
                Proto::Tcp,
                Conn { proto: Proto::Tcp, local: sa("[::ffff:127.0.0.1]:4444"), remote: sa("[::ffff:127.0.0.1]:49654"), state: TcpState::Established, inode: 114749, uid: 0 },
            ),
            (
                b" 3907: 020200C0:822D 010200C0:0035 01 00000000:00000000 00:00000000 00000000     0        0 114753 2 00000000d8cfc389 0        ",
                Proto::Udp,
                Conn { proto: Proto::Udp, local: sa("192.0.2.2:33325"), remote: sa("192.0.2.1:53"), state: TcpState::Established, inode: 114753, uid: 0 },
            ),
            (
                b" 6457: 000000FD000000000000000002000000:8C23 000000FD0000000078563412F0DEBC9A:0035 01 00000000:00000000 00:00000000 00000000     0        0 114752 2 0000000042cb5b92 0",
                Proto::Udp,
                Conn { proto: Proto::Udp, local: sa("[fd00::2]:35875"), remote: sa("[fd00::1234:5678:9abc:def0]:53"), state: TcpState::Established, inode: 114752, uid: 0 },
            ),
        ];
        for (line, proto, want) in cases {
            assert_eq!(
                parse_line(line, proto),
                Ok(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn malformed_lines_are_errors() {
        let good = "0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 1000 0 77";
        assert_eq!(
            parse_line(good.as_bytes(), Proto::Tcp).map(|c| (c.uid, c.inode)),
            Ok((1000, 77))
        );
        let bad = [
            ("", "missing slot"),
            ("0: 0100007F:0050", "missing remote address"),
            (
                "0: 0100007G:0050 00000000:0000 0A 0:0 0:0 0 0 0 1",
                "local address",
            ),
            (
                "0: 0100007F:050 00000000:0000 0A 0:0 0:0 0 0 0 1",
                "local address",
            ),
            (
                "0: 0100007F0050 00000000:0000 0A 0:0 0:0 0 0 0 1",
                "local address",
            ),
            (
                "0: 00007F:0050 00000000:0000 0A 0:0 0:0 0 0 0 1",
                "local address",
            ),
            (
                "0: 0100007F:0050 0000000000000000:0000 0A 0:0 0:0 0 0 0 1",
                "remote address",
            ),
            (
                "0: 0100007F:0050 00000000:0000 1FF 0:0 0:0 0 0 0 1",
                "state",
            ),
            ("0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 -1 0 1", "uid"),
            (
                "0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 0 0",
                "missing inode",
            ),
            ("0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 0 0 x", "inode"),
        ];
        for (line, why) in bad {
            assert_eq!(
                parse_line(line.as_bytes(), Proto::Tcp),
                Err(MalformedLine(why)),
                "{line}"
            );
        }
        assert_eq!(TcpState::from(0x0D), TcpState::BoundInactive);
        assert_eq!(TcpState::from(0x42), TcpState::Unknown(0x42));
    }

    #[test]
    fn table_counts_malformed_and_skips_header_and_inode_zero() {
        let text = "  sl  local_address rem_address   st ...\n\
                    0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 0 0 10\n\
                    1: garbage\n\
                    2: 0100007F:9000 0100007F:0050 06 0:0 0:0 0 0 0 0\n\
                    \n";
        let mut t = SocketTable::default();
        let file = tempfile_with(text);
        t.fill(file, Proto::Tcp, &mut Vec::new()).expect("fill");
        assert_eq!((t.len(), t.malformed()), (1, 1));
        assert_eq!(t.get(10).map(|c| c.local.port()), Some(80));
    }

    fn tempfile_with(text: &str) -> File {
        let path = std::env::temp_dir().join(format!("pw-sockets-{}", std::process::id()));
        std::fs::write(&path, text).expect("write");
        let f = File::open(&path).expect("open");
        std::fs::remove_file(&path).expect("unlink");
        f
    }

    fn conn(proto: Proto, local: &str, remote: &str, state: TcpState) -> Conn {
        Conn {
            proto,
            local: sa(local),
            remote: sa(remote),
            state,
            inode: 1,
            uid: 0,
        }
    }

    #[test]
    fn listeners_and_accepted_connections() {
        let listening: ListeningPorts = [(Proto::Tcp, 22)].into();
        let ephemeral = 32768..=60999;
        let listener = |p, l, r, s| is_listener(&conn(p, l, r, s), &ephemeral);
        assert!(listener(
            Proto::Tcp,
            "0.0.0.0:22",
            "0.0.0.0:0",
            TcpState::Listen
        ));
        assert!(!listener(
            Proto::Tcp,
            "10.0.0.1:22",
            "1.2.3.4:50000",
            TcpState::Established
        ));
        // A DNS server's socket, not a client's auto-bound one.
        assert!(listener(
            Proto::Udp,
            "0.0.0.0:53",
            "0.0.0.0:0",
            TcpState::Close
        ));
        assert!(!listener(
            Proto::Udp,
            "0.0.0.0:40000",
            "0.0.0.0:0",
            TcpState::Close
        ));
        assert!(!listener(
            Proto::Udp,
            "10.0.0.1:53",
            "8.8.8.8:53",
            TcpState::Established
        ));
        let accepted = |l, r, s| is_accepted(&conn(Proto::Tcp, l, r, s), &listening);
        assert!(accepted(
            "10.0.0.1:22",
            "1.2.3.4:50000",
            TcpState::Established
        ));
        assert!(accepted(
            "10.0.0.1:22",
            "1.2.3.4:50000",
            TcpState::CloseWait
        ));
        assert!(!accepted("0.0.0.0:22", "0.0.0.0:0", TcpState::Listen));
        assert!(!accepted(
            "10.0.0.1:40000",
            "1.2.3.4:22",
            TcpState::Established
        ));
        assert!(!accepted(
            "10.0.0.1:22",
            "1.2.3.4:50000",
            TcpState::TimeWait
        ));
        let range = ephemeral_ports();
        assert!(range.start() <= range.end());
    }

    #[test]
    fn outbound_heuristic() {
        let listening: ListeningPorts = [(Proto::Tcp, 22), (Proto::Udp, 443)].into();
        let tcp = |l, r, s| is_outbound(&conn(Proto::Tcp, l, r, s), &listening);
        assert!(tcp("10.0.0.1:40000", "1.2.3.4:4444", TcpState::Established));
        assert!(tcp("10.0.0.1:40000", "1.2.3.4:4444", TcpState::SynSent));
        assert!(tcp("10.0.0.1:40000", "1.2.3.4:4444", TcpState::CloseWait));
        // Accepted on a listening port: inbound.
        assert!(!tcp("10.0.0.1:22", "1.2.3.4:50000", TcpState::Established));
        assert!(!tcp("0.0.0.0:8080", "0.0.0.0:0", TcpState::Listen));
        assert!(!tcp("10.0.0.1:40000", "1.2.3.4:4444", TcpState::TimeWait));
        assert!(!tcp("10.0.0.1:40000", "1.2.3.4:4444", TcpState::SynRecv));
        let udp = |l, r, s| is_outbound(&conn(Proto::Udp, l, r, s), &listening);
        assert!(udp("10.0.0.1:40000", "8.8.8.8:53", TcpState::Established));
        assert!(!udp("0.0.0.0:40000", "0.0.0.0:0", TcpState::Close));
        assert!(!udp("10.0.0.1:443", "1.2.3.4:50000", TcpState::Established));
        // A TCP listener on a port says nothing about UDP on it.
        assert!(udp("10.0.0.1:22", "1.2.3.4:53", TcpState::Established));
    }

    #[test]
    fn sees_own_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        udp.connect("127.0.0.1:9").expect("udp connect");
        let (li, ci, ai, ui) = (
            inode_of(&listener),
            inode_of(&client),
            inode_of(&accepted),
            inode_of(&udp),
        );

        let table = SocketTable::read_host().expect("read /proc/net");
        let listening = table.listening_ports();
        assert!(listening.contains(&(Proto::Tcp, port)));
        assert_eq!(table.get(li).map(|c| c.state), Some(TcpState::Listen));
        let c = table.get(ci).expect("client socket");
        assert_eq!((c.remote.port(), c.state), (port, TcpState::Established));
        assert!(is_outbound(c, &listening));
        assert!(!is_outbound(table.get(ai).expect("accepted"), &listening));
        assert!(is_outbound(table.get(ui).expect("udp"), &listening));

        let me = std::process::id();
        let mine = socket_inodes(me).expect("own fds");
        for (inode, s) in [
            (li, &listener as &dyn AsFd),
            (ci, &client),
            (ai, &accepted),
            (ui, &udp),
        ] {
            let fd = u32::try_from(s.as_fd().as_raw_fd()).expect("fd");
            assert!(mine.contains(&(fd, inode)), "{fd} {inode} not in {mine:?}");
        }
        let conns = conns_of(me, &table, &listening).expect("own conns");
        assert!(conns.outbound.iter().any(|c| c.inode == ci));
        assert!(conns.outbound.iter().any(|c| c.inode == ui));
        assert!(
            conns
                .outbound
                .iter()
                .all(|c| c.inode != ai && c.inode != li)
        );
        assert!(conns.remote_ports.contains(&port) && conns.remote_ports.contains(&9));
        assert!(conns.remote_ports.is_sorted());

        let by_pid = SocketTable::read_for_pid(me).expect("own netns");
        assert!(by_pid.get(ci).is_some());
        let wanted: HashSet<u64> = [ci, ui].into();
        let found = owners(&wanted, [u32::MAX, 1, me]);
        assert_eq!(found, HashMap::from([(ci, me), (ui, me)]));
        assert!(owners(&HashSet::new(), [me]).is_empty());
    }

    #[test]
    fn sees_ipv6_when_available() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            eprintln!("skipped: no IPv6 loopback");
            return;
        };
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).expect("connect");
        let table = SocketTable::read_host().expect("read");
        let c = table.get(inode_of(&client)).expect("v6 client");
        assert_eq!(
            (c.remote, c.local),
            (addr, client.local_addr().expect("local"))
        );
    }

    #[test]
    fn stdio_sockets_of_a_child() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let inode = inode_of(&client);
        let mut child = Command::new("sleep")
            .arg("10")
            .stdin(Stdio::from(OwnedFd::from(client)))
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let seen = stdio_sockets(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(seen, [Some(inode), None, None]);
    }

    #[test]
    fn table_of_another_namespace() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let inode = inode_of(&listener);
        let me = std::process::id();
        let Ok(mut child) = Command::new("unshare")
            .args(["--net", "sleep", "10"])
            .spawn()
        else {
            eprintln!("skipped: no unshare");
            return;
        };
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while netns_of(pid) == netns_of(me) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let (ns, table) = (netns_of(pid), SocketTable::read_for_pid(pid));
        let _ = child.kill();
        let _ = child.wait();
        if ns == netns_of(me) {
            eprintln!("skipped: unshare --net did not take effect (not permitted here?)");
            return;
        }
        let table = table.expect("child's netns table");
        assert!(table.get(inode).is_none());
        assert!(
            SocketTable::read_for_pid(me)
                .expect("own")
                .get(inode)
                .is_some()
        );
    }

    /// Another user's process, read without privileges: an error, never an empty list.
    #[test]
    fn unreadable_fds_are_an_error_not_empty() {
        use std::os::unix::process::CommandExt;
        const HELPER: &str = "PW_TEST_UNREADABLE_PID";
        if let Some(pid) = std::env::var_os(HELPER) {
            let pid = pid.to_str().and_then(|p| p.parse().ok()).expect("pid");
            let err = socket_inodes(pid).expect_err("not permitted");
            assert!(matches!(err, ReadError::Io { .. }), "{err}");
            assert!(conns_of(pid, &SocketTable::default(), &HashSet::new()).is_err());
            return;
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to run a helper as nobody");
            return;
        }
        let status = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "procfs::sockets::tests::unreadable_fds_are_an_error_not_empty",
            ])
            .env(HELPER, std::process::id().to_string())
            .uid(65534)
            .gid(65534)
            .stdout(Stdio::null())
            .status()
            .expect("run helper as nobody");
        assert!(status.success(), "helper failed: {status}");
    }

    #[test]
    fn vanished_and_namespaces() {
        assert!(socket_inodes(u32::MAX).expect_err("no pid").is_vanished());
        let t = SocketTable::default();
        assert!(
            conns_of(u32::MAX, &t, &HashSet::new())
                .expect_err("no pid")
                .is_vanished()
        );
        assert!(
            SocketTable::read_for_pid(u32::MAX)
                .expect_err("no pid")
                .is_vanished()
        );
        assert_eq!(stdio_sockets(u32::MAX), [None; 3]);
        assert_eq!(netns_of(u32::MAX), None);
        let link = std::fs::read_link("/proc/self/ns/net").expect("ns link");
        let want = format!("net:[{}]", netns_of(std::process::id()).expect("own netns"));
        assert_eq!(link.to_str(), Some(want.as_str()));
    }
}
