//! Reserving ring-buffer slots, filling the common header, and counting what could not be sent.
use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns, generated,
};
use aya_ebpf::maps::ring_buf::RingBufEntry;
use procwatch_common::{COMM_LEN, EventHeader, config};

use crate::maps::{CONFIG, EVENTS, LOST};

/// `bpf_ringbuf_submit` flags and `bpf_ringbuf_query` selector (uapi bpf.h).
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
/// Unread bytes past which even a bulk event wakes the reader (the ring holds 8 MiB).
const WAKE_AT_BYTES: u64 = 512 * 1024;

/// How soon the reader must see an event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// exec/fork/exit/connect: the reader drains every few milliseconds anyway, so no wakeup
    /// per record (on a VM every wakeup is an interrupt that traps to the hypervisor).
    Bulk,
    /// ptrace, W+X, memfd: rare and security-critical; wake the reader now.
    Urgent,
}

/// Commits a reserved record, waking the reader only when it matters.
#[inline(always)]
pub fn submit<T>(entry: RingBufEntry<T>, urgency: Urgency) {
    let flags = if urgency == Urgency::Urgent || EVENTS.query(BPF_RB_AVAIL_DATA) >= WAKE_AT_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags);
}

/// Reads one `CONFIG` slot; 0 when unset.
#[inline(always)]
pub fn config(slot: u32) -> u64 {
    CONFIG.get(slot).copied().unwrap_or(0)
}

/// True when the current task belongs to procwatch itself.
#[inline(always)]
pub fn is_self(tgid: u32) -> bool {
    u64::from(tgid) == config(config::SELF_TGID)
}

/// Reserves a slot for `T`, counting a loss for `kind` when the ring buffer is full.
#[inline(always)]
pub fn reserve<T: 'static>(kind: u32) -> Option<RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count_lost(kind);
    }
    entry
}

/// Adds one to the per-CPU lost counter of `kind`.
#[inline(always)]
pub fn count_lost(kind: u32) {
    if let Some(counter) = LOST.get_ptr_mut(kind) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *counter += 1 };
    }
}

/// Writes the common header for the current task field by field (no struct copy, no memset).
///
/// # Safety
/// `h` must point to writable memory of at least `size_of::<EventHeader>()` bytes.
#[inline(always)]
pub unsafe fn fill_header(h: *mut EventHeader, kind: u32, pid_tgid: u64, flags: u32) {
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: the caller guarantees `h` is valid for writes.
    unsafe {
        (*h).kind = kind;
        (*h).flags = flags;
        (*h).pid = pid_tgid as u32;
        (*h).tgid = (pid_tgid >> 32) as u32;
        (*h).uid = uid_gid as u32;
        (*h).gid = (uid_gid >> 32) as u32;
        (*h).ktime_ns = bpf_ktime_get_ns();
        generated::bpf_get_current_comm((*h).comm.as_mut_ptr().cast(), COMM_LEN as u32);
    }
}

/// `(pid_tgid, tgid)` of the current task.
#[inline(always)]
pub fn current() -> (u64, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    (pid_tgid, (pid_tgid >> 32) as u32)
}
