//! What a baseline holds, per executable, and the bounded lists it is made of.
//!
//! Everything here is plain data (the model file is its JSON form, see `store`); learning
//! decisions live in `learn`. Times are Unix seconds, so a fake clock is just a number.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{net::NetKey, paths, stats::Welford};

/// Seconds since the Unix epoch.
pub type Secs = u64;

/// The `format` of a model file.
pub const FORMAT: &str = "procwatch.baseline";
/// The model file version this build reads and writes.
pub const VERSION: u32 = 1;

/// The whole model: every executable's baseline and the learning state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Always [`FORMAT`].
    pub format: String,
    /// File format version ([`VERSION`]).
    pub version: u32,
    /// Incremented by every save, so a writer can tell the file changed under it.
    pub revision: u64,
    /// When the model was created.
    pub created: Secs,
    /// When it was last saved.
    pub saved: Option<Secs>,
    /// Hosts whose behaviour it holds (several after a merge).
    pub hosts: BTreeSet<String>,
    /// The model-wide learning period.
    pub learning: Learning,
    /// Executables evicted by the cap, and entries evicted from every executable's lists.
    pub evicted: Evicted,
    /// Baselines by executable, keyed by its canonical path (text form, see `paths`).
    pub executables: BTreeMap<String, ExeBaseline>,
}

/// The model-wide learning period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Learning {
    /// When learning began.
    pub started: Secs,
    /// When it ended (`learning_period` elapsed, or `train` finished); `None` while learning.
    pub ended: Option<Secs>,
    /// Ended by `train`: everything learned counts as stable.
    pub trained: bool,
}

/// Eviction counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evicted {
    /// Whole executables dropped by `caps.executables`.
    pub executables: u64,
    /// Entries dropped from per-executable lists, all lists together.
    pub entries: u64,
}

/// Per-list eviction counts of one executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEvictions {
    /// From `network`.
    pub network: u64,
    /// From `children`.
    pub children: u64,
    /// From `parents`.
    pub parents: u64,
    /// From `users`.
    pub users: u64,
    /// From `files`.
    pub files: u64,
}

impl ListEvictions {
    /// All lists together.
    pub fn total(&self) -> u64 {
        self.network + self.children + self.parents + self.users + self.files
    }
}

/// How an entry got into the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Learned from observed behaviour; normal once seen in `min_processes` processes.
    #[default]
    Learned,
    /// Added by `baseline allow`: normal at once.
    Allowed,
    /// Added by `baseline accept` from an alert: normal at once.
    Accepted,
}

impl Origin {
    fn is_learned(&self) -> bool {
        *self == Origin::Learned
    }
}

/// Most example values kept on an entry (the addresses behind a network class).
pub const MAX_EXAMPLES: usize = 4;

/// One remembered behaviour with its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry<K> {
    /// What it is.
    #[serde(flatten)]
    pub key: K,
    /// Observations.
    pub count: u64,
    /// Distinct processes that showed it.
    pub processes: u64,
    /// First observation.
    pub first_seen: Secs,
    /// Last observation.
    pub last_seen: Secs,
    /// How it got here.
    #[serde(default, skip_serializing_if = "Origin::is_learned")]
    pub origin: Origin,
    /// A few concrete values behind a generalised key (addresses of a network class).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    /// The processes (pid, start time) behind a pending entry, so one process counts once
    /// even across a restart of procwatch; emptied once the entry is normal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributors: Vec<[u64; 2]>,
}

impl<K> Entry<K> {
    /// A learned entry seen once, by one process.
    pub fn first(key: K, now: Secs) -> Self {
        Self {
            key,
            count: 1,
            processes: 1,
            first_seen: now,
            last_seen: now,
            origin: Origin::Learned,
            examples: Vec::new(),
            contributors: Vec::new(),
        }
    }

    /// An entry put in by a person (`allow`, `accept`): normal without being seen.
    pub fn manual(key: K, origin: Origin, now: Secs) -> Self {
        Self {
            key,
            count: 0,
            processes: 0,
            first_seen: now,
            last_seen: now,
            origin,
            examples: Vec::new(),
            contributors: Vec::new(),
        }
    }

