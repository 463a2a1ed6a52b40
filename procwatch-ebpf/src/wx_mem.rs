//! W+X memory: mprotect, pkey_mprotect and mmap calls asking for PROT_WRITE|PROT_EXEC.
//! Everything else is filtered here, so the common non-W+X call costs one comparison.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use procwatch_common::{PROT_EXEC, PROT_WRITE, WxMemEvent, config, kind, wx_syscall};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    policy,
};

const WX: u64 = PROT_WRITE | PROT_EXEC;

#[tracepoint]
pub fn sys_enter_mprotect(ctx: TracePointContext) -> u32 {
    // mprotect(start, len, prot)
    let _ = try_wx(&ctx, wx_syscall::MPROTECT, None);
    0
}

#[tracepoint]
pub fn sys_enter_pkey_mprotect(ctx: TracePointContext) -> u32 {
    // pkey_mprotect(start, len, prot, pkey)
    let _ = try_wx(&ctx, wx_syscall::PKEY_MPROTECT, Some(40));
    0
}

#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    // mmap(addr, len, prot, flags, fd, off)
    let _ = try_wx(&ctx, wx_syscall::MMAP, Some(40));
    0
}

fn try_wx(ctx: &TracePointContext, syscall: u32, extra_offset: Option<usize>) -> Result<(), i64> {
    // SAFETY: syscall argument slots (offset 16 + 8 * n).
    let prot: u64 = unsafe { ctx.read_at(32) }.map_err(i64::from)?;
    if prot & WX != WX {
        return Ok(());
    }
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return Ok(());
    }
    let action = policy::enforce(config::KILL_WX, tgid);
    // SAFETY: as above.
    let start: u64 = unsafe { ctx.read_at(16) }.map_err(i64::from)?;
    // SAFETY: as above.
    let len: u64 = unsafe { ctx.read_at(24) }.map_err(i64::from)?;
    let extra: u64 = match extra_offset {
        // SAFETY: as above.
        Some(off) => unsafe { ctx.read_at(off) }.map_err(i64::from)?,
        None => 0,
    };
    let Some(mut entry) = reserve::<WxMemEvent>(kind::WX_MEM) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size.
    unsafe {
        fill_header(&raw mut (*e).header, kind::WX_MEM, pid_tgid, action);
        (*e).syscall = syscall;
        (*e)._pad = 0;
        (*e).start = start;
        (*e).len = len;
        (*e).prot = prot;
        (*e).flags = extra;
    }
    emit::submit(entry, emit::Urgency::Urgent);
    Ok(())
}
