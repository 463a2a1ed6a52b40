//! ptrace: who attaches to whom. Only the requests that start a tracing relationship are
//! reported, so a debugger's per-syscall PEEK/POKE traffic does not flood the ring buffer.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use procwatch_common::{PTRACE_ATTACH, PTRACE_SEIZE, PtraceEvent, config, kind};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    policy,
};

const PTRACE_TRACEME: u64 = 0;

#[tracepoint]
pub fn sys_enter_ptrace(ctx: TracePointContext) -> u32 {
    let _ = try_ptrace(&ctx);
    0
}

fn try_ptrace(ctx: &TracePointContext) -> Result<(), i64> {
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return Ok(());
    }
    // ptrace(long request, long pid, unsigned long addr, unsigned long data)
    // SAFETY: syscall argument slots.
    let request: u64 = unsafe { ctx.read_at(16) }.map_err(i64::from)?;
    let attaches = request == PTRACE_ATTACH || request == PTRACE_SEIZE;
    if !attaches && request != PTRACE_TRACEME {
        return Ok(());
    }
    // SAFETY: as above.
    let target: u64 = unsafe { ctx.read_at(24) }.map_err(i64::from)?;
    let action = if attaches {
        policy::enforce(config::KILL_PTRACE, tgid)
    } else {
        0
    };
    let Some(mut entry) = reserve::<PtraceEvent>(kind::PTRACE) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size.
    unsafe {
        fill_header(&raw mut (*e).header, kind::PTRACE, pid_tgid, action);
        (*e).request = request;
        (*e).target_pid = target;
    }
    emit::submit(entry, emit::Urgency::Urgent);
    Ok(())
}