    /// Whether the entry is normal behaviour (poisoning rule: enough distinct processes).
    pub fn is_normal(&self, min_processes: usize) -> bool {
        self.origin != Origin::Learned || self.processes >= min_processes as u64
    }

    /// Remembers one more concrete value, keeping at most [`MAX_EXAMPLES`].
    pub fn add_example(&mut self, value: String) {
        if self.examples.len() < MAX_EXAMPLES && !self.examples.contains(&value) {
            self.examples.push(value);
        }
    }
}

/// What makes a key comparable and nameable across the model.
pub trait Key: Clone + PartialEq + Serialize + DeserializeOwned {
    /// A stable text id (for contributions and messages).
    fn id(&self) -> String;
}

impl Key for NetKey {
    fn id(&self) -> String {
        NetKey::id(self)
    }
}

/// An executable (children, parents), in text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExeKey {
    /// Canonical path.
    pub exe: String,
}

impl Key for ExeKey {
    fn id(&self) -> String {
        self.exe.clone()
    }
}

/// A user name (or uid when it has none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserKey {
    /// Name or uid.
    pub user: String,
}

impl Key for UserKey {
    fn id(&self) -> String {
        self.user.clone()
    }
}

/// A file or file pattern, in text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileKey {
    /// Exact path, or pattern with `*` components.
    pub path: String,
}

impl Key for FileKey {
    fn id(&self) -> String {
        self.path.clone()
    }
}

/// Behaviour that heuristics flag and a baseline may know as normal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// Makes writable and executable memory (a JIT).
    WxMem,
    /// ptrace-attaches to other processes (a debugger).
    Ptrace,
}

impl Flag {
    /// Lowercase id.
    pub const fn as_str(self) -> &'static str {
        match self {
            Flag::WxMem => "wx_mem",
            Flag::Ptrace => "ptrace",
        }
    }
}

/// A flag entry's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlagKey {
    /// Which behaviour.
    pub flag: Flag,
}

impl Key for FlagKey {
    fn id(&self) -> String {
        self.flag.as_str().into()
    }
}

/// One dimension of a baseline: a bounded list of entries and when it last changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension<K> {
    /// Last time its set of normal entries grew.
    pub changed_at: Secs,
    /// Set when `train` (or a merge of trained models) declared it stable at that time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_since: Option<Secs>,
    /// The entries, in no particular order.
    pub entries: Vec<Entry<K>>,
}

impl<K: Key> Dimension<K> {
    /// An empty dimension, as of `now`.
    pub fn new(now: Secs) -> Self {
        Self {
            changed_at: now,
            stable_since: None,
            entries: Vec::new(),
        }
    }

    /// When it became (or will become) stable: declared by `train`, or `stable_after` after
    /// the last change.
    pub fn stable_from(&self, stable_after: Secs) -> Secs {
        let quiet = self.changed_at.saturating_add(stable_after);
        self.stable_since.map_or(quiet, |s| s.min(quiet))
    }

    /// Whether nothing new was learned for `stable_after` (or `train` declared it stable).
    pub fn is_stable(&self, now: Secs, stable_after: Secs) -> bool {
        now >= self.stable_from(stable_after)
    }

    /// Index of the entry with exactly this key.
    pub fn position(&self, key: &K) -> Option<usize> {
        self.entries.iter().position(|e| &e.key == key)
    }

