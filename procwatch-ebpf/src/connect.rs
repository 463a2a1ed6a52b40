//! Outbound traffic to IPv4/IPv6 destinations: connect(2), and the sends that name their
//! destination themselves (UDP `sendto`/`sendmsg`/`sendmmsg` on an unconnected socket, TCP
//! Fast Open's `sendto(MSG_FASTOPEN)`), which never call connect. The sockaddr is read from
//! user memory at entry.
use aya_ebpf::{
    helpers::{bpf_probe_read_user, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use procwatch_common::{AF_INET, AF_INET6, ConnectEvent, flags, kind, tp, via};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    offsets, task,
};

/// `MSG_FASTOPEN` (linux/socket.h).
const MSG_FASTOPEN: u64 = 0x2000_0000;

/// Messages of one `sendmmsg` looked at: a batch whose first messages go somewhere harmless
/// must not hide a later one.
const MMSG_MAX: u64 = 8;

/// `sizeof(struct mmsghdr)` on 64-bit: a 56-byte `msghdr` and `msg_len`, padded.
const MMSGHDR_SIZE: usize = 64;

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let _ = try_connect(&ctx);
    0
}

fn try_connect(ctx: &TracePointContext) -> Result<(), i64> {
    // connect(int fd, struct sockaddr *uservaddr, int addrlen)
    // SAFETY: syscall argument slots, offsets from the format file.
    let fd: u64 = unsafe { ctx.read_at(offsets::tp(tp::CONNECT_FD)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let addr: *const u8 =
        unsafe { ctx.read_at(offsets::tp(tp::CONNECT_ADDR)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let addrlen: u64 =
        unsafe { ctx.read_at(offsets::tp(tp::CONNECT_ADDRLEN)) }.map_err(i64::from)?;
    report(fd, addr, addrlen, via::CONNECT, 0)
}

#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    let _ = try_sendto(&ctx);
    0
}

fn try_sendto(ctx: &TracePointContext) -> Result<(), i64> {
    // sendto(fd, buff, len, flags, addr, addr_len)
    // SAFETY: syscall argument slots, offsets from the format file.
    let addr: *const u8 =
        unsafe { ctx.read_at(offsets::tp(tp::SENDTO_ADDR)) }.map_err(i64::from)?;
    // A connected socket's send (the common case) carries no address: one comparison.
    if addr.is_null() {
        return Ok(());
    }
    // SAFETY: as above.
    let addrlen: u64 =
        unsafe { ctx.read_at(offsets::tp(tp::SENDTO_ADDRLEN)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let fd: u64 = unsafe { ctx.read_at(offsets::tp(tp::SENDTO_FD)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let send_flags: u64 =
        unsafe { ctx.read_at(offsets::tp(tp::SENDTO_FLAGS)) }.map_err(i64::from)?;
    report(fd, addr, addrlen, via::SENDTO, fastopen(send_flags))
}

#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    let _ = try_sendmsg(&ctx);
    0
}

fn try_sendmsg(ctx: &TracePointContext) -> Result<(), i64> {
    // sendmsg(fd, struct user_msghdr *msg, flags)
    // SAFETY: syscall argument slots, offsets from the format file.
    let msg: *const u8 = unsafe { ctx.read_at(offsets::tp(tp::SENDMSG_MSG)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let fd: u64 = unsafe { ctx.read_at(offsets::tp(tp::SENDMSG_FD)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let send_flags: u64 =
        unsafe { ctx.read_at(offsets::tp(tp::SENDMSG_FLAGS)) }.map_err(i64::from)?;
    report_msghdr(fd, msg, via::SENDMSG, fastopen(send_flags))
}

#[tracepoint]
pub fn sys_enter_sendmmsg(ctx: TracePointContext) -> u32 {
    let _ = try_sendmmsg(&ctx);
    0
}

fn try_sendmmsg(ctx: &TracePointContext) -> Result<(), i64> {
    // sendmmsg(fd, struct mmsghdr *mmsg, vlen, flags)
    // SAFETY: syscall argument slots, offsets from the format file.
    let mmsg: *const u8 =
        unsafe { ctx.read_at(offsets::tp(tp::SENDMMSG_MMSG)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let vlen: u64 = unsafe { ctx.read_at(offsets::tp(tp::SENDMMSG_VLEN)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let fd: u64 = unsafe { ctx.read_at(offsets::tp(tp::SENDMMSG_FD)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let send_flags: u64 =
        unsafe { ctx.read_at(offsets::tp(tp::SENDMMSG_FLAGS)) }.map_err(i64::from)?;
    let fast = fastopen(send_flags);
    let mut i = 0u64;
    while i < MMSG_MAX && i < vlen {
        let msg = mmsg.wrapping_add(i as usize * MMSGHDR_SIZE);
        let _ = report_msghdr(fd, msg, via::SENDMMSG, fast);
        i += 1;
    }
    Ok(())
}

/// `FASTOPEN` when the send flags ask for TCP Fast Open.
#[inline(always)]
pub fn fastopen(send_flags: u64) -> u32 {
    if send_flags & MSG_FASTOPEN != 0 {
        flags::FASTOPEN
    } else {
        0
    }
}

/// Reports the destination of a 64-bit `struct user_msghdr` (`msg_name` at 0, `msg_namelen`
/// at 8), when it names one.
#[inline(always)]
fn report_msghdr(fd: u64, msg: *const u8, how: u32, hdr_flags: u32) -> Result<(), i64> {
    // SAFETY: fault-tolerant user reads.
    let name: *const u8 = unsafe { bpf_probe_read_user(msg.cast()) }.map_err(i64::from)?;
    if name.is_null() {
        return Ok(());
    }
    // SAFETY: as above.
    let namelen: u32 =
        unsafe { bpf_probe_read_user(msg.wrapping_add(8).cast()) }.map_err(i64::from)?;
    report(fd, name, u64::from(namelen), how, hdr_flags)
}

/// Emits a connect record for the IPv4/IPv6 sockaddr at `addr` (user memory); other families
/// and short addresses are ignored, as the kernel would refuse them.
#[inline(always)]
pub fn report(fd: u64, addr: *const u8, addrlen: u64, how: u32, hdr_flags: u32) -> Result<(), i64> {
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return Ok(());
    }
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
    // The socket type tells UDP from TCP (a connect() says nothing of it); read before the
    // slot is reserved, so the reads cannot hold a ring-buffer slot.
    let sock_type = task::socket_type_of_fd(fd);
    let Some(mut entry) = reserve::<ConnectEvent>(kind::CONNECT) else {
        return Ok(());
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size; `addr` is 8-byte aligned inside the record.
    unsafe {
        fill_header(&raw mut (*e).header, kind::CONNECT, pid_tgid, hdr_flags);
        (*e).fd = fd;
        (*e).family = family;
        (*e).port = u16::from_be(port_be);
        (*e).via = how;
        (*e).sock_type = sock_type;
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
