//! The in-kernel kill policy: SIGKILL before the offending syscall returns to user space.
use aya_ebpf::helpers::generated;
use procwatch_common::{config, flags};

use crate::{emit, maps::EXEMPT};

const SIGKILL: u32 = 9;

/// Applies the policy in config slot `switch` to the current task and returns header flags
/// saying what happened (0 when the policy is off).
#[inline(always)]
pub fn enforce(switch: u32, tgid: u32) -> u32 {
    if emit::config(switch) == 0 {
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
    // SAFETY: plain helper call; it signals the current task only.
    let ret = unsafe { generated::bpf_send_signal(SIGKILL) };
    if ret == 0 {
        flags::KILLED
    } else {
        flags::KILL_FAILED
    }
}
