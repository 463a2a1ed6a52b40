//! One live process's part in learning: what it taught (so it counts once and can be taken
//! back), what it was reported for (so it is reported once), and the list operations that
//! teach, judge and withdraw.
use std::collections::{HashMap, HashSet};

use super::{
    anomaly::{Anomaly, AnomalyRule, rarity_of_pending},
    model::{Dimension, Entry, ExeBaseline, ExeKey, FileKey, FlagKey, Key, Secs, UserKey},
    net::NetKey,
    stats::Welford,
};

/// A process, named so a recycled pid is another process: pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ProcessId {
    /// Process id.
    pub pid: u32,
    /// Start time (clock ticks since boot, as in /proc/PID/stat).
    pub start: u64,
}

/// Which list an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Dim {
    /// `network`.
    Network,
    /// `children`.
    Children,
    /// `parents`.
    Parents,
    /// `users`.
    Users,
    /// `files`.
    Files,
    /// `flags`.
    Flags,
}

/// Most distinct anomalies reported per process; one scanning thousands of ports has said
/// enough by then, and the per-process memory stays bounded.
pub const MAX_REPORTED: usize = 1024;

/// Most distinct entries one process may teach; beyond, it stops teaching (a process touching
/// that much is a scanner, not a workload to learn), and its memory stays bounded.
pub const MAX_TAUGHT: usize = 1024;

/// Most anomalies kept per process (the highest severities stay).
pub const MAX_SESSION_ANOMALIES: usize = 32;

/// What one live process has contributed, so its contributions count once and can be
/// taken back.
#[derive(Debug, Default)]
pub(super) struct Session {
    /// The process.
    pub(super) id: ProcessId,
    /// Its executable's model key.
    pub(super) exe: String,
    /// The executable as the engine reported it (compared without re-encoding).
    pub(super) raw: std::path::PathBuf,
    /// Entries this process was counted in (`processes`).
    pub(super) counted: HashSet<(Dim, String)>,
    /// Observations it taught while the dimension was learning (withdrawable).
    pub(super) learned: HashMap<(Dim, String), u64>,
    /// CPU samples it taught.
    pub(super) cpu: Welford,
    /// RSS samples it taught.
    pub(super) rss: Welford,
    /// Counted in `resources.processes`.
    pub(super) in_resources: bool,
    /// Flagged by a never-silenced rule: teaches nothing more.
    pub(super) tainted: bool,
    /// Its most severe anomalies.
    pub(super) anomalies: Vec<Anomaly>,
    /// Every (rule, observed key) reported for it.
    pub(super) reported: HashSet<(AnomalyRule, String)>,
    /// Last observation (for evicting the idlest session).
    pub(super) last_active: Secs,
}

/// The lists of a baseline, reached by key type.
pub(super) struct Lists;

/// Access to one list of a baseline by key type.
pub(super) trait DimAccess<K> {
    /// The list.
    fn dim_mut(b: &mut ExeBaseline, dim: Dim) -> &mut Dimension<K>;
}

impl DimAccess<NetKey> for Lists {
    fn dim_mut(b: &mut ExeBaseline, _: Dim) -> &mut Dimension<NetKey> {
        &mut b.network
    }
}

impl DimAccess<ExeKey> for Lists {
    fn dim_mut(b: &mut ExeBaseline, dim: Dim) -> &mut Dimension<ExeKey> {
        match dim {
            Dim::Parents => &mut b.parents,
            _ => &mut b.children,
        }
    }
}

impl DimAccess<UserKey> for Lists {
    fn dim_mut(b: &mut ExeBaseline, _: Dim) -> &mut Dimension<UserKey> {
        &mut b.users
    }
}

impl DimAccess<FlagKey> for Lists {
    fn dim_mut(b: &mut ExeBaseline, _: Dim) -> &mut Dimension<FlagKey> {
        &mut b.flags
    }
}

/// Adds `n` evictions to the counter of list `dim`.
pub(super) fn count_evicted(ev: &mut super::model::ListEvictions, dim: Dim, n: u64) {
    match dim {
        Dim::Network => ev.network += n,
        Dim::Children => ev.children += n,
        Dim::Parents => ev.parents += n,
        Dim::Users => ev.users += n,
        Dim::Files => ev.files += n,
        // Two flags exist and their cap is larger, so nothing is ever evicted from them.
        Dim::Flags => {}
    }
}

/// How an entry's key covers an observed key of the same list.
pub(super) trait CoversKey {
    /// Whether this entry's key covers the observed `seen`.
    fn covers_key(&self, seen: &Self) -> bool;
}

impl CoversKey for NetKey {
    fn covers_key(&self, seen: &Self) -> bool {
        self.covers(seen)
    }
}

