//! Reading the current task (and tasks it points to) through offsets from this kernel's BTF.
//! Every read goes through `bpf_probe_read_kernel`, which fails cleanly instead of faulting;
//! callers check `offsets::kernel_known()` first.
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use procwatch_common::{ExeKey, ko};

use crate::offsets;

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
