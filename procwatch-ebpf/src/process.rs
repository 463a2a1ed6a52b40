//! Process lifecycle: exec (with argv captured before the old image is gone), fork, exit.
//!
//! Every field offset comes from this kernel at load time (`offsets`): tracepoint fields from
//! the format files, task_struct members from BTF. A new process is reported by the
//! BTF-enabled `sched_process_fork`, which sees the child task itself (thread or process, its
//! start time); the classic tracepoint with clone flags read from user memory is the fallback
//! where BTF programs cannot load.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_probe_read_user, generated},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use procwatch_common::{
    ARG_LEN, ARGS_LEN, ARGS_START_LIMIT, CLONE_THREAD, ExecEvent, ExitEvent, ForkEvent, MAX_ARGS,
    PATH_LEN, flags, kind, ko, path_flags, tp,
};

use crate::{
    doom,
    emit::{self, current, fill_header, is_self, reserve},
    maps::{ARGS_SCRATCH, CLONE_FLAGS, EXEC_ARGS, EXIT_CODES, PTRACE_PENDING},
    offsets, task,
};

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    // execve(filename, argv, envp)
    let _ = try_capture_args(&ctx, offsets::tp(tp::EXECVE_ARGV));
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    // execveat(dfd, filename, argv, envp, flags)
    let _ = try_capture_args(&ctx, offsets::tp(tp::EXECVEAT_ARGV));
    0
}

fn try_capture_args(ctx: &TracePointContext, argv_offset: usize) -> Result<(), i64> {
    // SAFETY: reading a syscall argument slot inside the tracepoint record.
    let argv: u64 = unsafe { ctx.read_at(argv_offset) }.map_err(i64::from)?;
    capture_args(argv, false)
}

/// The `i`th pointer of a user `argv` array: 8-byte pointers, or 4-byte ones for an ia32
/// exec (`compat`).
#[inline(always)]
fn argv_entry(argv: u64, i: usize, compat: bool) -> Option<*const u8> {
    // SAFETY: user pointer reads through the helper, which tolerates faults.
    unsafe {
        if compat {
            bpf_probe_read_user((argv as usize + 4 * i) as *const u32)
                .ok()
                .map(|p| p as usize as *const u8)
        } else {
            bpf_probe_read_user((argv as usize + 8 * i) as *const *const u8).ok()
        }
    }
}

/// Copies up to `MAX_ARGS` arguments of the user array `argv` into the per-thread
/// pending-args map.
#[inline(always)]
pub fn capture_args(argv: u64, compat: bool) -> Result<(), i64> {
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return Ok(());
    }
    let scratch = ARGS_SCRATCH.get_ptr_mut(0).ok_or(0i64)?;
    let mut off: usize = 0;
    let mut argc: u32 = 0;
    let mut arg_flags: u32 = 0;
    let mut i: usize = 0;
    while i < MAX_ARGS {
        let Some(arg) = argv_entry(argv, i, compat) else {
            break;
        };
        if arg.is_null() {
            break;
        }
        if off > ARGS_START_LIMIT {
            arg_flags |= flags::ARGS_TRUNCATED;
            break;
        }
        // SAFETY: off <= ARGS_START_LIMIT, so off + ARG_LEN <= ARGS_LEN: inside the scratch slot.
        let n = unsafe {
            generated::bpf_probe_read_user_str(
                (*scratch).args.as_mut_ptr().wrapping_add(off).cast(),
                ARG_LEN as u32,
                arg.cast(),
            )
        };
        if n <= 0 {
            break;
        }
        if n as usize >= ARG_LEN {
            arg_flags |= flags::ARGS_TRUNCATED;
        }
        off += n as usize;
        argc += 1;
        i += 1;
    }
    if i == MAX_ARGS
        && let Some(next) = argv_entry(argv, MAX_ARGS, compat)
        && !next.is_null()
    {
        arg_flags |= flags::ARGS_TRUNCATED;
    }
    // SAFETY: scratch is this CPU's slot; the fields are plain integers.
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "by value would copy 1 KiB onto the 512-byte BPF stack"
    )]
    unsafe {
        (*scratch).argc = argc;
        (*scratch).args_len = if off > ARGS_LEN {
            ARGS_LEN as u32
        } else {
            off as u32
        };
        (*scratch).flags = arg_flags;
        (*scratch)._pad = 0;
        EXEC_ARGS
            .insert(pid_tgid as u32, &*scratch, 0)
            .map_err(i64::from)?;
    }
    Ok(())
}

