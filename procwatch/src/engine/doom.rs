//! Kills that stick: the processes condemned by kill verdicts, and their descendants.
//!
//! When a flagged process is to be killed it is condemned here, with every live descendant
//! the table knows (by the parent each was forked by, so a child that daemonised and was
//! re-parented to init is still found). A fork the engine sees later from a condemned
//! process condemns its child too. Every condemned process goes to the kernel's `DOOMED`
//! map, from where the fork probe condemns its future children and kills them before they run
//! (see procwatch-ebpf's `doom.rs`), and is killed from user space through a pidfd of exactly
//! that process (pid + start time). Together nothing forked before or after the verdict
//! escapes: forks before the kernel knew are in the event stream, which the engine reads in
//! order; forks after are the kernel's.
use std::collections::HashMap;

use crate::{
    config::Config,
    identity::AllowIds,
    process::{
        table::{Process, ProcessTable},
        users::UserNames,
    },
};

/// Most condemned processes remembered (the kernel map holds as many).
const MAX: usize = procwatch_common::DOOMED_MAX as usize;

/// A condemned process, named exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condemned {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks (never 0: without it the pid names nobody for sure).
    pub start_ticks: u64,
}

/// The condemned processes, and what the kernel and the action stage have yet to be told.
#[derive(Debug, Default)]
pub struct Doomed {
    /// pid -> start ticks of every condemned process not yet seen to exit.
    set: HashMap<u32, u64>,
    /// Condemned since the last [`Doomed::take_new`]: for the kernel map and the pidfd kill.
    fresh: Vec<Condemned>,
}

/// Why `p` may not be killed as a descendant of a condemned process, if so: the exemptions
/// of every kill (init, kernel threads, procwatch and its parent, allowlisted executables,
/// whitelisted users; the start time must be known).
fn exempt(p: &Process, allow: &AllowIds, cfg: &Config, users: &mut UserNames) -> bool {
    let me = std::process::id();
    // SAFETY: getppid has no preconditions.
    let parent = u32::try_from(unsafe { libc::getppid() }).unwrap_or(0);
    p.pid <= 1
        || p.pid == me
        || p.pid == parent
        || p.kernel_thread
        || p.start_ticks == 0
        || p.exe_id.is_some_and(|id| allow.exempt.contains(&id))
        || cfg.user_whitelisted(users.name(p.uid), p.uid)
}

impl Doomed {
    /// Whether the process `pid` that started at `start_ticks` is condemned.
    pub fn contains(&self, pid: u32, start_ticks: u64) -> bool {
        start_ticks != 0 && self.set.get(&pid) == Some(&start_ticks)
    }

    fn add(&mut self, c: Condemned) -> bool {
        if self.contains(c.pid, c.start_ticks) || self.set.len() >= MAX {
            return false;
        }
        self.set.insert(c.pid, c.start_ticks);
        self.fresh.push(c);
        true
    }

    /// Condemns `root` and its live descendants the table knows, exemptions aside (an exempt
    /// process is spared but its own descendants are not). Returns the descendants condemned.
    pub fn condemn_tree(
        &mut self,
        root: Condemned,
        table: &ProcessTable,
        allow: &AllowIds,
        cfg: &Config,
        users: &mut UserNames,
    ) -> Vec<Condemned> {
        // The root passed the kill's exemptions already; these guards are the kernel's
        // too (init, procwatch, its parent), so the kernel never holds them condemned.
        let me = std::process::id();
        // SAFETY: getppid has no preconditions.
        let parent = u32::try_from(unsafe { libc::getppid() }).unwrap_or(0);
        if root.pid <= 1
            || root.pid == me
            || root.pid == parent
            || table.get(root.pid).is_some_and(|p| p.kernel_thread)
        {
            return Vec::new();
        }
        self.add(root);
        // Children by the parent they were forked by, once for the whole walk.
        let mut children: HashMap<u32, Vec<&Process>> = HashMap::new();
        for p in table.iter() {
            let parent = if p.fork_parent != 0 {
                p.fork_parent
            } else {
                p.ppid
            };
            if parent != 0 && parent != p.pid {
                children.entry(parent).or_default().push(p);
            }
        }
        let mut out = Vec::new();
        let mut stack = vec![root.pid];
        let mut seen = std::collections::HashSet::new();
        while let Some(pid) = stack.pop() {
            if !seen.insert(pid) || seen.len() > MAX {
                continue;
            }
            for &c in children.get(&pid).into_iter().flatten() {
                stack.push(c.pid);
                if c.exited.is_some() || exempt(c, allow, cfg, users) {
                    continue;
                }
                let c = Condemned {
                    pid: c.pid,
                    start_ticks: c.start_ticks,
                };
                if self.add(c) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// A fork seen by the engine: the child of a condemned process is condemned too.
    pub fn on_fork(
        &mut self,
        parent: &Process,
        child: &Process,
        allow: &AllowIds,
        cfg: &Config,
        users: &mut UserNames,
    ) {
        if self.contains(parent.pid, parent.start_ticks) && !exempt(child, allow, cfg, users) {
            self.add(Condemned {
                pid: child.pid,
                start_ticks: child.start_ticks,
            });
        }
    }

    /// An exit: the verdict on that process is carried out.
    pub fn on_exit(&mut self, pid: u32) {
        self.set.remove(&pid);
    }

    /// Processes condemned since the last call.
    pub fn take_new(&mut self) -> Vec<Condemned> {
        std::mem::take(&mut self.fresh)
    }
}
