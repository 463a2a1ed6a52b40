//! Kills that stick: a process condemned by a kill verdict (in `DOOMED`) hands the verdict to
//! every child it forks, and the child is killed on its first return to user space. A new
//! task leaves the kernel through the clone/fork/vfork syscall exit, which runs in the child
//! itself, so `bpf_send_signal` there kills it before it runs one instruction of its own: a
//! child cannot outrun user space, however fast its parent forks, exits or detaches it.
use aya_ebpf::{helpers::generated, macros::tracepoint, programs::TracePointContext};
use procwatch_common::{Doom, config};

use crate::{
    emit,
    maps::DOOMED,
    offsets,
    task::{self, Task},
};

const SIGKILL: u32 = 9;

/// The verdict on the process `tgid` that `task` belongs to, if that very process (same start
/// time, not a later one under a reused pid) is condemned.
#[inline(always)]
fn doom_of(tgid: u32, task: Task) -> Option<Doom> {
    // SAFETY: the value is copied out at once.
    let d = *unsafe { DOOMED.get(tgid) }?;
    if d.ns_per_tick == 0 {
        return None;
    }
    let start = task::process_start_ns(task);
    (start != 0 && start / d.ns_per_tick == d.start_ticks).then_some(d)
}

/// Kills the current process if it is condemned.
#[inline(always)]
fn kill_if_doomed() {
    if !offsets::kernel_known() {
        return;
    }
    let (_, tgid) = emit::current();
    if tgid <= 1 || emit::is_self(tgid) || u64::from(tgid) == emit::config(config::PARENT_TGID) {
        return;
    }
    if doom_of(tgid, task::current()).is_some() {
        // SAFETY: plain helper call; it signals the current process only.
        unsafe { generated::bpf_send_signal(SIGKILL) };
    }
}

/// At fork, in the parent: the child of a condemned process is condemned too (`child_start_ns`
/// is its start time), and the parent, still running, is killed now. `child_tgid` is 0 for a
/// new thread, which dies with its process.
#[inline(always)]
pub fn on_fork(parent_tgid: u32, child_tgid: u32, child_start_ns: u64) {
    // Never init, procwatch or its parent, whatever the map says.
    if parent_tgid <= 1
        || emit::is_self(parent_tgid)
        || u64::from(parent_tgid) == emit::config(config::PARENT_TGID)
    {
        return;
    }
    let Some(d) = doom_of(parent_tgid, task::current()) else {
        return;
    };
    if child_tgid != 0 && child_start_ns != 0 {
        let child = Doom {
            start_ticks: child_start_ns / d.ns_per_tick,
            ns_per_tick: d.ns_per_tick,
        };
        // Full map: the child still dies, by userspace's pidfd kill from the fork event.
        let _ = DOOMED.insert(child_tgid, child, 0);
    }
    // SAFETY: plain helper call; it signals the current process only.
    unsafe { generated::bpf_send_signal(SIGKILL) };
}

/// At process exit: its verdict, if any, has been carried out.
#[inline(always)]
pub fn on_exit(tgid: u32) {
    let _ = DOOMED.remove(tgid);
}

#[tracepoint]
pub fn sys_exit_clone(_ctx: TracePointContext) -> u32 {
    kill_if_doomed();
    0
}

#[tracepoint]
pub fn sys_exit_clone3(_ctx: TracePointContext) -> u32 {
    kill_if_doomed();
    0
}

#[tracepoint]
pub fn sys_exit_fork(_ctx: TracePointContext) -> u32 {
    kill_if_doomed();
    0
}

#[tracepoint]
pub fn sys_exit_vfork(_ctx: TracePointContext) -> u32 {
    kill_if_doomed();
    0
}
