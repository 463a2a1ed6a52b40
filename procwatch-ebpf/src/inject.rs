//! Code injection without ptrace: `process_vm_writev` into another process, and
//! `/proc/PID/mem` opened for writing (by any path: `/proc/self/..`, a relative `openat` from
//! a /proc directory fd, `task/TID/mem`, `open`, `openat2`).
//!
//! The open is judged at syscall exit on the file the kernel really opened (procfs
//! superblock, dentry `mem`, opened for writing), not on the path string, so no spelling of
//! the path gets past it. The target is the name of the directory holding `mem` (its pid or
//! tid). A write into the caller's own memory (the file's mm is the caller's) is flagged
//! `SELF_TARGET`: that is no injection (see docs/rules.md).
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use procwatch_common::{COMM_LEN, InjectEvent, config, flags, inject, kind, ko, tp};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    offsets, policy, task,
};

/// `FMODE_WRITE` (linux/fs.h).
const FMODE_WRITE: u32 = 0x2;
/// `PROC_SUPER_MAGIC` (uapi magic.h).
const PROC_SUPER_MAGIC: u64 = 0x9fa0;

#[tracepoint]
pub fn sys_enter_process_vm_writev(ctx: TracePointContext) -> u32 {
    // process_vm_writev(pid, lvec, liovcnt, rvec, riovcnt, flags)
    // SAFETY: syscall argument slot, offset from the format file.
    if let Ok(pid) = unsafe { ctx.read_at::<u64>(offsets::tp(tp::PVW_PID)) } {
        process_vm_writev(pid, 0);
    }
    0
}

/// Reports (and under the ptrace policy kills) a `process_vm_writev` to `pid`; `hdr_flags`
/// carries `COMPAT` for the ia32 entry.
#[inline(always)]
pub fn process_vm_writev(pid: u64, hdr_flags: u32) {
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return;
    }
    // The pid is in the caller's namespace: its own tgid there is only known to equal the
    // kernel's outside a pid namespace. Userspace compares what it can.
    let own = pid == u64::from(tgid);
    let action = if own {
        0
    } else {
        policy::enforce(config::KILL_PTRACE, tgid)
    };
    let Some(mut entry) = reserve::<InjectEvent>(kind::INJECT) else {
        return;
    };
    let e = entry.as_mut_ptr();
    let own_flag = if own { flags::SELF_TARGET } else { 0 };
    // SAFETY: reserved slot of the right size.
    unsafe {
        fill_header(
            &raw mut (*e).header,
            kind::INJECT,
            pid_tgid,
            action | hdr_flags | own_flag,
        );
        (*e).method = inject::PROCESS_VM_WRITEV;
        (*e).target_name_len = 0;
        (*e).target_pid = pid;
        let words = (*e).target_name.as_mut_ptr().cast::<u64>();
        core::ptr::write_volatile(words, 0);
        core::ptr::write_volatile(words.wrapping_add(1), 0);
    }
    emit::submit(entry, emit::Urgency::Urgent);
}

#[tracepoint]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    open_exit(&ctx, tp::OPENAT_RET);
    0
}

#[tracepoint]
pub fn sys_exit_openat2(ctx: TracePointContext) -> u32 {
    open_exit(&ctx, tp::OPENAT2_RET);
    0
}

#[tracepoint]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    open_exit(&ctx, tp::OPEN_RET);
    0
}

#[inline(always)]
fn open_exit(ctx: &TracePointContext, slot: usize) {
    // SAFETY: syscall return slot, offset from the format file.
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(offsets::tp(slot)) }) else {
        return;
    };
    if ret < 0 || !offsets::kernel_known() {
        return;
    }
    let _ = check_mem_open(ret as u64, 0);
}

/// Judges the file an open just returned as `fd`: a `/proc/PID/mem` opened for writing is an
/// injection finding. `hdr_flags` carries `COMPAT` for the ia32 entry.
pub fn check_mem_open(fd: u64, hdr_flags: u32) -> Option<()> {
    let file = task::file_of_fd(fd)?;
    // Most opens are read-only: one read decides.
    let mode = task::read::<u32>(file, offsets::ko(ko::FILE_MODE))?;
    if mode & FMODE_WRITE == 0 {
        return None;
    }
    let inode = task::read::<*const u8>(file, offsets::ko(ko::FILE_INODE))?;
    let sb = task::read::<*const u8>(inode, offsets::ko(ko::INODE_SB))?;
    if task::read::<u64>(sb, offsets::ko(ko::SB_MAGIC))? != PROC_SUPER_MAGIC {
        return None;
    }
    let dentry = task::read::<*const u8>(file, offsets::ko(ko::FILE_PATH_DENTRY))?;
    let name = task::read::<*const u8>(dentry, offsets::ko(ko::DENTRY_NAME))?;
    if task::read::<[u8; 4]>(name, 0)? != *b"mem\0" {
        return None;
    }
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return None;
    }
    // /proc/PID/mem keeps the target's mm in private_data.
    let target_mm = task::read::<*const u8>(file, offsets::ko(ko::FILE_PRIVATE));
    let own_mm = task::read::<*const u8>(task::current(), offsets::ko(ko::TASK_MM));
    let own = target_mm.is_some() && target_mm == own_mm;
    let action = if own {
        0
    } else {
        policy::enforce(config::KILL_PTRACE, tgid)
    };
    let parent = task::read::<*const u8>(dentry, offsets::ko(ko::DENTRY_PARENT))?;
    let parent_name = task::read::<*const u8>(parent, offsets::ko(ko::DENTRY_NAME))?;
    let mut entry = reserve::<InjectEvent>(kind::INJECT)?;
    let e = entry.as_mut_ptr();
    let own_flag = if own { flags::SELF_TARGET } else { 0 };
    // SAFETY: reserved slot of the right size; the name read is bounded by its array.
    unsafe {
        fill_header(
            &raw mut (*e).header,
            kind::INJECT,
            pid_tgid,
            action | own_flag | hdr_flags,
        );
        (*e).method = inject::PROC_MEM;
        (*e).target_pid = 0;
        let n = aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
            (*e).target_name.as_mut_ptr().cast(),
            COMM_LEN as u32,
            parent_name.cast(),
        );
        (*e).target_name_len = if n > 0 { (n - 1) as u32 } else { 0 };
    }
    emit::submit(entry, emit::Urgency::Urgent);
    Some(())
}
