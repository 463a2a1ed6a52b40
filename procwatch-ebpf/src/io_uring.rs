//! io_uring network requests: a connect or send submitted through a ring never enters the
//! connect/send syscalls, so the request itself is reported (opcode only: the destination
//! sits in kernel memory whose layout is private to io_uring).
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use procwatch_common::{IoUringEvent, kind, tp, uring_op};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    offsets,
};

#[tracepoint]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    let _ = try_submit(&ctx);
    0
}

fn try_submit(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: field offset from the format file.
    let opcode: u8 = unsafe { ctx.read_at(offsets::tp(tp::URING_OPCODE)) }.map_err(i64::from)?;
    let opcode = u32::from(opcode);
    if !uring_op::is_network(opcode) {
        return Ok(());
    }
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return Ok(());
    }
    let Some(mut entry) = reserve::<IoUringEvent>(kind::IO_URING) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size.
    unsafe {
        fill_header(&raw mut (*e).header, kind::IO_URING, pid_tgid, 0);
        (*e).opcode = opcode;
        (*e)._pad = 0;
    }
    emit::submit(entry, emit::Urgency::Bulk);
    Ok(())
}