/// The classic exec tracepoint: only where the BTF one cannot load. It knows the path as
/// given and the file's identity, not the path the kernel resolved, the interpreter or cwd.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return Ok(());
    }
    // SAFETY: offsets from this kernel's format file.
    let loc: u32 = unsafe { ctx.read_at(offsets::tp(tp::EXEC_FILENAME)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let old_pid: u32 = unsafe { ctx.read_at(offsets::tp(tp::EXEC_OLD_PID)) }.map_err(i64::from)?;
    let filename_ptr = (ctx.as_ptr() as *const u8).wrapping_add((loc & 0xffff) as usize);

    let Some(mut entry) = reserve::<ExecEvent>(kind::EXEC) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved slot of size_of::<ExecEvent>() bytes.
    unsafe {
        fill_exec_common(e, pid_tgid, old_pid);
        (*e).path_len = 0;
        (*e).cwd_len = 0;
        (*e).interp_len = 0;
        (*e).path_flags = 0;
        let n = generated::bpf_probe_read_kernel_str(
            (*e).filename.as_mut_ptr().cast(),
            PATH_LEN as u32,
            filename_ptr.cast(),
        );
        (*e).filename_len = if n > 0 { (n - 1) as u32 } else { 0 };
    }
    emit::submit(entry, emit::Urgency::Bulk);
    Ok(())
}

/// `sched_process_exec(task, old_pid, bprm)` with the `linux_binprm` itself: what the kernel
/// executed (`bprm->file`, its path walked from the dentry), the interpreter of a `#!` script
/// (`bprm->interp`) next to the script (`bprm->filename`), and the working directory.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn btf_sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    let _ = try_btf_exec(&ctx);
    0
}

fn try_btf_exec(ctx: &BtfTracePointContext) -> Result<(), i64> {
    if !offsets::kernel_known() {
        return Ok(());
    }
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return Ok(());
    }
    let old_pid: u32 = ctx.arg::<u64>(1) as u32;
    let bprm: *const u8 = ctx.arg(2);
    let Some(mut entry) = reserve::<ExecEvent>(kind::EXEC) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved slot of size_of::<ExecEvent>() bytes; every kernel
    // read goes through the fault-tolerant helpers.
    unsafe {
        fill_exec_common(e, pid_tgid, old_pid);
        let mut pflags = 0u32;
        let filename = task::read::<*const u8>(bprm, offsets::ko(ko::BPRM_FILENAME));
        let n = match filename {
            Some(f) => generated::bpf_probe_read_kernel_str(
                (*e).filename.as_mut_ptr().cast(),
                PATH_LEN as u32,
                f.cast(),
            ),
            None => 0,
        };
        (*e).filename_len = if n > 0 { (n - 1) as u32 } else { 0 };
        let interp = task::read::<*const u8>(bprm, offsets::ko(ko::BPRM_INTERP));
        let n = match interp {
            Some(i) => generated::bpf_probe_read_kernel_str(
                (*e).interp.as_mut_ptr().cast(),
                PATH_LEN as u32,
                i.cast(),
            ),
            None => 0,
        };
        (*e).interp_len = if n > 0 {
            pflags |= path_flags::INTERP;
            (n - 1) as u32
        } else {
            0
        };
        (*e).path_len = 0;
        if let Some(file) = task::read::<*const u8>(bprm, offsets::ko(ko::BPRM_FILE))
            && let Some(mnt) = task::read::<*const u8>(file, offsets::ko(ko::FILE_PATH_MNT))
            && let Some(dentry) = task::read::<*const u8>(file, offsets::ko(ko::FILE_PATH_DENTRY))
            && let Some((len, whole)) = task::walk_path(mnt, dentry, (*e).path.as_mut_ptr())
        {
            (*e).path_len = len;
            pflags |= path_flags::PATH_RESOLVED;
            if !whole {
                pflags |= path_flags::PATH_CUT;
            }
        }
        (*e).cwd_len = 0;
        if let Some(fs) = task::read::<*const u8>(task::current(), offsets::ko(ko::TASK_FS))
            && let Some(mnt) = task::read::<*const u8>(fs, offsets::ko(ko::FS_PWD_MNT))
            && let Some(dentry) = task::read::<*const u8>(fs, offsets::ko(ko::FS_PWD_DENTRY))
            && let Some((len, whole)) = task::walk_path(mnt, dentry, (*e).cwd.as_mut_ptr())
        {
            (*e).cwd_len = len;
            pflags |= path_flags::CWD_RESOLVED;
            if !whole {
                pflags |= path_flags::CWD_CUT;
            }
        }
        (*e).path_flags = pflags;
    }
    emit::submit(entry, emit::Urgency::Bulk);
    Ok(())
}

