//! Finding (or mounting) tracefs, and reading tracepoint format files.
use std::path::{Path, PathBuf};

use procwatch_common::tp;
use tracing::info;

/// Where tracefs is normally mounted.
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// The older location under debugfs.
pub const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// tracefs is missing and could not be mounted.
#[derive(Debug, thiserror::Error)]
#[error(
    "tracefs is not mounted at {TRACEFS} and mounting it failed ({reason}); \
     tracepoints cannot be attached. As root: mount -t tracefs tracefs {TRACEFS}"
)]
pub struct TracefsError {
    /// Why mounting failed.
    pub reason: String,
}

fn has_events(root: &Path) -> bool {
    root.join("events").is_dir()
}

/// Returns the tracefs root, mounting it at [`TRACEFS`] when neither location has it.
pub fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    for root in [TRACEFS, DEBUGFS_TRACING] {
        if has_events(Path::new(root)) {
            return Ok(PathBuf::from(root));
        }
    }
    mount_tracefs().map_err(|reason| TracefsError { reason })?;
    if has_events(Path::new(TRACEFS)) {
        info!("mounted tracefs at {TRACEFS}");
        Ok(PathBuf::from(TRACEFS))
    } else {
        Err(TracefsError {
            reason: "mounted, but it has no events directory".into(),
        })
    }
}

fn mount_tracefs() -> Result<(), String> {
    let target = std::ffi::CString::new(TRACEFS).map_err(|e| e.to_string())?;
    let fstype = c"tracefs";
    // SAFETY: NUL-terminated strings that outlive the call; null data is allowed.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        let err = std::io::Error::last_os_error();
        Err(match err.raw_os_error() {
            Some(libc::EPERM) => format!("{err}: procwatch needs to run as root"),
            _ => err.to_string(),
        })
    }
}

/// Offset of `field` in a tracepoint's record, from its format file.
pub fn field_offset(root: &Path, category: &str, name: &str, field: &str) -> Option<u64> {
    let text =
        std::fs::read_to_string(root.join("events").join(category).join(name).join("format"))
            .ok()?;
    parse_field_offset(&text, field)
}

