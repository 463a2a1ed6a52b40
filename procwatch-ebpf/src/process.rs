//! Process lifecycle: exec (with argv captured before the old image is gone), fork, exit.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_probe_read_user, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use procwatch_common::{
    ARG_LEN, ARGS_LEN, ARGS_START_LIMIT, CLONE_THREAD, ExecEvent, ExitEvent, ForkEvent, MAX_ARGS,
    PATH_LEN, config, flags, kind,
};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    maps::{
        ALLOW_EXE, ARGS_SCRATCH, CLONE_FLAGS, EXEC_ARGS, EXEMPT, EXIT_CODES, PARENT, PATH_SCRATCH,
    },
};

// Syscall tracepoint arguments start at offset 16, 8 bytes each.
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    // execve(filename, argv, envp)
    let _ = try_capture_args(&ctx, ARG1);
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    // execveat(dfd, filename, argv, envp, flags)
    let _ = try_capture_args(&ctx, ARG2);
    0
}

/// Copies up to `MAX_ARGS` arguments into the per-thread pending-args map.
fn try_capture_args(ctx: &TracePointContext, argv_offset: usize) -> Result<(), i64> {
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return Ok(());
    }
    // SAFETY: reading a syscall argument slot inside the tracepoint record.
    let argv: *const *const u8 = unsafe { ctx.read_at(argv_offset) }.map_err(i64::from)?;
    let scratch = ARGS_SCRATCH.get_ptr_mut(0).ok_or(0i64)?;
    let mut off: usize = 0;
    let mut argc: u32 = 0;
    let mut arg_flags: u32 = 0;
    let mut i: usize = 0;
    while i < MAX_ARGS {
        // SAFETY: user pointer read through the helper, which tolerates faults.
        let arg: *const u8 = match unsafe { bpf_probe_read_user(argv.wrapping_add(i)) } {
            Ok(p) => p,
            Err(_) => break,
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
    // SAFETY: as above.
    if i == MAX_ARGS
        && let Ok(next) = unsafe { bpf_probe_read_user::<*const u8>(argv.wrapping_add(MAX_ARGS)) }
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
    // Fields: __data_loc char[] filename @8, pid_t pid @12, pid_t old_pid @16.
    // SAFETY: offsets from the tracepoint's format file.
    let loc: u32 = unsafe { ctx.read_at(8) }.map_err(i64::from)?;
    // SAFETY: as above.
    let old_pid: u32 = unsafe { ctx.read_at(16) }.map_err(i64::from)?;
    let filename_ptr = (ctx.as_ptr() as *const u8).wrapping_add((loc & 0xffff) as usize);

    update_exemption(tgid, filename_ptr);

    let Some(mut entry) = reserve::<ExecEvent>(kind::EXEC) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved slot of size_of::<ExecEvent>() bytes.
    unsafe {
        fill_header(&raw mut (*e).header, kind::EXEC, pid_tgid, 0);
        (*e).old_pid = old_pid;
        (*e).ppid = PARENT.get(tgid).copied().unwrap_or(0);
        (*e)._pad = 0;
        let n = generated::bpf_probe_read_kernel_str(
            (*e).filename.as_mut_ptr().cast(),
            PATH_LEN as u32,
            filename_ptr.cast(),
        );
        (*e).filename_len = if n > 0 { (n - 1) as u32 } else { 0 };

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
    emit::submit(entry, emit::Urgency::Bulk);
    Ok(())
}

/// Marks or unmarks `tgid` as exempt from the kill policy according to the exec allowlist.
#[inline(always)]
fn update_exemption(tgid: u32, filename: *const u8) {
    if emit::config(config::ALLOW_COUNT) == 0 {
        return;
    }
    let Some(key) = PATH_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `key` is this CPU's scratch slot. Zero it with volatile u64 stores (no memset,
    // which the BPF backend cannot lower) so the map key is the path followed by zeros.
    unsafe {
        let words = (*key).path.as_mut_ptr().cast::<u64>();
        let mut w = 0;
        while w < PATH_LEN / 8 {
            core::ptr::write_volatile(words.wrapping_add(w), 0);
            w += 1;
        }
        generated::bpf_probe_read_kernel_str(
            (*key).path.as_mut_ptr().cast(),
            PATH_LEN as u32,
            filename.cast(),
        );
        #[expect(
            clippy::needless_borrows_for_generic_args,
            reason = "by value would copy the 256-byte key onto the BPF stack"
        )]
        let allowed = ALLOW_EXE.get(&*key).is_some();
        if allowed {
            let _ = EXEMPT.insert(tgid, 1u8, 0);
        } else {
            let _ = EXEMPT.remove(tgid);
        }
    }
}

#[tracepoint]
pub fn sys_enter_clone(ctx: TracePointContext) -> u32 {
    // SAFETY: clone(clone_flags, ...) — first argument slot.
    if let Ok(clone_flags) = unsafe { ctx.read_at::<u64>(ARG0) } {
        let (pid_tgid, _) = current();
        let _ = CLONE_FLAGS.insert(pid_tgid as u32, clone_flags, 0);
    }
    0
}

#[tracepoint]
pub fn sys_enter_clone3(ctx: TracePointContext) -> u32 {
    // clone3(struct clone_args *uargs, size_t size); `flags` is the first u64 of clone_args.
    // SAFETY: argument slot, then a fault-tolerant user read.
    if let Ok(uargs) = unsafe { ctx.read_at::<*const u64>(ARG0) }
        && let Ok(clone_flags) = unsafe { bpf_probe_read_user(uargs) }
    {
        let (pid_tgid, _) = current();
        let _ = CLONE_FLAGS.insert(pid_tgid as u32, clone_flags, 0);
    }
    0
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &TracePointContext) -> Result<(), i64> {
    // Runs in the parent. Fields: parent_pid @12, child_pid @20.
    let (pid_tgid, tgid) = current();
    let tid = pid_tgid as u32;
    let clone_flags = CLONE_FLAGS.get_ptr(tid).map(|p| unsafe { *p }).unwrap_or(0);
    let _ = CLONE_FLAGS.remove(tid);
    if clone_flags & CLONE_THREAD != 0 {
        return Ok(());
    }
    // SAFETY: offset from the tracepoint's format file.
    let child: u32 = unsafe { ctx.read_at(20) }.map_err(i64::from)?;
    let _ = PARENT.insert(child, tgid, 0);
    if emit::config(config::ALLOW_COUNT) != 0 {
        // SAFETY: presence test only.
        if unsafe { EXEMPT.get(tgid) }.is_some() {
            let _ = EXEMPT.insert(child, 1u8, 0);
        }
    }
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
    }
    emit::submit(entry, emit::Urgency::Bulk);
    Ok(())
}

#[tracepoint]
pub fn sys_enter_exit_group(ctx: TracePointContext) -> u32 {
    // SAFETY: exit_group(int error_code).
    if let Ok(code) = unsafe { ctx.read_at::<u64>(ARG0) } {
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
    let group_dead_off = emit::config(config::EXIT_GROUP_DEAD_OFFSET) as usize;
    let group_dead = if group_dead_off != 0 && group_dead_off < 64 {
        // SAFETY: offset read from this kernel's format file by userspace.
        unsafe { ctx.read_at::<u8>(group_dead_off) }.map_err(i64::from)? != 0
    } else {
        tid == tgid
    };
    if !group_dead {
        return Ok(());
    }
    let _ = PARENT.remove(tgid);
    let _ = EXEMPT.remove(tgid);
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
