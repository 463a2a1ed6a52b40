//! The one place where bytes from the kernel become [`Event`]s.
//!
//! Every record is checked before it is read: long enough for a header, a known kind tag
//! (`TryFrom<u32>`, never a transmute), exactly the size of that kind's struct, and every
//! length or enum-like field inside its bounds. A bad record is an error the caller counts.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use procwatch_common as wire;

use super::event::{
    Connect, Event, EventBody, EventKind, Exec, Exit, FileOpen, Fork, Inject, IoUring,
    KernelAction, Memfd, Ptrace, PtraceResult, Resolved, SensorKind, WxMem,
};
use crate::identity::ExeId;
use crate::text::{os_from_bytes, path_from_bytes, until_nul};

/// Why a ring-buffer record was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the common header.
    #[error("record of {len} bytes is shorter than the {header}-byte header")]
    TooShort {
        /// Bytes received.
        len: usize,
        /// Header size.
        header: usize,
    },
    /// The kind tag is not one procwatch knows.
    #[error("unknown event kind tag {0}")]
    UnknownKind(u32),
    /// The record is not exactly the size of its kind's struct.
    #[error("{kind} record is {got} bytes, expected {expected}")]
    WrongSize {
        /// Kind named by the tag.
        kind: &'static str,
        /// Expected size.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// A field is out of range.
    #[error("{kind} record has a bad {field}: {value}")]
    BadField {
        /// Kind named by the tag.
        kind: &'static str,
        /// Field name.
        field: &'static str,
        /// The offending value.
        value: u64,
    },
}

/// Marker for the wire structs: `repr(C)`, only integers and byte arrays, no padding holes,
/// so any byte pattern of the right length is a valid value.
///
/// # Safety
/// Implement only for types with those properties.
unsafe trait Wire: Copy {}
// SAFETY: all are repr(C) integer/byte-array structs with explicit padding (see procwatch-common).
unsafe impl Wire for wire::EventHeader {}
// SAFETY: as above.
unsafe impl Wire for wire::ExecEvent {}
// SAFETY: as above.
unsafe impl Wire for wire::ForkEvent {}
// SAFETY: as above.
unsafe impl Wire for wire::ExitEvent {}
// SAFETY: as above.
unsafe impl Wire for wire::PtraceEvent {}
// SAFETY: as above.
unsafe impl Wire for wire::ConnectEvent {}
// SAFETY: as above.
unsafe impl Wire for wire::WxMemEvent {}
// SAFETY: as above.
unsafe impl Wire for wire::MemfdEvent {}
// SAFETY: as above.
unsafe impl Wire for wire::InjectEvent {}
// SAFETY: as above.
unsafe impl Wire for wire::IoUringEvent {}
// SAFETY: as above.
unsafe impl Wire for wire::FileOpenEvent {}