/// Fills what both exec probes report alike: header, parent, the file's identity, cgroup,
/// and argv captured at syscall entry.
///
/// # Safety
/// `e` must point to a reserved `ExecEvent` slot.
#[inline(always)]
unsafe fn fill_exec_common(e: *mut ExecEvent, pid_tgid: u64, old_pid: u32) {
    let me = task::current();
    let exe = task::exe_key(me);
    // SAFETY: the caller guarantees `e`.
    unsafe {
        fill_header(&raw mut (*e).header, kind::EXEC, pid_tgid, 0);
        (*e).old_pid = old_pid;
        (*e).ppid = task::parent_tgid(me);
        match exe {
            Some(k) => {
                (*e).exe_dev = k.dev as u32;
                (*e).exe_ino = k.ino;
            }
            None => {
                (*e).exe_dev = 0;
                (*e).exe_ino = 0;
            }
        }
        (*e).cgroup_id = generated::bpf_get_current_cgroup_id();
        match EXEC_ARGS.get_ptr(old_pid) {
            Some(pending) => {
                generated::bpf_probe_read_kernel(
                    (*e).args.as_mut_ptr().cast(),
                    ARGS_LEN as u32,
                    (*pending).args.as_ptr().cast(),
                );
                (*e).argc = (*pending).argc;
                (*e).args_len = (*pending).args_len;
                (*e).header.flags |= (*pending).flags;
                let _ = EXEC_ARGS.remove(old_pid);
            }
            None => {
                (*e).argc = 0;
                (*e).args_len = 0;
                (*e).header.flags |= flags::ARGS_MISSING;
            }
        }
    }
}

/// `sched_process_fork(parent, child)` with the task pointers themselves: the child is a new
/// process exactly when it leads its own thread group, whatever flags the caller passed.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn btf_sched_process_fork(ctx: BtfTracePointContext) -> u32 {
    let _ = try_btf_fork(&ctx);
    0
}

fn try_btf_fork(ctx: &BtfTracePointContext) -> Result<(), i64> {
    if !offsets::kernel_known() {
        return Ok(());
    }
    let child: task::Task = ctx.arg(1);
    let (Some(child_pid), Some(child_tgid)) = (task::pid(child), task::tgid(child)) else {
        return Err(0);
    };
    let (pid_tgid, tgid) = current();
    let new_process = child_pid == child_tgid;
    doom::on_fork(
        tgid,
        if new_process { child_tgid } else { 0 },
        task::start_ns(child).unwrap_or(0),
    );
    if !new_process {
        return Ok(()); // a new thread
    }
    if is_self(tgid) {
        return Ok(());
    }
    // CLONE_PARENT makes the caller's parent the child's: the kernel's link is the truth.
    let parent = task::parent_tgid(child);
    let start = task::start_ns(child).unwrap_or(0);
    let Some(mut entry) = reserve::<ForkEvent>(kind::FORK) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size.
    unsafe {
        fill_header(&raw mut (*e).header, kind::FORK, pid_tgid, 0);
        (*e).parent_tgid = if parent != 0 { parent } else { tgid };
        (*e).child_tgid = child_tgid;
        (*e).child_start_ns = start;
    }
    emit::submit(entry, emit::Urgency::Bulk);
    Ok(())
}

