//! connect(2) to IPv4/IPv6 destinations; the sockaddr is read from user memory at entry.
use aya_ebpf::{
    helpers::{bpf_probe_read_user, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use procwatch_common::{AF_INET, AF_INET6, ConnectEvent, kind, tp};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    offsets,
};

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let _ = try_connect(&ctx);
    0
}

fn try_connect(ctx: &TracePointContext) -> Result<(), i64> {
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return Ok(());
    }
    // connect(int fd, struct sockaddr *uservaddr, int addrlen)
    // SAFETY: syscall argument slots, offsets from the format file.
    let fd: u64 = unsafe { ctx.read_at(offsets::tp(tp::CONNECT_FD)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let addr: *const u8 =
        unsafe { ctx.read_at(offsets::tp(tp::CONNECT_ADDR)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let addrlen: u64 =
        unsafe { ctx.read_at(offsets::tp(tp::CONNECT_ADDRLEN)) }.map_err(i64::from)?;
    // SAFETY: fault-tolerant user read of sa_family.
    let family: u16 = unsafe { bpf_probe_read_user(addr.cast::<u16>()) }.map_err(i64::from)?;
    let (addr_offset, addr_len, min_len) = match family {
        AF_INET => (4usize, 4u32, 8u64),
        AF_INET6 => (8usize, 16u32, 24u64),
        _ => return Ok(()),
    };
    if addrlen < min_len {
        return Ok(());
    }
    // SAFETY: sin_port / sin6_port sit right after the family.
    let port_be: u16 =
        unsafe { bpf_probe_read_user(addr.wrapping_add(2).cast::<u16>()) }.map_err(i64::from)?;
    let Some(mut entry) = reserve::<ConnectEvent>(kind::CONNECT) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size; `addr` is 8-byte aligned inside the record.
    unsafe {
        fill_header(&raw mut (*e).header, kind::CONNECT, pid_tgid, 0);
        (*e).fd = fd;
        (*e).family = family;
        (*e).port = u16::from_be(port_be);
        (*e)._pad = 0;
        let words = (*e).addr.as_mut_ptr().cast::<u64>();
        core::ptr::write_volatile(words, 0);
        core::ptr::write_volatile(words.wrapping_add(1), 0);
        generated::bpf_probe_read_user(
            (*e).addr.as_mut_ptr().cast(),
            addr_len,
            addr.wrapping_add(addr_offset).cast(),
        );
    }
    emit::submit(entry, emit::Urgency::Bulk);
    Ok(())
}
