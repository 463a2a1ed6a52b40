//! Reserving ring-buffer slots, filling the common header, and counting what could not be sent.
use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns, generated,
};
use aya_ebpf::maps::ring_buf::RingBufEntry;
use procwatch_common::{COMM_LEN, EventHeader, config};

use crate::{
    maps::{CONFIG, EVENTS, LOST},
    task,
};

/// `bpf_ringbuf_submit` flag (uapi bpf.h): wake the reader whatever its position.
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// How soon the reader must see an event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// exec/fork/exit/connect: the kernel's adaptive notification wakes the reader only when
    /// it has caught up (nothing unread); the reader then waits a moment so a batch collects,
    /// so a storm costs a wakeup per batch, not per record (on a VM each wakeup is an
    /// interrupt that traps to the hypervisor).
    Bulk,
    /// ptrace, W+X, memfd: rare and security-critical; wake the reader now.
    Urgent,
}

/// Commits a reserved record, waking the reader as `urgency` says.
#[inline(always)]
pub fn submit<T>(entry: RingBufEntry<T>, urgency: Urgency) {
    entry.submit(if urgency == Urgency::Urgent {
        BPF_RB_FORCE_WAKEUP
    } else {
        0
    });
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
        (*h).start_ns = task::process_start_ns(task::current());
    }
}

/// `(pid_tgid, tgid)` of the current task.
#[inline(always)]
pub fn current() -> (u64, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    (pid_tgid, (pid_tgid >> 32) as u32)
}