#[tracepoint]
pub fn sys_enter_clone(ctx: TracePointContext) -> u32 {
    // SAFETY: clone(clone_flags, ...): offset from the format file.
    if let Ok(clone_flags) = unsafe { ctx.read_at::<u64>(offsets::tp(tp::CLONE_FLAGS)) } {
        let (pid_tgid, _) = current();
        let _ = CLONE_FLAGS.insert(pid_tgid as u32, clone_flags, 0);
    }
    0
}

#[tracepoint]
pub fn sys_enter_clone3(ctx: TracePointContext) -> u32 {
    // clone3(struct clone_args *uargs, size_t size); `flags` is the first u64 of clone_args.
    // SAFETY: argument slot, then a fault-tolerant user read.
    if let Ok(uargs) = unsafe { ctx.read_at::<*const u64>(offsets::tp(tp::CLONE3_UARGS)) }
        && let Ok(clone_flags) = unsafe { bpf_probe_read_user(uargs) }
    {
        let (pid_tgid, _) = current();
        let _ = CLONE_FLAGS.insert(pid_tgid as u32, clone_flags, 0);
    }
    0
}

/// The classic fork tracepoint: only where the BTF one cannot load. The child's start time
/// is not known here (userspace reads it from /proc with a check), and the thread/process
/// decision rests on clone flags read from user memory at syscall entry.
#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &TracePointContext) -> Result<(), i64> {
    // Runs in the parent.
    let (pid_tgid, tgid) = current();
    let tid = pid_tgid as u32;
    let clone_flags = CLONE_FLAGS.get_ptr(tid).map(|p| unsafe { *p }).unwrap_or(0);
    let _ = CLONE_FLAGS.remove(tid);
    if clone_flags & CLONE_THREAD != 0 {
        return Ok(());
    }
    // SAFETY: offset from the tracepoint's format file.
    let child: u32 = unsafe { ctx.read_at(offsets::tp(tp::FORK_CHILD_PID)) }.map_err(i64::from)?;
    if is_self(tgid) {
        return Ok(());
    }
    let Some(mut entry) = reserve::<ForkEvent>(kind::FORK) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size.
    unsafe {
        fill_header(&raw mut (*e).header, kind::FORK, pid_tgid, 0);
        (*e).parent_tgid = tgid;
        (*e).child_tgid = child;
        (*e).child_start_ns = 0;
    }
    emit::submit(entry, emit::Urgency::Bulk);
    Ok(())
}

#[tracepoint]
pub fn sys_enter_exit_group(ctx: TracePointContext) -> u32 {
    // SAFETY: exit_group(int error_code): offset from the format file.
    if let Ok(code) = unsafe { ctx.read_at::<u64>(offsets::tp(tp::EXIT_GROUP_CODE)) } {
        let (_, tgid) = current();
        let _ = EXIT_CODES.insert(tgid, code as i32, 0);
    }
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let (pid_tgid, tgid) = current();
    let tid = pid_tgid as u32;
    let _ = EXEC_ARGS.remove(tid);
    let _ = CLONE_FLAGS.remove(tid);
    let _ = PTRACE_PENDING.remove(tid);
    let group_dead = if offsets::tp_known(tp::EXIT_GROUP_DEAD) {
        // SAFETY: offset read from this kernel's format file by userspace.
        unsafe { ctx.read_at::<u8>(offsets::tp(tp::EXIT_GROUP_DEAD)) }.map_err(i64::from)? != 0
    } else {
        tid == tgid
    };
    if !group_dead {
        return Ok(());
    }
    doom::on_exit(tgid);
    let code = EXIT_CODES.get_ptr(tgid).map(|p| unsafe { *p });
    let _ = EXIT_CODES.remove(tgid);
    if is_self(tgid) {
        return Ok(());
    }
    let Some(mut entry) = reserve::<ExitEvent>(kind::EXIT) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size.
    unsafe {
        fill_header(&raw mut (*e).header, kind::EXIT, pid_tgid, 0);
        match code {
            Some(c) => {
                (*e).exit_code = c;
                (*e).exit_code_known = 1;
            }
            None => {
                (*e).exit_code = 0;
                (*e).exit_code_known = 0;
            }
        }
    }
    emit::submit(entry, emit::Urgency::Bulk);
    Ok(())
}
