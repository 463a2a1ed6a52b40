//! Copying /proc samples into table entries: a sample adds state, it never erases what the
//! kernel reported (an exec event's exe and argv stand when /proc can no longer say).
use std::time::Instant;

use super::table::{ExeState, Process};
use crate::procfs::{Sample, stat};

/// Copies a sample into the table entry, computing CPU % against the previous sample.
pub fn merge(p: &mut Process, s: Sample, now: Instant) {
    merge_identity(p, &s);
    let at = s.taken_at.unwrap_or(now);
    if let Some((prev_ticks, prev_at)) = p.cpu_sample {
        p.cpu_pct = stat::cpu_pct(prev_ticks, prev_at, s.cpu_ticks, at, stat::clk_tck());
    } else if let Some(pct) = crate::identity::boot_ticks_now().and_then(|now| {
        // The first sample: judged from the process's start, so a fresh worker burning a
        // core is seen on this sweep, not the next one (which it may not live to see).
        let tck = stat::clk_tck();
        let ago = Instant::now().saturating_duration_since(at).as_secs_f64() * tck as f64;
        let sampled = now.saturating_sub(ago as u64);
        stat::cpu_pct_since_start(s.start_ticks, s.cpu_ticks, sampled, tck)
    }) {
        p.cpu_pct = pct;
    }
    p.cpu_sample = Some((s.cpu_ticks, at));
    p.rss_bytes = s.rss_bytes;
    p.tracer_pid = s.tracer_pid;
    p.kernel_thread = s.kernel_thread;
    p.zombie = s.zombie;
    if s.partial {
        // Read header-only (the process blocks reads): what was not read is unknown, and
        // keeping the last known facts beats taking "not read" for "none".
        return;
    }
    p.wx_maps = s.wx_maps;
    p.stdio_net = s.stdio_net;
    p.conns = s.conns;
}

/// Copies who the process is (ids, names, exe, argv) into the table entry.
pub fn merge_identity(p: &mut Process, s: &Sample) {
    p.ppid = s.ppid;
    p.uid = s.uid;
    p.gid = s.gid;
    p.name = s.name.clone();
    if p.start_ticks == 0 {
        p.start_ticks = s.start_ticks;
    }
    // A vanished exe link (zombie) must not erase what the exec event told us; nor may a
    // header-only read, which cannot tell "replaced" from "on disk", undo that finding.
    let keeps_replaced = s.partial
        && p.exe == s.exe
        && p.exe_state == ExeState::Replaced
        && s.exe_state == ExeState::OnDisk;
    if s.exe.is_some() && !keeps_replaced {
        if p.exe != s.exe {
            // An exec procwatch did not see: the file identity it knew is another program's.
            p.exe_id = None;
        }
        p.exe = s.exe.clone();
        p.exe_state = s.exe_state;
        p.identity_ns = p.identity_ns.max(s.read_ns);
        if !s.partial {
            p.exe_successor_root = s.exe_successor_root;
        }
    }
    if !s.zombie && !s.partial && (s.exe.is_some() || !s.cmdline.is_empty()) {
        p.cmdline = s.cmdline.clone();
    }
    if s.cwd.is_some() {
        p.cwd = s.cwd.clone();
    }
}