    /// Index of the entry whose id is `id`.
    pub fn position_by_id(&self, id: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.key.id() == id)
    }

    /// Observations over all entries.
    pub fn observations(&self) -> u64 {
        self.entries.iter().map(|e| e.count).sum()
    }

    /// The normal entries, most used first.
    pub fn normal(&self, min_processes: usize) -> Vec<&Entry<K>> {
        let mut v: Vec<&Entry<K>> = self
            .entries
            .iter()
            .filter(|e| e.is_normal(min_processes))
            .collect();
        v.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.key.id().cmp(&b.key.id()))
        });
        v
    }

    /// Makes room for one more entry under `cap`, evicting the least used; returns how many
    /// were evicted. Pending entries go before normal ones and learned before manual ones, so
    /// a flood of one-off behaviour cannot push out what was learned or allowed.
    pub fn make_room(&mut self, cap: usize, min_processes: usize) -> u64 {
        let mut evicted = 0;
        while !self.entries.is_empty() && self.entries.len() >= cap {
            let victim = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| {
                    (
                        !e.origin.is_learned(),
                        e.is_normal(min_processes),
                        e.count,
                        e.last_seen,
                    )
                })
                .map(|(i, _)| i);
            if let Some(i) = victim {
                self.entries.swap_remove(i);
                evicted += 1;
            }
        }
        evicted
    }

    /// Evicts down to `cap` entries; returns how many went.
    pub fn enforce_cap(&mut self, cap: usize, min_processes: usize) -> u64 {
        if self.entries.len() <= cap {
            return 0;
        }
        // make_room leaves cap - 1; evict to exactly cap.
        self.make_room(cap + 1, min_processes)
    }
}

impl Entry<FileKey> {
    /// Whether this file entry covers the observed `path` (rule 3 of `paths`: a learned
    /// pattern never covers a sensitive file; only that very path, or a pattern a person
    /// allowed, does).
    pub fn covers_file(&self, path: &str, sensitive: bool) -> bool {
        if self.key.path == path {
            return true;
        }
        if !paths::matches(&self.key.path, path) {
            return false;
        }
        !sensitive || self.origin != Origin::Learned
    }
}

impl Dimension<FileKey> {
    /// Rule 2 of `paths`: once `n` learned exact files of directory `dir` are normal, they
    /// (and the pending ones beside them) become one pattern `dir/*`. True when it did.
    pub fn generalise(&mut self, dir: &str, n: usize, min_processes: usize, now: Secs) -> bool {
        let in_dir = |e: &Entry<FileKey>| {
            let (d, name) = paths::parent_and_name(&e.key.path);
            d == dir
                && name != paths::WILDCARD
                && e.origin == Origin::Learned
                && !paths::is_sensitive(&e.key.path)
        };
        let normal = self
            .entries
            .iter()
            .filter(|e| in_dir(e) && e.is_normal(min_processes))
            .count();
        if normal < n {
            return false;
        }
        let pattern = paths::dir_pattern(dir);
        let (merged, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(in_dir);
        self.entries = kept;
        let mut target = match self.entries.iter().position(|e| e.key.path == pattern) {
            Some(i) => self.entries.swap_remove(i),
            None => Entry {
                count: 0,
                processes: 0,
                ..Entry::first(FileKey { path: pattern }, now)
            },
        };
        for e in merged {
            target.absorb(&e);
            target.add_example(paths::parent_and_name(&e.key.path).1.to_string());
        }
        self.entries.push(target);
        self.changed_at = now;
        true
    }

    /// Folds exact entries into the patterns that cover them, then generalises every
    /// directory that qualifies (after a merge or an edit brought new entries together).
    pub fn tidy(&mut self, n: usize, min_processes: usize, now: Secs) {
        let patterns: Vec<Entry<FileKey>> = self
            .entries
            .iter()
            .filter(|e| paths::split(&e.key.path).any(|c| c == paths::WILDCARD))
            .cloned()
            .collect();
        let mut i = 0;
        while i < self.entries.len() {
            let e = &self.entries[i];
            let sensitive = paths::is_sensitive(&e.key.path);
            let cover = patterns
                .iter()
                .find(|p| p.key.path != e.key.path && p.covers_file(&e.key.path, sensitive));
            match cover.map(|p| p.key.path.clone()) {
                Some(target) if e.origin == Origin::Learned => {
                    let e = self.entries.swap_remove(i);
                    if let Some(t) = self.entries.iter_mut().find(|x| x.key.path == target) {
                        t.absorb(&e);
                    }
                }
                _ => i += 1,
            }
        }
        let mut dirs: Vec<String> = self
            .entries
            .iter()
            .map(|e| paths::parent_and_name(&e.key.path).0.to_string())
            .collect();
        dirs.sort_unstable();
        dirs.dedup();
        for d in dirs {
            self.generalise(&d, n, min_processes, now);
        }
    }
}

impl<K> Entry<K> {
    /// Adds another entry's counts (same behaviour, seen elsewhere or generalised).
    pub fn absorb(&mut self, other: &Entry<K>) {
        self.count += other.count;
        // Distinct processes behind two entries may overlap; the larger is a floor.
        self.processes = self.processes.max(other.processes);
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        for x in &other.examples {
            self.add_example(x.clone());
        }
    }
}

/// CPU and memory use, as running statistics over samples of all its processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Last time a sample fell outside the learned envelope (or samples were still too few).
    pub changed_at: Secs,
    /// Set when `train` declared it stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_since: Option<Secs>,
    /// Distinct processes that contributed samples.
    pub processes: u64,
    /// CPU percent of one core.
    pub cpu: Welford,
    /// Resident set size in bytes.
    pub rss: Welford,
    /// CPU up to which a spike was accepted by a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ceiling: Option<f64>,
    /// RSS up to which a spike was accepted by a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_ceiling: Option<u64>,
}

