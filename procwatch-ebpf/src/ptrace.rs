//! ptrace: who attaches to whom. Only the requests that start a tracing relationship are
//! reported, so a debugger's per-syscall PEEK/POKE traffic does not flood the ring buffer.
//!
//! A `PTRACE_ATTACH` the policy kills still runs (a tracepoint cannot veto it) and stops its
//! target, which stays stopped once the dying tracer lets go. Userspace resumes that target,
//! so it must learn which task was really attached, not the pid the caller passed: such an
//! attach is reported at syscall exit, with the result and the tracee read from the tracer's
//! own `ptraced` list.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use procwatch_common::{
    PTRACE_ATTACH, PTRACE_SEIZE, PendingPtrace, PtraceEvent, config, flags, kind, ko, tp,
};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    maps::PTRACE_PENDING,
    offsets, policy,
    task::{self, Task},
};

const PTRACE_TRACEME: u64 = 0;

#[tracepoint]
pub fn sys_enter_ptrace(ctx: TracePointContext) -> u32 {
    let _ = try_ptrace(&ctx);
    0
}

fn try_ptrace(ctx: &TracePointContext) -> Result<(), i64> {
    // ptrace(long request, long pid, unsigned long addr, unsigned long data)
    // SAFETY: offsets from the format file.
    let request: u64 =
        unsafe { ctx.read_at(offsets::tp(tp::PTRACE_REQUEST)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let target: u64 = unsafe { ctx.read_at(offsets::tp(tp::PTRACE_PID)) }.map_err(i64::from)?;
    on_ptrace(request, target, 0, config::PTRACE_EXIT_ON);
    Ok(())
}

/// Reports (and under the policy kills) a ptrace request. A killed `PTRACE_ATTACH` is
/// reported at syscall exit when config slot `exit_on` says the exit probe of this entry
/// (`sys_exit_ptrace`, or the raw `sys_exit` for ia32) is attached; `hdr_flags` carries
/// `COMPAT` for the ia32 entry.
#[inline(always)]
pub fn on_ptrace(request: u64, target: u64, hdr_flags: u32, exit_on: u32) {
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return;
    }
    let attaches = request == PTRACE_ATTACH || request == PTRACE_SEIZE;
    if !attaches && request != PTRACE_TRACEME {
        return;
    }
    let action = if attaches {
        policy::enforce(config::KILL_PTRACE, tgid)
    } else {
        0
    };
    if request == PTRACE_ATTACH && action & flags::KILLED != 0 && emit::config(exit_on) != 0 {
        let pending = PendingPtrace {
            request,
            target_pid: target,
            flags: action | hdr_flags,
            _pad: 0,
        };
        if PTRACE_PENDING.insert(pid_tgid as u32, pending, 0).is_ok() {
            return; // reported at syscall exit
        }
    }
    let Some(mut entry) = reserve::<PtraceEvent>(kind::PTRACE) else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size.
    unsafe {
        fill_header(
            &raw mut (*e).header,
            kind::PTRACE,
            pid_tgid,
            action | hdr_flags,
        );
        (*e).request = request;
        (*e).target_pid = target;
        (*e).ret = 0;
        (*e).tracee_tgid = 0;
        (*e)._pad = 0;
        (*e).tracee_start_ns = 0;
    }
    emit::submit(entry, emit::Urgency::Urgent);
}

#[tracepoint]
pub fn sys_exit_ptrace(ctx: TracePointContext) -> u32 {
    let _ = try_ptrace_exit(&ctx);
    0
}

fn try_ptrace_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let (pid_tgid, _) = current();
    // SAFETY: the entry is only tested for presence.
    if unsafe { PTRACE_PENDING.get(pid_tgid as u32) }.is_none() {
        return Ok(());
    }
    // SAFETY: offset from the format file.
    let ret: i64 = unsafe { ctx.read_at(offsets::tp(tp::PTRACE_RET)) }.map_err(i64::from)?;
    on_ptrace_exit(ret);
    Ok(())
}

/// At the exit of a ptrace call (64-bit or ia32): reports a `PTRACE_ATTACH` whose tracer was
/// killed at entry, with its result `ret` and the task it really attached.
#[inline(always)]
pub fn on_ptrace_exit(ret: i64) {
    let (pid_tgid, _) = current();
    let tid = pid_tgid as u32;
    // SAFETY: the value is copied out before the entry is removed.
    let Some(pending) = (unsafe { PTRACE_PENDING.get(tid) }).copied() else {
        return;
    };
    let _ = PTRACE_PENDING.remove(tid);
    let (tracee_tgid, tracee_start) = if ret == 0 {
        newest_tracee(task::current()).unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    let Some(mut entry) = reserve::<PtraceEvent>(kind::PTRACE) else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size.
    unsafe {
        fill_header(
            &raw mut (*e).header,
            kind::PTRACE,
            pid_tgid,
            pending.flags | flags::PTRACE_RESULT,
        );
        (*e).request = pending.request;
        (*e).target_pid = pending.target_pid;
        (*e).ret = ret;
        (*e).tracee_tgid = tracee_tgid;
        (*e)._pad = 0;
        (*e).tracee_start_ns = tracee_start;
    }
    emit::submit(entry, emit::Urgency::Urgent);
}

/// The task `tracer` attached last: `ptrace_link` adds it at the head of `tracer->ptraced`.
/// Checked both ways: the entry's task must name `tracer` as its (ptrace) parent.
#[inline(always)]
fn newest_tracee(tracer: Task) -> Option<(u32, u64)> {
    if !offsets::kernel_known() {
        return None;
    }
    let head = tracer.wrapping_add(offsets::ko(ko::TASK_PTRACED));
    let first = task::read::<*const u8>(head, 0)?;
    if first == head {
        return None; // traces nobody
    }
    let tracee = first.wrapping_sub(offsets::ko(ko::TASK_PTRACE_ENTRY));
    if task::read::<Task>(tracee, offsets::ko(ko::TASK_PARENT))? != tracer {
        return None;
    }
    let tgid = task::tgid(tracee)?;
    Some((tgid, task::process_start_ns(tracee)))
}