/// Which tracepoint field each `tp` slot holds: (slot, category, tracepoint, field).
pub const FIELDS: [(usize, &str, &str, &str); tp::COUNT] = [
    (tp::EXEC_FILENAME, "sched", "sched_process_exec", "filename"),
    (tp::EXEC_OLD_PID, "sched", "sched_process_exec", "old_pid"),
    (
        tp::FORK_CHILD_PID,
        "sched",
        "sched_process_fork",
        "child_pid",
    ),
    (
        tp::EXIT_GROUP_DEAD,
        "sched",
        "sched_process_exit",
        "group_dead",
    ),
    (tp::EXECVE_ARGV, "syscalls", "sys_enter_execve", "argv"),
    (tp::EXECVEAT_ARGV, "syscalls", "sys_enter_execveat", "argv"),
    (
        tp::CLONE_FLAGS,
        "syscalls",
        "sys_enter_clone",
        "clone_flags",
    ),
    (tp::CLONE3_UARGS, "syscalls", "sys_enter_clone3", "uargs"),
    (
        tp::EXIT_GROUP_CODE,
        "syscalls",
        "sys_enter_exit_group",
        "error_code",
    ),
    (
        tp::PTRACE_REQUEST,
        "syscalls",
        "sys_enter_ptrace",
        "request",
    ),
    (tp::PTRACE_PID, "syscalls", "sys_enter_ptrace", "pid"),
    (tp::PTRACE_RET, "syscalls", "sys_exit_ptrace", "ret"),
    (tp::CONNECT_FD, "syscalls", "sys_enter_connect", "fd"),
    (
        tp::CONNECT_ADDR,
        "syscalls",
        "sys_enter_connect",
        "uservaddr",
    ),
    (
        tp::CONNECT_ADDRLEN,
        "syscalls",
        "sys_enter_connect",
        "addrlen",
    ),
    (
        tp::MPROTECT_START,
        "syscalls",
        "sys_enter_mprotect",
        "start",
    ),
    (tp::MPROTECT_LEN, "syscalls", "sys_enter_mprotect", "len"),
    (tp::MPROTECT_PROT, "syscalls", "sys_enter_mprotect", "prot"),
    (
        tp::PKEY_START,
        "syscalls",
        "sys_enter_pkey_mprotect",
        "start",
    ),
    (tp::PKEY_LEN, "syscalls", "sys_enter_pkey_mprotect", "len"),
    (tp::PKEY_PROT, "syscalls", "sys_enter_pkey_mprotect", "prot"),
    (tp::PKEY_PKEY, "syscalls", "sys_enter_pkey_mprotect", "pkey"),
    (tp::MMAP_ADDR, "syscalls", "sys_enter_mmap", "addr"),
    (tp::MMAP_LEN, "syscalls", "sys_enter_mmap", "len"),
    (tp::MMAP_PROT, "syscalls", "sys_enter_mmap", "prot"),
    (tp::MMAP_FLAGS, "syscalls", "sys_enter_mmap", "flags"),
    (
        tp::MEMFD_NAME,
        "syscalls",
        "sys_enter_memfd_create",
        "uname",
    ),
    (
        tp::MEMFD_FLAGS,
        "syscalls",
        "sys_enter_memfd_create",
        "flags",
    ),
    (
        tp::PVW_PID,
        "syscalls",
        "sys_enter_process_vm_writev",
        "pid",
    ),
    (tp::OPENAT_RET, "syscalls", "sys_exit_openat", "ret"),
    (tp::OPENAT2_RET, "syscalls", "sys_exit_openat2", "ret"),
    (tp::OPEN_RET, "syscalls", "sys_exit_open", "ret"),
    (tp::SENDTO_FLAGS, "syscalls", "sys_enter_sendto", "flags"),
    (tp::SENDTO_ADDR, "syscalls", "sys_enter_sendto", "addr"),
    (
        tp::SENDTO_ADDRLEN,
        "syscalls",
        "sys_enter_sendto",
        "addr_len",
    ),
    (tp::SENDTO_FD, "syscalls", "sys_enter_sendto", "fd"),
    (tp::SENDMSG_FD, "syscalls", "sys_enter_sendmsg", "fd"),
    (tp::SENDMSG_MSG, "syscalls", "sys_enter_sendmsg", "msg"),
    (tp::SENDMSG_FLAGS, "syscalls", "sys_enter_sendmsg", "flags"),
    (tp::SENDMMSG_FD, "syscalls", "sys_enter_sendmmsg", "fd"),
    (tp::SENDMMSG_MMSG, "syscalls", "sys_enter_sendmmsg", "mmsg"),
    (tp::SENDMMSG_VLEN, "syscalls", "sys_enter_sendmmsg", "vlen"),
    (
        tp::SENDMMSG_FLAGS,
        "syscalls",
        "sys_enter_sendmmsg",
        "flags",
    ),
    (
        tp::URING_OPCODE,
        "io_uring",
        "io_uring_submit_req",
        "opcode",
    ),
    (tp::MMAP_FD, "syscalls", "sys_enter_mmap", "fd"),
    (tp::OPENAT_DFD, "syscalls", "sys_enter_openat", "dfd"),
    (
        tp::OPENAT_FILENAME,
        "syscalls",
        "sys_enter_openat",
        "filename",
    ),
    (tp::OPENAT_FLAGS, "syscalls", "sys_enter_openat", "flags"),
    (tp::OPENAT2_DFD, "syscalls", "sys_enter_openat2", "dfd"),
    (
        tp::OPENAT2_FILENAME,
        "syscalls",
        "sys_enter_openat2",
        "filename",
    ),
    (tp::OPEN_FILENAME, "syscalls", "sys_enter_open", "filename"),
    (tp::OPEN_FLAGS, "syscalls", "sys_enter_open", "flags"),
];

/// Fields the programs can do without: `group_dead` (a leader's exit then stands for its
/// process, as on kernels before it existed).
pub const OPTIONAL: [usize; 1] = [tp::EXIT_GROUP_DEAD];

/// Offsets of every field in [`FIELDS`] under the tracefs at `root`, [`tp::UNKNOWN`] for the
/// ones this kernel's format files do not have (or that cannot be read).
pub fn tracepoint_offsets(root: &Path) -> [u32; tp::COUNT] {
    tracepoint_offsets_with(|category, name| {
        std::fs::read_to_string(root.join("events").join(category).join(name).join("format")).ok()
    })
}

/// [`tracepoint_offsets`] over any source of format texts (a test passes synthetic ones).
pub fn tracepoint_offsets_with(
    mut format: impl FnMut(&str, &str) -> Option<String>,
) -> [u32; tp::COUNT] {
    let mut out = [tp::UNKNOWN; tp::COUNT];
    let mut cache: Vec<(&str, Option<String>)> = Vec::new();
    for (slot, category, name, field) in FIELDS {
        let text = match cache.iter().find(|(n, _)| *n == name) {
            Some((_, t)) => t.clone(),
            None => {
                let t = format(category, name);
                cache.push((name, t.clone()));
                t
            }
        };
        // An offset beyond any record (a record is at most a page) is not believed.
        out[slot] = text
            .and_then(|t| parse_field_offset(&t, field))
            .and_then(|o| u32::try_from(o).ok())
            .filter(|&o| o < 4096)
            .unwrap_or(tp::UNKNOWN);
    }
    out
}

