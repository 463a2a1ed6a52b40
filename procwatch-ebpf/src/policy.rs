//! The in-kernel kill policy: SIGKILL before the offending syscall returns to user space.
use aya_ebpf::helpers::generated;
use procwatch_common::{config, flags};

use aya_ebpf::helpers::bpf_get_current_uid_gid;

use crate::{
    emit,
    maps::{ALLOW_UID, EXEMPT, PARENT},
};

const SIGKILL: u32 = 9;

/// Applies the policy in config slot `switch` to the current task and returns header flags
/// saying what happened (0 when the policy is off).
#[inline(always)]
pub fn enforce(switch: u32, tgid: u32) -> u32 {
    if emit::config(switch) == 0 || !in_scope(tgid) {
        return 0;
    }
    // Never pid 1 or procwatch's parent (procwatch itself is filtered before this).
    if tgid == 1 || u64::from(tgid) == emit::config(config::PARENT_TGID) {
        return flags::EXEMPT;
    }
    // SAFETY: lookup result is only tested for presence.
    if emit::config(config::ALLOW_COUNT) != 0 && unsafe { EXEMPT.get(tgid) }.is_some() {
        return flags::EXEMPT;
    }
    let uid = bpf_get_current_uid_gid() as u32;
    // SAFETY: as above.
    if emit::config(config::ALLOW_UID_COUNT) != 0 && unsafe { ALLOW_UID.get(uid) }.is_some() {
        return flags::EXEMPT;
    }
    // SAFETY: plain helper call; it signals the current task only.
    let ret = unsafe { generated::bpf_send_signal(SIGKILL) };
    if ret == 0 {
        flags::KILLED
    } else {
        flags::KILL_FAILED
    }
}

/// True when no scope is set, or `tgid` is the scope process or one of its descendants.
#[inline(always)]
fn in_scope(tgid: u32) -> bool {
    let scope = emit::config(config::SCOPE_TGID);
    if scope == 0 {
        return true;
    }
    let mut cur = tgid;
    let mut depth = 0;
    while depth < procwatch_common::SCOPE_DEPTH {
        if u64::from(cur) == scope {
            return true;
        }
        match PARENT.get_ptr(cur) {
            // SAFETY: pointer to a u32 map value, read once.
            Some(parent) => cur = unsafe { *parent },
            None => return false,
        }
        depth += 1;
    }
    false
}
