//! Reading the current task (and tasks it points to) through offsets from this kernel's BTF.
//! Every read goes through `bpf_probe_read_kernel`, which fails cleanly instead of faulting;
//! callers check `offsets::kernel_known()` first.
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel, generated};
use procwatch_common::{ExeKey, NAME_READ, RESOLVED_LEN, RESOLVED_START_LIMIT, WALK_DEPTH, ko};

use crate::{maps::WALK_SCRATCH, offsets};

/// A `struct task_struct *`.
pub type Task = *const u8;

/// The current task.
#[inline(always)]
pub fn current() -> Task {
    // SAFETY: plain helper call.
    unsafe { bpf_get_current_task() as Task }
}

/// Reads a `T` at `base + off`.
#[inline(always)]
pub fn read<T>(base: *const u8, off: usize) -> Option<T> {
    if base.is_null() {
        return None;
    }
    // SAFETY: a fault-tolerant kernel read; the address comes from a kernel pointer plus a
    // BTF offset.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off).cast::<T>()) }.ok()
}

/// `task->tgid`.
#[inline(always)]
pub fn tgid(task: Task) -> Option<u32> {
    read::<u32>(task, offsets::ko(ko::TASK_TGID))
}

/// `task->pid` (the thread id).
#[inline(always)]
pub fn pid(task: Task) -> Option<u32> {
    read::<u32>(task, offsets::ko(ko::TASK_PID))
}

/// `task->real_parent`.
#[inline(always)]
pub fn real_parent(task: Task) -> Option<Task> {
    read::<Task>(task, offsets::ko(ko::TASK_REAL_PARENT)).filter(|p| !p.is_null())
}

/// `task->start_boottime` (ns): with the pid, the identity /proc/PID/stat's start time gives.
#[inline(always)]
pub fn start_ns(task: Task) -> Option<u64> {
    read::<u64>(task, offsets::ko(ko::TASK_START_BOOTTIME))
}

/// Start of the process `task` belongs to: its thread-group leader's `start_boottime`.
#[inline(always)]
pub fn process_start_ns(task: Task) -> u64 {
    if !offsets::kernel_known() {
        return 0;
    }
    read::<Task>(task, offsets::ko(ko::TASK_GROUP_LEADER))
        .and_then(start_ns)
        .unwrap_or(0)
}

/// tgid of `task`'s real parent; 0 when unknown.
#[inline(always)]
pub fn parent_tgid(task: Task) -> u32 {
    if !offsets::kernel_known() {
        return 0;
    }
    real_parent(task).and_then(tgid).unwrap_or(0)
}

/// What `task` runs: `mm->exe_file->f_inode` as (superblock device, inode number).
#[inline(always)]
pub fn exe_key(task: Task) -> Option<ExeKey> {
    if !offsets::kernel_known() {
        return None;
    }
    let mm = read::<*const u8>(task, offsets::ko(ko::TASK_MM))?;
    let file = read::<*const u8>(mm, offsets::ko(ko::MM_EXE_FILE))?;
    let inode = read::<*const u8>(file, offsets::ko(ko::FILE_INODE))?;
    let ino = read::<u64>(inode, offsets::ko(ko::INODE_INO))?;
    let sb = read::<*const u8>(inode, offsets::ko(ko::INODE_SB))?;
    let dev = read::<u32>(sb, offsets::ko(ko::SB_DEV))?;
    Some(ExeKey {
        dev: u64::from(dev),
        ino,
    })
}

/// Steps of a path walk: one per component or mount crossed.
const WALK_STEPS: usize = 48;

