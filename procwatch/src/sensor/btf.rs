//! Kernel struct member offsets from this kernel's BTF (`/sys/kernel/btf/vmlinux`), for the
//! eBPF programs that read `task_struct` and the files it points to. Read at load time, never
//! compiled in: CO-RE relocations are not available to aya's Rust eBPF programs, and a kernel
//! with another layout must still be read correctly.
use std::path::Path;

use btfparse::{Offset, TypeInformation, TypeVariant};
use procwatch_common::ko;

/// Where the kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Which struct member each `ko` slot holds (slot, struct, member path).
pub const MEMBERS: [(usize, &str, &str); ko::COUNT - 1] = [
    (ko::TASK_PID, "task_struct", "pid"),
    (ko::TASK_TGID, "task_struct", "tgid"),
    (ko::TASK_START_BOOTTIME, "task_struct", "start_boottime"),
    (ko::TASK_REAL_PARENT, "task_struct", "real_parent"),
    (ko::TASK_PARENT, "task_struct", "parent"),
    (ko::TASK_GROUP_LEADER, "task_struct", "group_leader"),
    (ko::TASK_MM, "task_struct", "mm"),
    (ko::TASK_PTRACED, "task_struct", "ptraced"),
    (ko::TASK_PTRACE_ENTRY, "task_struct", "ptrace_entry"),
    (ko::MM_EXE_FILE, "mm_struct", "exe_file"),
    (ko::FILE_INODE, "file", "f_inode"),
    (ko::INODE_INO, "inode", "i_ino"),
    (ko::INODE_SB, "inode", "i_sb"),
    (ko::SB_DEV, "super_block", "s_dev"),
    (ko::FILE_PATH_MNT, "file", "f_path.mnt"),
    (ko::FILE_PATH_DENTRY, "file", "f_path.dentry"),
    (ko::DENTRY_PARENT, "dentry", "d_parent"),
    (ko::DENTRY_NAME, "dentry", "d_name.name"),
    (ko::VFSMOUNT_ROOT, "vfsmount", "mnt_root"),
    (ko::MOUNT_MNT, "mount", "mnt"),
    (ko::MOUNT_PARENT, "mount", "mnt_parent"),
    (ko::MOUNT_MOUNTPOINT, "mount", "mnt_mountpoint"),
    (ko::TASK_FS, "task_struct", "fs"),
    (ko::FS_PWD_MNT, "fs_struct", "pwd.mnt"),
    (ko::FS_PWD_DENTRY, "fs_struct", "pwd.dentry"),
    (ko::BPRM_FILE, "linux_binprm", "file"),
    (ko::BPRM_FILENAME, "linux_binprm", "filename"),
    (ko::BPRM_INTERP, "linux_binprm", "interp"),
    (ko::TASK_FILES, "task_struct", "files"),
    (ko::FILES_FDT, "files_struct", "fdt"),
    (ko::FDT_FD, "fdtable", "fd"),
    (ko::FDT_MAX_FDS, "fdtable", "max_fds"),
    (ko::FILE_MODE, "file", "f_mode"),
    (ko::FILE_PRIVATE, "file", "private_data"),
    (ko::SB_MAGIC, "super_block", "s_magic"),
    (ko::TASK_TI_STATUS, "task_struct", "thread_info.status"),
    (ko::TASK_PERSONALITY, "task_struct", "personality"),
    (ko::FILE_MAPPING, "file", "f_mapping"),
    (ko::MAPPING_WRITABLE, "address_space", "i_mmap_writable"),
    (ko::REGS_BX, "pt_regs", "bx"),
    (ko::REGS_CX, "pt_regs", "cx"),
    (ko::REGS_DX, "pt_regs", "dx"),
    (ko::REGS_SI, "pt_regs", "si"),
    (ko::REGS_DI, "pt_regs", "di"),
    (ko::REGS_BP, "pt_regs", "bp"),
    (ko::REGS_ORIG_AX, "pt_regs", "orig_ax"),
    (ko::INODE_MODE, "inode", "i_mode"),
    (ko::SOCKET_TYPE, "socket", "type"),
];

/// Why the kernel's BTF could not provide the offsets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    /// The file is missing or unreadable (a kernel built without CONFIG_DEBUG_INFO_BTF).
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The BTF file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The file is not valid BTF.
    #[error("{path} is not valid BTF: {reason}")]
    Malformed {
        /// The BTF file.
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// A struct or member the programs read is not there (or is a bitfield).
    #[error("{path} has no usable {what}")]
    Missing {
        /// The BTF file.
        path: String,
        /// `struct.member`.
        what: String,
    },
}

/// The offsets of every `ko` slot, `ko::VALID` set to 1.
pub fn kernel_offsets(path: &Path) -> Result<[u32; ko::COUNT], BtfError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| BtfError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    offsets_from_bytes(&bytes).map_err(|e| match e {
        Resolve::Parse(reason) => BtfError::Malformed {
            path: shown,
            reason,
        },
        Resolve::Missing(what) => BtfError::Missing { path: shown, what },
    })
}