impl Resources {
    /// No samples yet, as of `now`.
    pub fn new(now: Secs) -> Self {
        Self {
            changed_at: now,
            stable_since: None,
            processes: 0,
            cpu: Welford::default(),
            rss: Welford::default(),
            cpu_ceiling: None,
            rss_ceiling: None,
        }
    }

    /// See [`Dimension::stable_from`].
    pub fn stable_from(&self, stable_after: Secs) -> Secs {
        let quiet = self.changed_at.saturating_add(stable_after);
        self.stable_since.map_or(quiet, |s| s.min(quiet))
    }

    /// See [`Dimension::is_stable`].
    pub fn is_stable(&self, now: Secs, stable_after: Secs) -> bool {
        now >= self.stable_from(stable_after)
    }
}

/// Everything learned about one executable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExeBaseline {
    /// File name, for messages ("nginx").
    pub name: String,
    /// First observation.
    pub first_seen: Secs,
    /// Last observation.
    pub last_seen: Secs,
    /// Processes seen running it.
    pub processes: u64,
    /// End of its own learning window, for an executable first seen after learning ended;
    /// `None` when it was learned in the model-wide period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_until: Option<Secs>,
    /// A person accepted it (`unknown_executable` no longer reported).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accepted: bool,
    /// Destinations by class, port, protocol and direction.
    pub network: Dimension<NetKey>,
    /// Executables it spawns.
    pub children: Dimension<ExeKey>,
    /// Executables of its parents.
    pub parents: Dimension<ExeKey>,
    /// Users it runs as.
    pub users: Dimension<UserKey>,
    /// Files it opens under the watched prefixes, and patterns.
    pub files: Dimension<FileKey>,
    /// W+X memory, ptrace.
    pub flags: Dimension<FlagKey>,
    /// CPU and RSS.
    pub resources: Resources,
    /// Entries evicted from its lists by the caps.
    pub evicted: ListEvictions,
}

impl ExeBaseline {
    /// A new, empty baseline for the executable at `exe` (text form), first seen `now`.
    pub fn new(exe: &str, now: Secs) -> Self {
        Self {
            name: paths::parent_and_name(exe).1.to_string(),
            first_seen: now,
            last_seen: now,
            processes: 0,
            learning_until: None,
            accepted: false,
            network: Dimension::new(now),
            children: Dimension::new(now),
            parents: Dimension::new(now),
            users: Dimension::new(now),
            files: Dimension::new(now),
            flags: Dimension::new(now),
            resources: Resources::new(now),
            evicted: ListEvictions::default(),
        }
    }