/// Reads a `T` from the start of `bytes`; the caller has checked the length.
fn read<T: Wire>(bytes: &[u8]) -> T {
    assert!(bytes.len() >= size_of::<T>(), "caller checks the length");
    // SAFETY: length checked above; `T: Wire` makes every bit pattern valid; unaligned read.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

/// Checks the exact size for `kind` and reads the record as `T`.
fn read_exact<T: Wire>(bytes: &[u8], kind: EventKind) -> Result<T, DecodeError> {
    if bytes.len() != size_of::<T>() {
        return Err(DecodeError::WrongSize {
            kind: kind.as_str(),
            expected: size_of::<T>(),
            got: bytes.len(),
        });
    }
    Ok(read(bytes))
}

fn bounded(
    kind: EventKind,
    field: &'static str,
    value: u32,
    max: usize,
) -> Result<usize, DecodeError> {
    let v = value as usize;
    if v > max {
        return Err(DecodeError::BadField {
            kind: kind.as_str(),
            field,
            value: u64::from(value),
        });
    }
    Ok(v)
}

/// The kernel-resolved part of an exec record: paths walked from dentries, the interpreter,
/// the cgroup. Each is there only when its flag says the kernel filled it.
fn resolved(e: &wire::ExecEvent) -> Result<Resolved, DecodeError> {
    use wire::path_flags as pf;
    let kind = EventKind::Exec;
    let f = e.path_flags;
    let path_len = bounded(kind, "path_len", e.path_len, wire::RESOLVED_LEN)?;
    let cwd_len = bounded(kind, "cwd_len", e.cwd_len, wire::RESOLVED_LEN)?;
    let interp_len = bounded(kind, "interp_len", e.interp_len, wire::PATH_LEN)?;
    let filename_len = bounded(kind, "filename_len", e.filename_len, wire::PATH_LEN)?;
    let walked = |bytes: &[u8]| {
        // The walk writes `/name` per component; a NUL inside a name cannot come from a
        // dentry, so anything after one is not part of the path.
        let p = until_nul(bytes);
        (!p.is_empty()).then(|| path_from_bytes(p))
    };
    let interp = until_nul(&e.interp[..interp_len]);
    let filename = until_nul(&e.filename[..filename_len]);
    Ok(Resolved {
        path: if f & pf::PATH_RESOLVED != 0 {
            walked(&e.path[..path_len])
        } else {
            None
        },
        path_cut: f & pf::PATH_CUT != 0,
        cwd: if f & pf::CWD_RESOLVED != 0 {
            walked(&e.cwd[..cwd_len])
        } else {
            None
        },
        cwd_cut: f & pf::CWD_CUT != 0,
        interp: (f & pf::INTERP != 0 && !interp.is_empty() && interp != filename)
            .then(|| path_from_bytes(interp)),
        cgroup_id: nonzero(e.cgroup_id),
    })
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let header_len = size_of::<wire::EventHeader>();
    if bytes.len() < header_len {
        return Err(DecodeError::TooShort {
            len: bytes.len(),
            header: header_len,
        });
    }
    let header: wire::EventHeader = read(bytes);
    let kind =
        EventKind::try_from(header.kind).map_err(|_| DecodeError::UnknownKind(header.kind))?;
    let body = match kind {
        EventKind::Exec => {
            let e: wire::ExecEvent = read_exact(bytes, kind)?;
            let filename_len = bounded(kind, "filename_len", e.filename_len, wire::PATH_LEN)?;
            let args_len = bounded(kind, "args_len", e.args_len, wire::ARGS_LEN)?;
            let argc = bounded(kind, "argc", e.argc, wire::MAX_ARGS)?;
            let resolved = resolved(&e)?;
            EventBody::Exec(Exec {
                filename: path_from_bytes(until_nul(&e.filename[..filename_len])),
                argv: split_args(&e.args[..args_len], argc),
                args_truncated: header.flags & wire::flags::ARGS_TRUNCATED != 0,
                args_missing: header.flags & wire::flags::ARGS_MISSING != 0,
                ppid: e.ppid,
                old_pid: e.old_pid,
                exe: ExeId::from_kernel(e.exe_dev, e.exe_ino),
                resolved,
            })
        }
        EventKind::Fork => {
            let e: wire::ForkEvent = read_exact(bytes, kind)?;
            EventBody::Fork(Fork {
                parent_tgid: e.parent_tgid,
                child_tgid: e.child_tgid,
                child_start_time_ns: nonzero(e.child_start_ns),
            })
        }
        EventKind::Exit => {
            let e: wire::ExitEvent = read_exact(bytes, kind)?;
            EventBody::Exit(Exit {
                exit_code: (e.exit_code_known != 0).then_some(e.exit_code),
            })
        }
        EventKind::Ptrace => {
            let e: wire::PtraceEvent = read_exact(bytes, kind)?;
            let result = (header.flags & wire::flags::PTRACE_RESULT != 0).then(|| PtraceResult {
                ret: e.ret,
                tracee_tgid: (e.ret == 0 && e.tracee_tgid != 0).then_some(e.tracee_tgid),
                tracee_start_time_ns: (e.ret == 0).then_some(e.tracee_start_ns).and_then(nonzero),
            });
            EventBody::Ptrace(Ptrace {
                request: e.request,
                request_name: ptrace_request_name(e.request),
                target_pid: e.target_pid,
                result,
            })
        }
        EventKind::Connect => {
            let e: wire::ConnectEvent = read_exact(bytes, kind)?;
            let (family, addr) = match e.family {
                wire::AF_INET => {
                    let [a, b, c, d, ..] = e.addr;
                    ("inet", IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
                }
                wire::AF_INET6 => ("inet6", IpAddr::V6(Ipv6Addr::from(e.addr))),
                other => {
                    return Err(DecodeError::BadField {
                        kind: kind.as_str(),
                        field: "family",
                        value: u64::from(other),
                    });
                }
            };
            let via = match e.via {
                wire::via::CONNECT => "connect",
                wire::via::SENDTO => "sendto",
                wire::via::SENDMSG => "sendmsg",
                wire::via::SENDMMSG => "sendmmsg",
                other => {
                    return Err(DecodeError::BadField {
                        kind: kind.as_str(),
                        field: "via",
                        value: u64::from(other),
                    });
                }
            };
            let socket = match e.sock_type {
                wire::sock_type::UNKNOWN => None,
                wire::sock_type::STREAM => Some("stream"),
                wire::sock_type::DGRAM => Some("dgram"),
                wire::sock_type::RAW => Some("raw"),
                wire::sock_type::RDM => Some("rdm"),
                wire::sock_type::SEQPACKET => Some("seqpacket"),
                wire::sock_type::DCCP => Some("dccp"),
                wire::sock_type::PACKET => Some("packet"),
                other => {
                    return Err(DecodeError::BadField {
                        kind: kind.as_str(),
                        field: "sock_type",
                        value: u64::from(other),
                    });
                }
            };
            EventBody::Connect(Connect {
                fd: e.fd,
                family,
                addr,
                port: e.port,
                via,
                fastopen: header.flags & wire::flags::FASTOPEN != 0,
                socket,
            })
        }
        EventKind::WxMem => {
            let e: wire::WxMemEvent = read_exact(bytes, kind)?;
            let syscall = match e.syscall {
                wire::wx_syscall::MPROTECT => "mprotect",
                wire::wx_syscall::PKEY_MPROTECT => "pkey_mprotect",
                wire::wx_syscall::MMAP => "mmap",
                wire::wx_syscall::MMAP2 => "mmap2",
                wire::wx_syscall::OLD_MMAP => "old_mmap",
                wire::wx_syscall::READ_IMPLIES_EXEC => "read_implies_exec",
                wire::wx_syscall::SHARED_ALIAS => "shared_alias",
                other => {
                    return Err(DecodeError::BadField {
                        kind: kind.as_str(),
                        field: "syscall",
                        value: u64::from(other),
                    });
                }
            };
            EventBody::WxMem(WxMem {
                syscall,
                start: e.start,
                len: e.len,
                prot: e.prot,
                flags: e.flags,
            })
        }
        EventKind::Memfd => {
            let e: wire::MemfdEvent = read_exact(bytes, kind)?;
            let name_len = bounded(kind, "name_len", e.name_len, wire::MEMFD_NAME_LEN)?;
            EventBody::Memfd(Memfd {
                name: os_from_bytes(until_nul(&e.name[..name_len])),
                flags: e.flags,
            })
        }
        EventKind::Inject => {
            let e: wire::InjectEvent = read_exact(bytes, kind)?;
            let name_len = bounded(kind, "target_name_len", e.target_name_len, wire::COMM_LEN)?;
            let (method, target_pid) = match e.method {
                wire::inject::PROCESS_VM_WRITEV => {
                    ("process_vm_writev", u32::try_from(e.target_pid).ok())
                }
                wire::inject::PROC_MEM => ("proc_mem", pid_name(&e.target_name[..name_len])),
                other => {
                    return Err(DecodeError::BadField {
                        kind: kind.as_str(),
                        field: "method",
                        value: u64::from(other),
                    });
                }
            };
            EventBody::Inject(Inject {
                method,
                target_pid,
                target_self: header.flags & wire::flags::SELF_TARGET != 0,
            })
        }
        EventKind::IoUring => {
            let e: wire::IoUringEvent = read_exact(bytes, kind)?;
            let op = uring_op_name(e.opcode).ok_or(DecodeError::BadField {
                kind: kind.as_str(),
                field: "opcode",
                value: u64::from(e.opcode),
            })?;
            EventBody::IoUring(IoUring {
                opcode: e.opcode,
                op,
            })
        }
        EventKind::FileOpen => {
            let e: wire::FileOpenEvent = read_exact(bytes, kind)?;
            let len = bounded(kind, "path_len", e.path_len, wire::FILE_PATH_LEN)?;
            let syscall = match e.syscall {
                wire::open_call::OPENAT => "openat",
                wire::open_call::OPENAT2 => "openat2",
                wire::open_call::OPEN => "open",
                other => {
                    return Err(DecodeError::BadField {
                        kind: kind.as_str(),
                        field: "syscall",
                        value: u64::from(other),
                    });
                }
            };
            let path = until_nul(&e.path[..len]);
            if path.is_empty() {
                return Err(DecodeError::BadField {
                    kind: kind.as_str(),
                    field: "path_len",
                    value: 0,
                });
            }
            EventBody::FileOpen(FileOpen {
                syscall,
                dfd: e.dfd,
                flags: e.open_flags,
                path: os_from_bytes(path),
                truncated: len >= wire::FILE_PATH_LEN,
            })
        }
    };
    Ok(Event {
        sensor: SensorKind::Ebpf,
        ktime_ns: header.ktime_ns,
        pid: header.pid,
        tgid: header.tgid,
        uid: header.uid,
        gid: header.gid,
        comm: os_from_bytes(until_nul(&header.comm)),
        start_time_ns: nonzero(header.start_ns),
        kernel_action: kernel_action(header.flags),
        compat: header.flags & wire::flags::COMPAT != 0,
        body,
    })
}

/// A procfs directory name that is a pid (decimal, no sign, no leading zero), as a pid.
fn pid_name(name: &[u8]) -> Option<u32> {
    let name = until_nul(name);
    if name.is_empty() || name.len() > 10 || name[0] == b'0' || !name.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// Name of a network io_uring opcode; `None` for one the kernel side does not report.
fn uring_op_name(op: u32) -> Option<&'static str> {
    use wire::uring_op as o;
    Some(match op {
        o::SENDMSG => "SENDMSG",
        o::ACCEPT => "ACCEPT",
        o::CONNECT => "CONNECT",
        o::SEND => "SEND",
        o::SOCKET => "SOCKET",
        o::SEND_ZC => "SEND_ZC",
        o::SENDMSG_ZC => "SENDMSG_ZC",
        _ => return None,
    })
}

/// The kernel side sends 0 for a value it could not read.
fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

fn kernel_action(flags: u32) -> Option<KernelAction> {
    if flags & wire::flags::KILLED != 0 {
        Some(KernelAction::Killed)
    } else if flags & wire::flags::KILL_FAILED != 0 {
        Some(KernelAction::KillFailed)
    } else if flags & wire::flags::EXEMPT != 0 {
        Some(KernelAction::Exempt)
    } else {
        None
    }
}

/// Splits NUL-separated argv into at most `argc` arguments (empty arguments are kept).
fn split_args(bytes: &[u8], argc: usize) -> Vec<std::ffi::OsString> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let body = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    body.split(|&b| b == 0)
        .take(argc)
        .map(os_from_bytes)
        .collect()
}

/// Name of a ptrace request procwatch reports.
pub fn ptrace_request_name(request: u64) -> &'static str {
    match request {
        0 => "PTRACE_TRACEME",
        wire::PTRACE_ATTACH => "PTRACE_ATTACH",
        wire::PTRACE_SEIZE => "PTRACE_SEIZE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{ffi::OsString, path::Path};

    fn bytes_of<T: Wire>(value: &T) -> Vec<u8> {
        // SAFETY: `T: Wire` has no padding holes, so all its bytes are initialised.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    fn header(kind: u32, flags: u32) -> wire::EventHeader {
        let mut comm = [0u8; wire::COMM_LEN];
        comm[..4].copy_from_slice(b"test");
        wire::EventHeader {
            kind,
            flags,
            pid: 101,
            tgid: 100,
            uid: 1000,
            gid: 1001,
            ktime_ns: 42,
            comm,
            start_ns: 5_000_000_000,
        }
    }

    fn fixed<const N: usize>(s: &[u8]) -> [u8; N] {
        let mut out = [0u8; N];
        out[..s.len()].copy_from_slice(s);
        out
    }

    fn exec_record() -> wire::ExecEvent {
        let args = b"/bin/ls\0-l\0\0/tmp\0";
        wire::ExecEvent {
            header: header(wire::kind::EXEC, wire::flags::ARGS_TRUNCATED),
            ppid: 7,
            old_pid: 101,
            filename_len: 7,
            args_len: args.len() as u32,
            argc: 4,
            exe_dev: 0x0fe0_0001,
            exe_ino: 77,
            path_len: 0,
            cwd_len: 0,
            interp_len: 0,
            path_flags: 0,
            cgroup_id: 0,
            filename: fixed(b"/bin/ls"),
            interp: [0; wire::PATH_LEN],
            path: [0; wire::RESOLVED_LEN],
            cwd: [0; wire::RESOLVED_LEN],
            args: fixed(args),
        }
    }

    #[test]
    fn exec_with_what_the_kernel_resolved() {
        use wire::path_flags as pf;
        let mut r = exec_record();
        r.filename = fixed(b"./x.sh");
        r.filename_len = 6;
        r.interp = fixed(b"/bin/sh");
        r.interp_len = 7;
        r.path = fixed(b"/usr/bin/dash");
        r.path_len = 13;
        r.cwd = fixed(b"/tmp/w");
        r.cwd_len = 6;
        r.cgroup_id = 1234;
        r.path_flags = pf::PATH_RESOLVED | pf::CWD_RESOLVED | pf::CWD_CUT | pf::INTERP;
        let EventBody::Exec(x) = decode(&bytes_of(&r)).expect("decodes").body else {
            panic!("not exec")
        };
        let res = x.resolved;
        assert_eq!(res.path.as_deref(), Some(Path::new("/usr/bin/dash")));
        assert_eq!(res.cwd.as_deref(), Some(Path::new("/tmp/w")));
        assert_eq!(res.interp.as_deref(), Some(Path::new("/bin/sh")));
        assert!(!res.path_cut && res.cwd_cut);
        assert_eq!(res.cgroup_id, Some(1234));

        // An ELF: interp is the filename itself, and is not repeated.
        r.interp = fixed(b"./x.sh");
        r.interp_len = 6;
        // Without its flag a buffer is ignored whatever it holds.
        r.path_flags = pf::INTERP;
        let EventBody::Exec(x) = decode(&bytes_of(&r)).expect("decodes").body else {
            panic!("not exec")
        };
        assert_eq!(x.resolved.interp, None);
        assert_eq!(x.resolved.path, None);
        assert_eq!(x.resolved.cwd, None);

        r.path_len = wire::RESOLVED_LEN as u32 + 1;
        assert!(matches!(
            decode(&bytes_of(&r)),
            Err(DecodeError::BadField {
                field: "path_len",
                ..
            })
        ));
    }

    #[test]
    fn exec_round_trip() {
        let e = decode(&bytes_of(&exec_record())).expect("decodes");
        assert_eq!(
            (e.pid, e.tgid, e.uid, e.gid, e.ktime_ns),
            (101, 100, 1000, 1001, 42)
        );
        assert_eq!(e.comm, OsString::from("test"));
        assert_eq!(e.sensor, SensorKind::Ebpf);
        let EventBody::Exec(x) = e.body else {
            panic!("not exec: {e:?}")
        };
        assert_eq!(x.filename.to_str(), Some("/bin/ls"));
        let argv: Vec<&str> = x.argv.iter().map(|a| a.to_str().unwrap_or("?")).collect();
        assert_eq!(argv, ["/bin/ls", "-l", "", "/tmp"]);
        assert!(x.args_truncated && !x.args_missing);
        assert_eq!((x.ppid, x.old_pid), (7, 101));
        assert_eq!(
            x.exe,
            Some(ExeId {
                dev: 0x0fe0_0001,
                ino: 77
            })
        );
        assert_eq!(e.start_time_ns, Some(5_000_000_000));
        let mut unknown = exec_record();
        unknown.exe_ino = 0;
        unknown.header.start_ns = 0;
        let e = decode(&bytes_of(&unknown)).expect("decodes");
        assert_eq!(e.start_time_ns, None);
        assert!(matches!(e.body, EventBody::Exec(Exec { exe: None, .. })));
    }

    #[test]
    fn fork_exit_ptrace_round_trip() {
        let f = wire::ForkEvent {
            header: header(wire::kind::FORK, 0),
            parent_tgid: 100,
            child_tgid: 200,
            child_start_ns: 9,
        };
        assert_eq!(
            decode(&bytes_of(&f)).expect("fork").body,
            EventBody::Fork(Fork {
                parent_tgid: 100,
                child_tgid: 200,
                child_start_time_ns: Some(9),
            })
        );
        let x = wire::ExitEvent {
            header: header(wire::kind::EXIT, 0),
            exit_code: 3,
            exit_code_known: 1,
        };
        assert_eq!(
            decode(&bytes_of(&x)).expect("exit").body,
            EventBody::Exit(Exit { exit_code: Some(3) })
        );
        let x = wire::ExitEvent {
            header: header(wire::kind::EXIT, 0),
            exit_code: 0,
            exit_code_known: 0,
        };
        assert_eq!(
            decode(&bytes_of(&x)).expect("exit").body,
            EventBody::Exit(Exit { exit_code: None })
        );
        let p = wire::PtraceEvent {
            header: header(wire::kind::PTRACE, wire::flags::KILLED),
            request: wire::PTRACE_ATTACH,
            target_pid: 555,
            ret: 0,
            tracee_tgid: 0,
            _pad: 0,
            tracee_start_ns: 0,
        };
        let e = decode(&bytes_of(&p)).expect("ptrace");
        assert_eq!(e.kernel_action, Some(KernelAction::Killed));
        assert_eq!(
            e.body,
            EventBody::Ptrace(Ptrace {
                request: 16,
                request_name: "PTRACE_ATTACH",
                target_pid: 555,
                result: None,
            })
        );
        // Reported at syscall exit: the tracee the kernel attached, not the pid passed.
        let exit = wire::PtraceEvent {
            header: header(
                wire::kind::PTRACE,
                wire::flags::KILLED | wire::flags::PTRACE_RESULT,
            ),
            ret: 0,
            tracee_tgid: 4242,
            tracee_start_ns: 77,
            ..p
        };
        let EventBody::Ptrace(t) = decode(&bytes_of(&exit)).expect("ptrace").body else {
            panic!()
        };
        assert_eq!(
            t.result,
            Some(PtraceResult {
                ret: 0,
                tracee_tgid: Some(4242),
                tracee_start_time_ns: Some(77)
            })
        );
        let failed = wire::PtraceEvent { ret: -1, ..exit };
        let EventBody::Ptrace(t) = decode(&bytes_of(&failed)).expect("ptrace").body else {
            panic!()
        };
        assert_eq!(
            t.result,
            Some(PtraceResult {
                ret: -1,
                tracee_tgid: None,
                tracee_start_time_ns: None
            })
        );
    }

    #[test]
    fn connect_round_trip_v4_and_v6() {
        let v4 = wire::ConnectEvent {
            header: header(wire::kind::CONNECT, 0),
            fd: 3,
            family: wire::AF_INET,
            port: 4444,
            via: wire::via::CONNECT,
            addr: fixed(&[127, 0, 0, 1]),
            sock_type: wire::sock_type::STREAM,
            _pad: 0,
        };
        let EventBody::Connect(c) = decode(&bytes_of(&v4)).expect("v4").body else {
            panic!()
        };
        assert_eq!(
            (c.family, c.addr, c.port, c.fd),
            ("inet", IpAddr::from([127, 0, 0, 1]), 4444, 3)
        );
        let v6 = wire::ConnectEvent {
            family: wire::AF_INET6,
            addr: Ipv6Addr::LOCALHOST.octets(),
            ..v4
        };
        let EventBody::Connect(c) = decode(&bytes_of(&v6)).expect("v6").body else {
            panic!()
        };
        assert_eq!(
            (c.family, c.addr),
            ("inet6", IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        let udp = wire::ConnectEvent {
            header: header(wire::kind::CONNECT, wire::flags::FASTOPEN),
            via: wire::via::SENDTO,
            ..v4
        };
        let EventBody::Connect(c) = decode(&bytes_of(&udp)).expect("sendto").body else {
            panic!()
        };
        assert_eq!((c.via, c.fastopen, c.port), ("sendto", true, 4444));
        assert_eq!(c.socket, Some("stream"));
        let dgram = wire::ConnectEvent {
            sock_type: wire::sock_type::DGRAM,
            ..v4
        };
        let EventBody::Connect(c) = decode(&bytes_of(&dgram)).expect("dgram").body else {
            panic!()
        };
        assert_eq!(c.socket, Some("dgram"));
        let unread = wire::ConnectEvent {
            sock_type: wire::sock_type::UNKNOWN,
            ..v4
        };
        let EventBody::Connect(c) = decode(&bytes_of(&unread)).expect("unread").body else {
            panic!()
        };
        assert_eq!(c.socket, None);
        let bad_type = wire::ConnectEvent {
            sock_type: 77,
            ..v4
        };
        assert!(matches!(
            decode(&bytes_of(&bad_type)),
            Err(DecodeError::BadField {
                field: "sock_type",
                ..
            })
        ));
        let bad_via = wire::ConnectEvent {
            via: wire::via::COUNT,
            ..v4
        };
        assert!(matches!(
            decode(&bytes_of(&bad_via)),
            Err(DecodeError::BadField { field: "via", .. })
        ));
        let unix = wire::ConnectEvent { family: 1, ..v4 };
        assert!(matches!(
            decode(&bytes_of(&unix)),
            Err(DecodeError::BadField {
                field: "family",
                ..
            })
        ));
    }

    #[test]
    fn wx_and_memfd_round_trip() {
        let w = wire::WxMemEvent {
            header: header(wire::kind::WX_MEM, 0),
            syscall: wire::wx_syscall::PKEY_MPROTECT,
            _pad: 0,
            start: 0x1000,
            len: 4096,
            prot: 7,
            flags: 0,
        };
        let EventBody::WxMem(x) = decode(&bytes_of(&w)).expect("wx").body else {
            panic!()
        };
        assert_eq!(
            (x.syscall, x.start, x.len, x.prot),
            ("pkey_mprotect", 0x1000, 4096, 7)
        );
        let bad = wire::WxMemEvent { syscall: 9, ..w };
        assert!(matches!(
            decode(&bytes_of(&bad)),
            Err(DecodeError::BadField {
                field: "syscall",
                ..
            })
        ));
        let m = wire::MemfdEvent {
            header: header(wire::kind::MEMFD, 0),
            flags: 1,
            name_len: 5,
            name: fixed(b"hello"),
        };
        assert_eq!(
            decode(&bytes_of(&m)).expect("memfd").body,
            EventBody::Memfd(Memfd {
                name: "hello".into(),
                flags: 1
            })
        );
    }

    #[test]
    fn truncated_oversized_and_unknown_records_are_rejected() {
        let full = bytes_of(&exec_record());
        assert!(matches!(
            decode(&full[..10]),
            Err(DecodeError::TooShort { len: 10, .. })
        ));
        assert!(matches!(
            decode(&full[..full.len() - 1]),
            Err(DecodeError::WrongSize { kind: "exec", .. })
        ));
        let mut longer = full.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(matches!(
            decode(&longer),
            Err(DecodeError::WrongSize { kind: "exec", .. })
        ));
        let mut unknown = full.clone();
        unknown[..4].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(decode(&unknown), Err(DecodeError::UnknownKind(99)));
        let mut zero = full;
        zero[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(decode(&zero), Err(DecodeError::UnknownKind(0)));
    }

    #[test]
    fn out_of_range_lengths_are_rejected() {
        let mut e = exec_record();
        e.args_len = wire::ARGS_LEN as u32 + 1;
        assert!(matches!(
            decode(&bytes_of(&e)),
            Err(DecodeError::BadField {
                field: "args_len",
                ..
            })
        ));
        let mut e = exec_record();
        e.filename_len = u32::MAX;
        assert!(matches!(
            decode(&bytes_of(&e)),
            Err(DecodeError::BadField {
                field: "filename_len",
                ..
            })
        ));
        let mut e = exec_record();
        e.argc = 1000;
        assert!(matches!(
            decode(&bytes_of(&e)),
            Err(DecodeError::BadField { field: "argc", .. })
        ));
    }

    #[test]
    fn hostile_comm_survives_json() {
        let mut h = header(wire::kind::FORK, 0);
        h.comm = fixed(b"a\n\"\x1b[2J\xff");
        let f = wire::ForkEvent {
            header: h,
            parent_tgid: 1,
            child_tgid: 2,
            child_start_ns: 0,
        };
        let e = decode(&bytes_of(&f)).expect("fork");
        let line = serde_json::to_string(&e).expect("json");
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid");
        assert_eq!(v["kind"], "fork");
        assert_eq!(v["comm"], "a\n\"\u{1b}[2J\u{fffd}");
    }

    #[test]
    fn inject_and_io_uring_round_trip() {
        let pvw = wire::InjectEvent {
            header: header(wire::kind::INJECT, wire::flags::COMPAT),
            method: wire::inject::PROCESS_VM_WRITEV,
            target_name_len: 0,
            target_pid: 4321,
            target_name: [0; wire::COMM_LEN],
        };
        let e = decode(&bytes_of(&pvw)).expect("pvw");
        assert!(e.compat);
        let EventBody::Inject(i) = e.body else {
            panic!()
        };
        assert_eq!(
            (i.method, i.target_pid, i.target_self),
            ("process_vm_writev", Some(4321), false)
        );
        let mem = wire::InjectEvent {
            header: header(wire::kind::INJECT, wire::flags::SELF_TARGET),
            method: wire::inject::PROC_MEM,
            target_name_len: 3,
            target_pid: 0,
            target_name: fixed(b"777"),
        };
        let EventBody::Inject(i) = decode(&bytes_of(&mem)).expect("mem").body else {
            panic!()
        };
        assert_eq!(
            (i.method, i.target_pid, i.target_self),
            ("proc_mem", Some(777), true)
        );
        // A directory name that is no pid (or a length past the array) never becomes one.
        for (name, len) in [
            (&b"self"[..], 4),
            (b"0777", 4),
            (b"", 0),
            (b"99999999999", 11),
        ] {
            let odd = wire::InjectEvent {
                target_name: fixed(name),
                target_name_len: len,
                ..mem
            };
            let EventBody::Inject(i) = decode(&bytes_of(&odd)).expect("odd name").body else {
                panic!()
            };
            assert_eq!(i.target_pid, None, "{name:?}");
        }
        let long = wire::InjectEvent {
            target_name_len: wire::COMM_LEN as u32 + 1,
            ..mem
        };
        assert!(decode(&bytes_of(&long)).is_err());
        let ring = wire::IoUringEvent {
            header: header(wire::kind::IO_URING, 0),
            opcode: wire::uring_op::CONNECT,
            _pad: 0,
        };
        let EventBody::IoUring(u) = decode(&bytes_of(&ring)).expect("uring").body else {
            panic!()
        };
        assert_eq!(u.op, "CONNECT");
        let read = wire::IoUringEvent { opcode: 22, ..ring };
        assert!(decode(&bytes_of(&read)).is_err());
    }
}
