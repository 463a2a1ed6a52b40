//! The in-kernel kill policy: SIGKILL before the offending syscall returns to user space.
//!
//! Stateless by design: who is exempt and who is in scope is read from the current task when
//! the policy applies (its executable's device and inode, its `real_parent` chain), never
//! from maps filled by earlier events. So processes that predate procwatch, or a SIGHUP that
//! turned the policy on, are judged exactly like new ones, and no eviction can lose an
//! exemption.
use aya_ebpf::helpers::{bpf_get_current_uid_gid, generated};
use procwatch_common::{SCOPE_DEPTH, config, flags};

use crate::{
    emit,
    maps::{ALLOW_EXE, ALLOW_UID},
    offsets,
    task::{self, Task},
};

const SIGKILL: u32 = 9;

/// Applies the policy in config slot `switch` to the current task and returns header flags
/// saying what happened (0 when the policy is off or the task is out of scope).
#[inline(always)]
pub fn enforce(switch: u32, tgid: u32) -> u32 {
    // Without BTF offsets neither the scope nor the exemption can be decided: never kill
    // blind (userspace refuses to turn the policy on in that case anyway).
    if emit::config(switch) == 0 || !offsets::kernel_known() {
        return 0;
    }
    let me = task::current();
    if !in_scope(me) {
        return 0;
    }
    // Never pid 1 or procwatch's parent (procwatch itself is filtered before this).
    if tgid == 1 || u64::from(tgid) == emit::config(config::PARENT_TGID) {
        return flags::EXEMPT;
    }
    let uid = bpf_get_current_uid_gid() as u32;
    // SAFETY: lookup result is only tested for presence.
    if unsafe { ALLOW_UID.get(uid) }.is_some() {
        return flags::EXEMPT;
    }
    match task::exe_key(me) {
        // SAFETY: as above.
        Some(key) if unsafe { ALLOW_EXE.get(key) }.is_some() => return flags::EXEMPT,
        Some(_) => {}
        // What it runs cannot be read, so whether it is exempt cannot be told: not killed.
        None => return flags::KILL_FAILED,
    }
    // SAFETY: plain helper call; it signals the current task only.
    let ret = unsafe { generated::bpf_send_signal(SIGKILL) };
    if ret == 0 {
        flags::KILLED
    } else {
        flags::KILL_FAILED
    }
}

/// True when no scope is set, or the task's process is the scope process or descends from
/// it (followed through `real_parent`, as the kernel has it now).
#[inline(always)]
fn in_scope(me: Task) -> bool {
    let scope = emit::config(config::SCOPE_TGID);
    if scope == 0 {
        return true;
    }
    let mut cur = me;
    let mut depth = 0;
    while depth < SCOPE_DEPTH {
        let Some(tgid) = task::tgid(cur) else {
            return false;
        };
        if u64::from(tgid) == scope {
            return true;
        }
        if tgid <= 1 {
            return false;
        }
        match task::real_parent(cur) {
            Some(parent) if parent != cur => cur = parent,
            _ => return false,
        }
        depth += 1;
    }
    false
}