enum Resolve {
    Parse(String),
    Missing(String),
}

/// The byte buffer as btfparse's input.
struct Bytes<'a>(&'a [u8]);

impl btfparse::Readable for Bytes<'_> {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).ok();
        let end = start.and_then(|s| s.checked_add(buffer.len()));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.0.len() => {
                buffer.copy_from_slice(&self.0[s..e]);
                Ok(())
            }
            _ => Err(btfparse::Error::new(
                btfparse::ErrorKind::IOError,
                "read past the end of the BTF data",
            )),
        }
    }
}

fn offsets_from_bytes(bytes: &[u8]) -> Result<[u32; ko::COUNT], Resolve> {
    let info =
        TypeInformation::new(&Bytes(bytes)).map_err(|e| Resolve::Parse(e.message().to_string()))?;
    let ids = struct_ids(&info);
    let mut out = [u32::MAX; ko::COUNT];
    for (slot, strukt, member) in MEMBERS {
        let what = || format!("{strukt}.{member}");
        let id = *ids.get(strukt).ok_or_else(|| Resolve::Missing(what()))?;
        match info.offset_of(id, member) {
            Ok((_, Offset::ByteOffset(off))) => out[slot] = off,
            _ => return Err(Resolve::Missing(what())),
        }
    }
    out[ko::VALID] = 1;
    Ok(out)
}

/// The ids of the structs [`MEMBERS`] names, found in one pass (a name may also belong to a
/// function or a typedef, so the kind is checked rather than trusting a name lookup).
fn struct_ids(info: &TypeInformation) -> std::collections::HashMap<&'static str, u32> {
    let mut ids = std::collections::HashMap::new();
    for (&id, ty) in info.get() {
        if !matches!(ty, TypeVariant::Struct(_)) {
            continue;
        }
        let Some(name) = info.name_of(id) else {
            continue;
        };
        if let Some((_, wanted, _)) = MEMBERS.iter().find(|m| m.1 == name) {
            ids.entry(*wanted).or_insert(id);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_bad_file_is_an_error_not_a_panic() {
        assert!(matches!(
            kernel_offsets(Path::new("/nonexistent/vmlinux")),
            Err(BtfError::Unreadable { .. })
        ));
        assert!(matches!(
            offsets_from_bytes(&[0u8; 7]),
            Err(Resolve::Parse(_))
        ));
        assert!(matches!(
            offsets_from_bytes(b"\x9f\xeb\x01\x00garbage-garbage-garbage"),
            Err(Resolve::Parse(_))
        ));
    }

    #[test]
    fn this_kernel_has_every_member() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("SKIP: {VMLINUX_BTF} missing (kernel built without BTF)");
            return;
        }
        let o = kernel_offsets(Path::new(VMLINUX_BTF)).expect("offsets");
        assert_eq!(o[ko::VALID], 1);
        // Members of one struct are distinct; pointers and u64s are 8-byte aligned.
        let task = [
            ko::TASK_PID,
            ko::TASK_TGID,
            ko::TASK_START_BOOTTIME,
            ko::TASK_REAL_PARENT,
            ko::TASK_PARENT,
            ko::TASK_GROUP_LEADER,
            ko::TASK_MM,
            ko::TASK_PTRACED,
            ko::TASK_PTRACE_ENTRY,
        ];
        let mut seen: Vec<u32> = task.iter().map(|&s| o[s]).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), task.len(), "{o:?}");
        for slot in [
            ko::TASK_START_BOOTTIME,
            ko::TASK_REAL_PARENT,
            ko::TASK_MM,
            ko::MM_EXE_FILE,
            ko::FILE_INODE,
            ko::INODE_SB,
            ko::FILE_PATH_MNT,
            ko::FILE_PATH_DENTRY,
            ko::DENTRY_PARENT,
            ko::DENTRY_NAME,
            ko::VFSMOUNT_ROOT,
            ko::MOUNT_PARENT,
            ko::MOUNT_MOUNTPOINT,
            ko::TASK_FS,
            ko::BPRM_FILE,
            ko::BPRM_FILENAME,
            ko::BPRM_INTERP,
        ] {
            assert_eq!(o[slot] % 8, 0, "slot {slot}: {o:?}");
        }
        // struct path is { mnt; dentry; }.
        assert_eq!(o[ko::FILE_PATH_DENTRY], o[ko::FILE_PATH_MNT] + 8);
        assert_eq!(o[ko::FS_PWD_DENTRY], o[ko::FS_PWD_MNT] + 8);
        // tgid follows pid in task_struct on every kernel since 2.6.
        assert_eq!(o[ko::TASK_TGID], o[ko::TASK_PID] + 4);
    }
}