/// Writes the path of `(vfsmnt, dentry)` into `out` (at least `RESOLVED_LEN` bytes) as the
/// kernel's d_path would within the task's mount namespace: components walked up through
/// `d_parent` and across mounts (`mnt_mountpoint`), written root first, `/`-separated, no
/// NUL. Returns the bytes used and whether the whole path fitted.
///
/// Every step stores one slot (a dentry to name, or 0 for a mount crossed) and the counters
/// live in the map, so all paths through the loops reach the same state and the verifier
/// prunes them.
///
/// # Safety
/// `out` must be valid for writes of `RESOLVED_LEN` bytes.
#[inline(always)]
pub unsafe fn walk_path(vfsmnt: *const u8, dentry: *const u8, out: *mut u8) -> Option<(u32, bool)> {
    let w = WALK_SCRATCH.get_ptr_mut(0)?;
    let mut d = dentry;
    let mut vm = vfsmnt;
    let mut mnt = vfsmnt.wrapping_sub(offsets::ko(ko::MOUNT_MNT));
    // SAFETY: `w` is this CPU's slot; plain integer fields.
    unsafe {
        (*w).steps = 0;
        (*w).whole = 0;
    }
    for i in 0..WALK_STEPS {
        let Some(root) = read::<*const u8>(vm, offsets::ko(ko::VFSMOUNT_ROOT)) else {
            break;
        };
        let mut named: u64 = 0;
        if d == root {
            let Some(parent) = read::<*const u8>(mnt, offsets::ko(ko::MOUNT_PARENT)) else {
                break;
            };
            if parent == mnt || parent.is_null() {
                // SAFETY: as above.
                unsafe { (*w).whole = 1 };
                break;
            }
            let Some(point) = read::<*const u8>(mnt, offsets::ko(ko::MOUNT_MOUNTPOINT)) else {
                break;
            };
            d = point;
            mnt = parent;
            vm = mnt.wrapping_add(offsets::ko(ko::MOUNT_MNT));
        } else {
            let Some(parent) = read::<*const u8>(d, offsets::ko(ko::DENTRY_PARENT)) else {
                break;
            };
            if parent == d || parent.is_null() {
                // A dentry with no parent that is not a mount's root: a pseudo file (memfd,
                // anonymous inode) or the root of a detached mount. Its own name is its path,
                // as d_path shows it (`/memfd:NAME`).
                // SAFETY: the index is masked into the slot's stack; plain integer fields.
                unsafe {
                    (*w).stack[i & (WALK_DEPTH - 1)] = d as u64;
                    (*w).steps = (i + 1) as u64;
                    (*w).whole = 1;
                }
                break;
            }
            named = d as u64;
            d = parent;
        }
        // SAFETY: the index is masked into the slot's stack.
        unsafe {
            (*w).stack[i & (WALK_DEPTH - 1)] = named;
            (*w).steps = (i + 1) as u64;
        }
    }
    // SAFETY: as above.
    unsafe { (*w).off = 0 };
    for _ in 0..WALK_STEPS {
        // Read back from the map each time: unknown to the verifier, so the state at the top of
        // every iteration is the same and it is checked once, not once per offset reached.
        // SAFETY: as above.
        let (steps, off) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*w).steps) as usize,
                core::ptr::read_volatile(&raw const (*w).off) as usize,
            )
        };
        if steps == 0 || steps > WALK_STEPS {
            break;
        }
        let steps = steps - 1;
        // SAFETY: as above.
        unsafe { (*w).steps = steps as u64 };
        // SAFETY: the index is masked into the slot's stack.
        let named = unsafe { (*w).stack[steps & (WALK_DEPTH - 1)] } as *const u8;
        if named.is_null() {
            continue;
        }
        if off > RESOLVED_START_LIMIT {
            // SAFETY: as above.
            unsafe { (*w).whole = 0 };
            break;
        }
        let Some(name) = read::<*const u8>(named, offsets::ko(ko::DENTRY_NAME)) else {
            // SAFETY: as above.
            unsafe { (*w).whole = 0 };
            break;
        };
        // SAFETY: off <= RESOLVED_START_LIMIT, so off + 1 + NAME_READ <= RESOLVED_LEN.
        let got = unsafe {
            *out.wrapping_add(off) = b'/';
            generated::bpf_probe_read_kernel_str(
                out.wrapping_add(off + 1).cast(),
                NAME_READ as u32,
                name.cast(),
            )
        };
        if got <= 0 {
            // SAFETY: as above.
            unsafe { (*w).whole = 0 };
            break;
        }
        // SAFETY: as above.
        unsafe {
            if got as usize >= NAME_READ {
                (*w).whole = 0;
            }
            // `got` counts the NUL, which the next `/` overwrites.
            (*w).off = (off + got as usize) as u64;
        }
    }
    // SAFETY: as above.
    let mut off = unsafe { core::ptr::read_volatile(&raw const (*w).off) } as usize;
    if off > RESOLVED_LEN {
        off = RESOLVED_LEN;
    }
    if off == 0 {
        // The root itself.
        // SAFETY: out has RESOLVED_LEN > 1 bytes.
        unsafe { *out = b'/' };
        off = 1;
    }
    // SAFETY: as above.
    let whole = unsafe { core::ptr::read_volatile(&raw const (*w).whole) } != 0;
    Some((off as u32, whole))
}

/// The file behind the current task's descriptor `fd` (`files->fdt->fd[fd]`).
#[inline(always)]
pub fn file_of_fd(fd: u64) -> Option<*const u8> {
    if !offsets::kernel_known() {
        return None;
    }
    let files = read::<*const u8>(current(), offsets::ko(ko::TASK_FILES))?;
    let fdt = read::<*const u8>(files, offsets::ko(ko::FILES_FDT))?;
    let max = read::<u32>(fdt, offsets::ko(ko::FDT_MAX_FDS))?;
    if fd >= u64::from(max) {
        return None;
    }
    let array = read::<*const u8>(fdt, offsets::ko(ko::FDT_FD))?;
    read::<*const u8>(array, (fd as usize) * 8).filter(|f| !f.is_null())
}

/// `S_IFMT` and `S_IFSOCK` (linux/stat.h).
const S_IFMT: u16 = 0o170_000;
const S_IFSOCK: u16 = 0o140_000;

/// The type (`SOCK_STREAM`, `SOCK_DGRAM`, ...) of the socket behind the current task's
/// descriptor `fd`; 0 when it is not a socket or cannot be read.
#[inline(always)]
pub fn socket_type_of_fd(fd: u64) -> u32 {
    let Some(file) = file_of_fd(fd) else {
        return 0;
    };
    let Some(inode) = read::<*const u8>(file, offsets::ko(ko::FILE_INODE)) else {
        return 0;
    };
    // Only a socket file's private_data is a `struct socket`.
    match read::<u16>(inode, offsets::ko(ko::INODE_MODE)) {
        Some(mode) if mode & S_IFMT == S_IFSOCK => {}
        _ => return 0,
    }
    let Some(sock) = read::<*const u8>(file, offsets::ko(ko::FILE_PRIVATE)) else {
        return 0;
    };
    read::<u16>(sock, offsets::ko(ko::SOCKET_TYPE)).map_or(0, u32::from)
}
