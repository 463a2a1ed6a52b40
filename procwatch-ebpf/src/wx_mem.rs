//! W+X memory: mprotect, pkey_mprotect and mmap calls asking for PROT_WRITE|PROT_EXEC.
//! Everything else is filtered here, so the common non-W+X call costs one comparison.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use procwatch_common::{PROT_EXEC, PROT_WRITE, WxMemEvent, config, kind, tp, wx_syscall};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    offsets, policy,
};

const WX: u64 = PROT_WRITE | PROT_EXEC;

/// Where one syscall keeps its arguments: `tp` slots of start, len, prot and the extra
/// argument reported as `flags` (none for mprotect).
struct Args {
    start: usize,
    len: usize,
    prot: usize,
    extra: Option<usize>,
}

#[tracepoint]
pub fn sys_enter_mprotect(ctx: TracePointContext) -> u32 {
    // mprotect(start, len, prot)
    let args = Args {
        start: tp::MPROTECT_START,
        len: tp::MPROTECT_LEN,
        prot: tp::MPROTECT_PROT,
        extra: None,
    };
    let _ = try_wx(&ctx, wx_syscall::MPROTECT, &args);
    0
}

#[tracepoint]
pub fn sys_enter_pkey_mprotect(ctx: TracePointContext) -> u32 {
    // pkey_mprotect(start, len, prot, pkey)
    let args = Args {
        start: tp::PKEY_START,
        len: tp::PKEY_LEN,
        prot: tp::PKEY_PROT,
        extra: Some(tp::PKEY_PKEY),
    };
    let _ = try_wx(&ctx, wx_syscall::PKEY_MPROTECT, &args);
    0
}

#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    // mmap(addr, len, prot, flags, fd, off)
    let args = Args {
        start: tp::MMAP_ADDR,
        len: tp::MMAP_LEN,
        prot: tp::MMAP_PROT,
        extra: Some(tp::MMAP_FLAGS),
    };
    let _ = try_wx(&ctx, wx_syscall::MMAP, &args);
    0
}

#[inline(always)]
fn try_wx(ctx: &TracePointContext, syscall: u32, args: &Args) -> Result<(), i64> {
    // SAFETY: syscall argument slots, offsets from the format file.
    let prot: u64 = unsafe { ctx.read_at(offsets::tp(args.prot)) }.map_err(i64::from)?;
    if prot & WX != WX {
        return Ok(());
    }
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return Ok(());
    }
    let action = policy::enforce(config::KILL_WX, tgid);
    // SAFETY: as above.
    let start: u64 = unsafe { ctx.read_at(offsets::tp(args.start)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let len: u64 = unsafe { ctx.read_at(offsets::tp(args.len)) }.map_err(i64::from)?;
    let extra: u64 = match args.extra {
        // SAFETY: as above.
        Some(slot) => unsafe { ctx.read_at(offsets::tp(slot)) }.map_err(i64::from)?,
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