    /// Declares every dimension stable as of `at` (`train`).
    pub fn declare_stable(&mut self, at: Secs) {
        self.network.stable_since = Some(at);
        self.children.stable_since = Some(at);
        self.parents.stable_since = Some(at);
        self.users.stable_since = Some(at);
        self.files.stable_since = Some(at);
        self.flags.stable_since = Some(at);
        self.resources.stable_since = Some(at);
    }

    /// Applies the per-list caps; returns how many entries were evicted.
    pub fn enforce_caps(&mut self, caps: &crate::config::Caps, min_processes: usize) -> u64 {
        let ev = &mut self.evicted;
        let n = self.network.enforce_cap(caps.network, min_processes);
        ev.network += n;
        let c = self.children.enforce_cap(caps.children, min_processes);
        ev.children += c;
        let p = self.parents.enforce_cap(caps.parents, min_processes);
        ev.parents += p;
        let u = self.users.enforce_cap(caps.users, min_processes);
        ev.users += u;
        let f = self.files.enforce_cap(caps.files, min_processes);
        ev.files += f;
        n + c + p + u + f
    }
}

impl Model {
    /// An empty model whose learning starts `now`.
    pub fn new(now: Secs, host: &str) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            revision: 0,
            created: now,
            saved: None,
            hosts: BTreeSet::from([host.to_string()]),
            learning: Learning {
                started: now,
                ended: None,
                trained: false,
            },
            evicted: Evicted::default(),
            executables: BTreeMap::new(),
        }
    }

    /// When model-wide learning ends (or ended).
    pub fn learning_end(&self, learning_period: Secs) -> Secs {
        self.learning
            .ended
            .unwrap_or_else(|| self.learning.started.saturating_add(learning_period))
    }

    /// The baseline of the executable `exe` (text form).
    pub fn get(&self, exe: &str) -> Option<&ExeBaseline> {
        self.executables.get(exe)
    }

    /// Evicts the least used executables beyond `caps.executables` (never `keep`) and the
    /// least used entries beyond the per-list caps; returns how many of each went.
    pub fn enforce_caps(
        &mut self,
        caps: &crate::config::Caps,
        min_processes: usize,
        keep: Option<&str>,
    ) -> (u64, u64) {
        let mut exes = 0;
        while self.executables.len() > caps.executables {
            let victim = self
                .executables
                .iter()
                .filter(|(k, _)| Some(k.as_str()) != keep)
                .min_by_key(|(_, b)| (b.accepted, b.processes, b.last_seen))
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    self.executables.remove(&k);
                    exes += 1;
                }
                None => break,
            }
        }
        let mut entries = 0;
        for b in self.executables.values_mut() {
            entries += b.enforce_caps(caps, min_processes);
        }
        self.evicted.executables += exes;
        self.evicted.entries += entries;
        (exes, entries)
    }

    /// Checks what serde cannot: numbers a real model can have, keys in text form, no raw
    /// control characters. Returns the first problem found, naming where it is.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format is '{}', not '{FORMAT}'",
                shown(&self.format)
            ));
        }
        for host in &self.hosts {
            check_text(host).map_err(|e| format!("hosts: {e}"))?;
        }
        for (exe, b) in &self.executables {
            let at = |what: &str, e: String| format!("executables.{}: {what}: {e}", shown(exe));
            check_abs(exe).map_err(|e| at("key", e))?;
            check_text(&b.name).map_err(|e| at("name", e))?;
            for e in &b.children.entries {
                check_abs(&e.key.exe).map_err(|x| at("children", x))?;
            }
            for e in &b.parents.entries {
                check_abs(&e.key.exe).map_err(|x| at("parents", x))?;
            }
            for e in &b.files.entries {
                check_abs(&e.key.path).map_err(|x| at("files", x))?;
            }
            for e in &b.users.entries {
                check_text(&e.key.user).map_err(|x| at("users", x))?;
            }
            for e in &b.network.entries {
                for ex in &e.examples {
                    check_text(ex).map_err(|x| at("network examples", x))?;
                }
            }
            let r = &b.resources;
            if !r.cpu.is_sane() || !r.rss.is_sane() {
                return Err(at("resources", "impossible mean or variance".into()));
            }
            if r.cpu_ceiling.is_some_and(|c| !c.is_finite() || c < 0.0) {
                return Err(at(
                    "resources.cpu_ceiling",
                    "not a finite number ≥ 0".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A string from the file, made safe to quote in an error message.
fn shown(s: &str) -> String {
    crate::text::terminal_safe(s.as_bytes())
}

/// Text in a model never holds raw control characters (the text form escapes them).
fn check_text(s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        return Err(format!("'{}' holds a control character", shown(s)));
    }
    Ok(())
}

/// An absolute path in text form.
fn check_abs(s: &str) -> Result<(), String> {
    check_text(s)?;
    if !s.starts_with('/') {
        return Err(format!("'{}' is not an absolute path", shown(s)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, count: u64, processes: u64, last: Secs) -> Entry<FileKey> {
        Entry {
            count,
            processes,
            last_seen: last,
            ..Entry::first(FileKey { path: path.into() }, 0)
        }
    }

    #[test]
    fn eviction_takes_pending_then_least_used_and_keeps_manual() {
        let mut d: Dimension<FileKey> = Dimension::new(0);
        d.entries.push(entry("/etc/a", 100, 5, 10));
        d.entries.push(entry("/etc/b", 1, 1, 50)); // pending: goes first despite being recent
        d.entries.push(entry("/etc/c", 3, 3, 5));
        d.entries.push(Entry::manual(
            FileKey {
                path: "/etc/m".into(),
            },
            Origin::Allowed,
            0,
        ));
        assert_eq!(d.make_room(4, 2), 1);
        let left: Vec<&str> = d.entries.iter().map(|e| e.key.path.as_str()).collect();
        assert!(!left.contains(&"/etc/b"), "{left:?}");
        assert_eq!(d.enforce_cap(1, 2), 2);
        assert_eq!(d.entries.len(), 1);
        assert_eq!(d.entries[0].key.path, "/etc/m", "manual entries go last");
    }

    #[test]
    fn stability_is_quiet_time_or_declared() {
        let mut d: Dimension<FileKey> = Dimension::new(100);
        assert!(!d.is_stable(150, 60));
        assert!(d.is_stable(160, 60));
        d.stable_since = Some(120);
        assert!(d.is_stable(120, 60) && !d.is_stable(119, 60));
        assert_eq!(d.stable_from(10), 110, "the earlier of the two");
    }

    #[test]
    fn model_caps_evict_least_used_executables() {
        let mut m = Model::new(0, "h");
        for (i, exe) in ["/bin/a", "/bin/b", "/bin/c"].into_iter().enumerate() {
            let mut b = ExeBaseline::new(exe, 0);
            b.processes = 10 - i as u64;
            m.executables.insert(exe.into(), b);
        }
        let caps = crate::config::Caps {
            executables: 2,
            ..Default::default()
        };
        assert_eq!(m.enforce_caps(&caps, 2, Some("/bin/c")), (1, 0));
        assert!(m.executables.contains_key("/bin/c"), "kept on request");
        assert!(!m.executables.contains_key("/bin/b"));
        assert_eq!(m.evicted.executables, 1);
    }

    #[test]
    fn validation_names_the_problem() {
        let mut m = Model::new(0, "h");
        assert_eq!(m.validate(), Ok(()));
        let mut b = ExeBaseline::new("/bin/x", 0);
        b.files.entries.push(entry("relative", 1, 1, 0));
        m.executables.insert("/bin/x".into(), b);
        let e = m.validate().expect_err("must fail");
        assert!(
            e.contains("executables./bin/x: files") && e.contains("absolute"),
            "{e}"
        );
        let mut m = Model::new(0, "h\x1b]0;pwned");
        m.hosts.insert("x".into());
        assert!(
            m.validate()
                .expect_err("must fail")
                .contains("control character")
        );
        assert_eq!(ExeBaseline::new("/usr/sbin/nginx", 0).name, "nginx");
    }
}