macro_rules! covers_by_eq {
    ($($t:ty),*) => {$(
        impl CoversKey for $t {
            fn covers_key(&self, seen: &Self) -> bool {
                self == seen
            }
        }
    )*};
}
covers_by_eq!(ExeKey, UserKey, FlagKey, FileKey);

/// Learns one observation into entry `pos` (or a new entry for `key`), counting the session
/// once per entry; returns how many entries were evicted to make room.
#[allow(clippy::too_many_arguments)]
pub(super) fn learn_at<K: Key>(
    d: &mut Dimension<K>,
    dim: Dim,
    pos: Option<usize>,
    key: K,
    example: Option<String>,
    s: &mut Session,
    cap: usize,
    min: usize,
    now: Secs,
) -> u64 {
    let mut evicted = 0;
    let i = match pos {
        Some(i) => i,
        None => {
            evicted = d.make_room(cap, min);
            d.entries.push(Entry {
                count: 0,
                processes: 0,
                ..Entry::first(key, now)
            });
            d.entries.len() - 1
        }
    };
    let e = &mut d.entries[i];
    let id = e.key.id();
    let was_normal = e.is_normal(min);
    e.count += 1;
    e.last_seen = now;
    if let Some(x) = example {
        e.add_example(x);
    }
    let first_time = s.counted.insert((dim, id.clone()));
    if was_normal {
        if first_time {
            e.processes += 1;
        }
    } else {
        // Pending: the persisted contributors decide, so a process that outlives a restart
        // of procwatch (and so gets a new session) still counts once.
        let me = [u64::from(s.id.pid), s.id.start];
        if !e.contributors.contains(&me) {
            e.contributors.push(me);
            e.processes += 1;
        }
    }
    *s.learned.entry((dim, id)).or_insert(0) += 1;
    if e.is_normal(min) {
        e.contributors = Vec::new();
        if !was_normal {
            d.changed_at = now;
        }
    }
    evicted
}

/// Checks a member against a frozen list. A normal entry that covers it is counted (known
/// behaviour); otherwise returns its rarity: by how close a pending entry came to normal, 1
/// when never seen.
pub(super) fn judge<K: Key>(
    d: &mut Dimension<K>,
    dim: Dim,
    key: &K,
    covers: impl Fn(&Entry<K>, &K) -> bool,
    s: &mut Session,
    min: usize,
    now: Secs,
) -> Option<f64> {
    if let Some(e) = d
        .entries
        .iter_mut()
        .find(|e| e.is_normal(min) && covers(e, key))
    {
        e.count += 1;
        e.last_seen = now;
        if s.counted.len() < 2 * MAX_TAUGHT && s.counted.insert((dim, e.key.id())) {
            e.processes += 1;
        }
        return None;
    }
    let pending = d
        .entries
        .iter()
        .filter(|e| covers(e, key))
        .map(|e| e.processes)
        .max()
        .unwrap_or(0);
    Some(rarity_of_pending(pending, min))
}

/// Takes back what process `me` taught an entry; an entry only it had seen goes.
pub(super) fn withdraw<K: Key>(
    d: &mut Dimension<K>,
    id: &str,
    count: u64,
    counted: bool,
    me: ProcessId,
) {
    let Some(i) = d.position_by_id(id) else {
        return;
    };
    let e = &mut d.entries[i];
    e.count = e.count.saturating_sub(count);
    let me = [u64::from(me.pid), me.start];
    let listed = e.contributors.len();
    e.contributors.retain(|c| *c != me);
    if counted || e.contributors.len() < listed {
        e.processes = e.processes.saturating_sub(1);
    }
    if e.processes == 0 && e.origin == super::model::Origin::Learned {
        d.entries.swap_remove(i);
    }
}

/// What [`record`] did with an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recorded {
    /// New for this process: kept and handed out.
    New,
    /// Already reported for this process.
    Repeat,
    /// Not kept: the process already has [`MAX_REPORTED`] distinct anomalies.
    Capped,
}

/// Keeps `a` for the process (highest severities first) and hands it out, once per rule and
/// observed key.
pub(super) fn record(s: &mut Session, a: Anomaly, out: &mut Vec<Anomaly>) -> Recorded {
    let key = (a.rule, a.observed.dedup_key());
    if s.reported.contains(&key) {
        return Recorded::Repeat;
    }
    if s.reported.len() >= MAX_REPORTED {
        return Recorded::Capped;
    }
    s.reported.insert(key);
    out.push(a.clone());
    s.anomalies.push(a);
    if s.anomalies.len() > MAX_SESSION_ANOMALIES {
        s.anomalies
            .sort_by(|x, y| y.severity.total_cmp(&x.severity));
        s.anomalies.truncate(MAX_SESSION_ANOMALIES);
    }
    Recorded::New
}
