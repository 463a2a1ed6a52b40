//! memfd_create(2): the first step of fileless execution.
use aya_ebpf::{helpers::generated, macros::tracepoint, programs::TracePointContext};
use procwatch_common::{MEMFD_NAME_LEN, MemfdEvent, kind, tp};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    offsets,
};

#[tracepoint]
pub fn sys_enter_memfd_create(ctx: TracePointContext) -> u32 {
    let _ = try_memfd(&ctx);
    0
}

fn try_memfd(ctx: &TracePointContext) -> Result<(), i64> {
    // memfd_create(const char *uname, unsigned int flags)
    // SAFETY: syscall argument slots, offsets from the format file.
    let name: *const u8 = unsafe { ctx.read_at(offsets::tp(tp::MEMFD_NAME)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let memfd_flags: u64 =
        unsafe { ctx.read_at(offsets::tp(tp::MEMFD_FLAGS)) }.map_err(i64::from)?;
    on_memfd(name, memfd_flags, 0);
    Ok(())
}

/// Reports a `memfd_create(name, flags)`; `hdr_flags` carries `COMPAT` for the ia32 entry.
#[inline(always)]
pub fn on_memfd(name: *const u8, memfd_flags: u64, hdr_flags: u32) {
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return;
    }
    let Some(mut entry) = reserve::<MemfdEvent>(kind::MEMFD) else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size.
    unsafe {
        fill_header(&raw mut (*e).header, kind::MEMFD, pid_tgid, hdr_flags);
        (*e).flags = memfd_flags as u32;
        let n = generated::bpf_probe_read_user_str(
            (*e).name.as_mut_ptr().cast(),
            MEMFD_NAME_LEN as u32,
            name.cast(),
        );
        (*e).name_len = if n > 0 { (n - 1) as u32 } else { 0 };
    }
    emit::submit(entry, emit::Urgency::Urgent);
}