/// The fields of `category:name` that `offsets` lacks (optional ones aside).
pub fn missing_fields(offsets: &[u32; tp::COUNT], name: &str) -> Vec<&'static str> {
    FIELDS
        .iter()
        .filter(|(slot, _, n, _)| {
            *n == name && offsets[*slot] == tp::UNKNOWN && !OPTIONAL.contains(slot)
        })
        .map(|(_, _, _, field)| *field)
        .collect()
}

/// Finds `field:<type> <field>;\toffset:N;` in format text.
pub fn parse_field_offset(format: &str, field: &str) -> Option<u64> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.split_whitespace().last()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        rest.trim()
            .strip_prefix("offset:")?
            .split(';')
            .next()?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXIT_FORMAT: &str = "name: sched_process_exit\nID: 321\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";

    /// A format file in this kernel's syntax with the given (type, name, offset, size) fields.
    fn format(name: &str, fields: &[(&str, &str, u32, u32)]) -> String {
        let mut s = format!(
            "name: {name}\nID: 1\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n"
        );
        for (ty, field, off, size) in fields {
            s.push_str(&format!(
                "\tfield:{ty} {field};\toffset:{off};\tsize:{size};\tsigned:0;\n"
            ));
        }
        s
    }

    #[test]
    fn offsets_follow_another_layout() {
        // A kernel whose syscall records start at 24 and whose exec record moved its fields.
        let formats = |category: &str, name: &str| -> Option<String> {
            if category == "syscalls" {
                let args: Vec<&str> = FIELDS.iter().filter(|f| f.2 == name).map(|f| f.3).collect();
                let fields: Vec<(&str, &str, u32, u32)> = (0u32..)
                    .zip(&args)
                    .map(|(i, a)| ("unsigned long", *a, 24 + 8 * i, 8))
                    .collect();
                return Some(format(name, &fields));
            }
            match name {
                "sched_process_exec" => Some(format(
                    name,
                    &[
                        ("pid_t", "old_pid", 40, 4),
                        ("__data_loc char[]", "filename", 44, 4),
                    ],
                )),
                "sched_process_fork" => Some(format(name, &[("pid_t", "child_pid", 52, 4)])),
                // No group_dead: an older kernel.
                "sched_process_exit" => Some(format(name, &[("pid_t", "pid", 24, 4)])),
                _ => None,
            }
        };
        let o = tracepoint_offsets_with(formats);
        assert_eq!(o[tp::EXEC_OLD_PID], 40);
        assert_eq!(o[tp::EXEC_FILENAME], 44);
        assert_eq!(o[tp::FORK_CHILD_PID], 52);
        assert_eq!(o[tp::EXIT_GROUP_DEAD], tp::UNKNOWN);
        assert_eq!(o[tp::PTRACE_REQUEST], 24);
        assert_eq!(o[tp::PTRACE_PID], 32);
        assert_eq!(o[tp::MMAP_PROT], 40);
        assert_eq!(o[tp::MMAP_FLAGS], 48);
        assert_eq!(o[tp::CONNECT_ADDRLEN], 40);
        assert_eq!(o[tp::PTRACE_RET], 24);
        assert!(
            missing_fields(&o, "sched_process_exit").is_empty(),
            "optional"
        );
        // A tracepoint without its format file: its fields are unknown and reported.
        let o = tracepoint_offsets_with(|c, n| {
            (n != "sys_enter_connect").then(|| formats(c, n)).flatten()
        });
        assert_eq!(
            missing_fields(&o, "sys_enter_connect"),
            ["fd", "uservaddr", "addrlen"]
        );
        assert!(missing_fields(&o, "sys_enter_ptrace").is_empty());
    }

    #[test]
    fn finds_field_offsets() {
        assert_eq!(parse_field_offset(EXIT_FORMAT, "group_dead"), Some(32));
        assert_eq!(parse_field_offset(EXIT_FORMAT, "comm"), Some(8));
        assert_eq!(parse_field_offset(EXIT_FORMAT, "pid"), Some(24));
        assert_eq!(parse_field_offset(EXIT_FORMAT, "missing"), None);
    }
}
