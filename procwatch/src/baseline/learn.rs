//! Learning and judging: observations of processes go in, the model learns while an
//! executable (or one of its dimensions) is still learning, and anomalies come out once it
//! is stable.
//!
//! - Model-wide learning runs for `learning_period` from the model's creation (or until
//!   `train` ends it, which declares everything stable at once).
//! - An executable first seen after that gets its own `new_executable_learning` window and an
//!   `unknown_executable` anomaly for each of its processes in that window.
//! - Each dimension (network, children, parents, users, files, flags, resources) is stable
//!   once nothing new was learned in it for `stable_after`. Outside the learning window a
//!   stable dimension is frozen: it learns nothing more and raises anomalies; an unstable one
//!   keeps learning and raises none.
//! - Poisoning: a learned entry becomes normal only once seen in `min_processes` distinct
//!   processes; a process flagged by a rule that known behaviour never silences stops
//!   teaching the model, and what it taught that is not yet normal elsewhere is taken back.
use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
};

use super::{
    anomaly::{self, Anomaly, AnomalyRule, Confidence, Observed, rarity_of_spike, severity},
    model::{
        Dimension, Entry, ExeBaseline, ExeKey, FileKey, Flag, FlagKey, Key, Model, Secs, UserKey,
    },
    net::{Destination, Direction, NetKey},
    paths::{self, Watched},
    quote,
    session::{
        CoversKey, Dim, DimAccess, Lists, Recorded, Session, count_evicted, judge, learn_at,
        record, withdraw,
    },
    stats::Welford,
};
use crate::config::{self, Rule};

/// One thing a process did (or is), as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour<'a> {
    /// The process started running its executable (exec), with its parent's executable and
    /// its user (name, or uid as text when it has none).
    Exec {
        /// The parent's executable, when known.
        parent_exe: Option<&'a Path>,
        /// The user it runs as.
        user: Option<&'a str>,
    },
    /// It spawned a child running `child_exe`.
    Spawn {
        /// The child's executable.
        child_exe: &'a Path,
    },
    /// It connected, accepted or listens (see [`Destination`]).
    Connect(Destination),
    /// It opened a file (absolute path as the kernel read it).
    FileOpen(&'a Path),
    /// A resource sample.
    Sample {
        /// CPU over the last window, percent of one core.
        cpu_pct: Option<f64>,
        /// Resident set size.
        rss_bytes: Option<u64>,
    },
    /// It made writable and executable memory.
    WxMem,
    /// It ptrace-attached to another process.
    Ptrace,
}

/// One observation: which process, running what, did what.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation<'a> {
    /// The process.
    pub process: ProcessId,
    /// Its executable (canonical path, as the kernel reports it).
    pub exe: &'a Path,
    /// What it did.
    pub behaviour: Behaviour<'a>,
}

pub use super::session::{MAX_REPORTED, MAX_SESSION_ANOMALIES, MAX_TAUGHT, ProcessId};

/// Counters of what the learner did, for stats and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LearnStats {
    /// Observations received.
    pub observations: u64,
    /// Observations ignored: relative or unusable paths, non-finite samples.
    pub ignored: u64,
    /// File opens outside the watched prefixes.
    pub unwatched: u64,
    /// Observations not learned because their process was flagged by a never-silenced rule.
    pub not_learned: u64,
    /// Processes that stopped teaching the model.
    pub tainted: u64,
    /// Process sessions dropped because too many were open.
    pub sessions_evicted: u64,
    /// Anomalies reported.
    pub anomalies: u64,
    /// Anomalies not reported because their process already had [`MAX_REPORTED`] distinct ones.
    pub anomalies_capped: u64,
}

/// Longest user name learned (login names are at most 32 bytes on Linux).
const MAX_USER: usize = 64;

/// Settings in the units the learner works in.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) cfg: config::Baseline,
    watched: Watched,
    period: Secs,
    pub(super) stable_after: Secs,
    new_window: Secs,
    pub(super) min: usize,
}

impl Settings {
    fn new(cfg: &config::Baseline) -> Self {
        Self {
            watched: Watched::new(cfg.watched_prefixes.iter().map(|p| p.as_path())),
            period: cfg.learning_period.as_secs(),
            stable_after: cfg.stable_after.as_secs(),
            new_window: cfg.new_executable_learning.as_secs(),
            min: cfg.min_processes,
            cfg: cfg.clone(),
        }
    }

    /// `mean + spike_sigma × max(σ, floor)`.
    pub(super) fn upper(&self, w: &Welford, floor: f64) -> f64 {
        w.mean + self.cfg.spike_sigma * w.std_dev().max(floor)
    }

    /// Enough samples from enough processes to judge a spike.
    pub(super) fn ready(&self, r: &super::model::Resources, w: &Welford) -> bool {
        w.n >= self.cfg.resource_min_samples as u64 && r.processes >= self.min as u64
    }
}

/// The learner: owns the model while procwatch runs.
#[derive(Debug)]
pub struct Learner {
    pub(super) model: Model,
    pub(super) set: Settings,
    sessions: HashMap<ProcessId, Session>,
    max_sessions: usize,
    stats: LearnStats,
    dirty: bool,
    /// The executables the model file held when this learner last read or wrote it (what a
    /// reload must not bring back when the file no longer has them: `baseline forget`).
    synced: BTreeSet<String>,
    /// The executables of the snapshot being saved (they become `synced` once it is).
    saving: Option<BTreeSet<String>>,
}

/// What [`Learner::reload`] did with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The file is the revision this learner last saved or read: nothing changed there, so
    /// the model in force (that revision plus what was learned since) stays.
    Unchanged,
    /// Someone changed the file: it is in force, with what was learned since folded in.
    Merged,
}

impl Learner {
    /// A learner over `model`, keeping at most `max_sessions` live processes' contributions.
    pub fn new(model: Model, cfg: &config::Baseline, max_sessions: usize) -> Self {
        Self {
            synced: model.executables.keys().cloned().collect(),
            saving: None,
            model,
            set: Settings::new(cfg),
            sessions: HashMap::new(),
            max_sessions: max_sessions.max(1),
            stats: LearnStats::default(),
            dirty: false,
        }
    }

    /// The model as it stands.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model, to edit by hand (the API's accept); it is saved with the next save.
    pub fn model_mut(&mut self) -> &mut Model {
        self.dirty = true;
        &mut self.model
    }

    /// The model, giving up the learner.
    pub fn into_model(self) -> Model {
        self.model
    }

    /// Whether the model changed since the last [`Learner::mark_saved`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Records that the model was saved as revision `revision` at `now`.
    pub fn mark_saved(&mut self, revision: u64, now: Secs) {
        self.model.revision = revision;
        self.model.saved = Some(now);
        self.dirty = false;
    }

    /// A copy of the model to save, marking it clean: what is learned after this makes it
    /// dirty again, so saving this copy never hides later learning.
    pub fn snapshot(&mut self) -> Model {
        self.dirty = false;
        self.saving = Some(self.model.executables.keys().cloned().collect());
        self.model.clone()
    }

    /// The save of the last [`Learner::snapshot`] failed: the model is unsaved again.
    pub fn save_failed(&mut self) {
        self.dirty = true;
        self.saving = None;
    }

    /// The last [`Learner::snapshot`] was saved as `revision` at `now`.
    pub fn snapshot_saved(&mut self, revision: u64, now: Secs) {
        self.model.revision = revision;
        self.model.saved = Some(now);
        if let Some(saved) = self.saving.take() {
            self.synced = saved;
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> LearnStats {
        self.stats
    }

    /// Takes a new model (reloaded from disk after `baseline allow`, SIGHUP). Live processes
    /// keep their reported anomalies, but what they taught the old model can no longer be
    /// taken back from the new one.
    pub fn replace_model(&mut self, model: Model) {
        self.synced = model.executables.keys().cloned().collect();
        self.saving = None;
        self.model = model;
        for s in self.sessions.values_mut() {
            s.learned.clear();
            s.counted.clear();
            s.cpu = Welford::default();
            s.rss = Welford::default();
            s.in_resources = false;
        }
        self.dirty = false;
    }

    /// Takes the model file in again (SIGHUP) without dropping what was learned since the
    /// last save: an unchanged file (the revision last saved or read) leaves the model in
    /// force as it is; a changed one (`baseline allow/accept/forget`) is put in force with
    /// the learning since folded in ([`super::reload::keep_learned`]). Live processes keep
    /// their reported anomalies; after a merge, what they taught can no longer be taken back.
    pub fn reload(&mut self, file: Model, now: Secs) -> Reloaded {
        if file.revision == self.model.revision && file.created == self.model.created {
            return Reloaded::Unchanged;
        }
        let limits = super::merge::MergeLimits {
            caps: &self.set.cfg.caps,
            min_processes: self.set.min,
            generalize_after: self.set.cfg.generalize_after,
        };
        let synced = std::mem::take(&mut self.synced);
        let merged = super::reload::keep_learned(file, &self.model, &synced, limits, now);
        let learned_since = self.dirty || self.saving.is_some();
        self.replace_model(merged);
        // What was learned since the last save is in this model only until it is saved.
        self.dirty = learned_since;
        Reloaded::Merged
    }

    /// New settings (config reload).
    pub fn set_config(&mut self, cfg: &config::Baseline) {
        self.set = Settings::new(cfg);
    }

    /// Whether model-wide learning is still on at `now`.
    pub fn is_learning(&self, now: Secs) -> bool {
        self.model.learning.ended.is_none() && now < self.model.learning_end(self.set.period)
    }

    /// When model-wide learning ends (or ended).
    pub fn learning_end(&self) -> Secs {
        self.model.learning_end(self.set.period)
    }

    /// Ends model-wide learning once `learning_period` has passed; true when it just did.
    pub fn end_learning_if_due(&mut self, now: Secs) -> bool {
        if self.model.learning.ended.is_none() && now >= self.model.learning_end(self.set.period) {
            self.model.learning.ended = Some(self.model.learning_end(self.set.period));
            self.dirty = true;
            return true;
        }
        false
    }

    /// Ends learning as `train` does: what was seen counts as learned and stable now.
    pub fn finish_training(&mut self, now: Secs) {
        self.model.learning.ended = Some(now);
        self.model.learning.trained = true;
        for b in self.model.executables.values_mut() {
            b.learning_until = None;
            b.declare_stable(now);
        }
        self.dirty = true;
    }

    /// Whether `b` is inside a learning window at `now`.
    pub(super) fn exe_learning(&self, b: &ExeBaseline, now: Secs) -> bool {
        self.is_learning(now) || b.learning_until.is_some_and(|u| now < u)
    }

    /// Learns from or judges one observation; returns the anomalies it raises (each at most
    /// once per process).
    pub fn observe(&mut self, obs: &Observation<'_>, now: Secs) -> Vec<Anomaly> {
        self.stats.observations += 1;
        self.end_learning_if_due(now);
        let mut out = Vec::new();
        let Some(exe) = self.open_session(obs, now, &mut out) else {
            self.stats.ignored += 1;
            return out;
        };
        let Some(b) = self.model.executables.get(&exe) else {
            return out;
        };
        let learning = self.exe_learning(b, now);
        self.dirty = true;
        match obs.behaviour {
            Behaviour::Exec { parent_exe, user } => {
                if let Some(p) = parent_exe.and_then(paths::encode) {
                    let key = ExeKey { exe: p };
                    self.set_item(obs.process, Dim::Parents, key, None, learning, now);
                }
                if let Some(u) = user.filter(|u| u.len() <= MAX_USER) {
                    let user = crate::text::terminal_safe(u.as_bytes());
                    let key = UserKey { user };
                    self.set_item(obs.process, Dim::Users, key, None, learning, now);
                }
            }
            Behaviour::Spawn { child_exe } => match paths::encode(child_exe) {
                Some(c) => {
                    let key = ExeKey { exe: c.clone() };
                    if let Some(rarity) =
                        self.set_item(obs.process, Dim::Children, key, None, learning, now)
                    {
                        self.report_child(obs.process, &exe, c, rarity, &mut out);
                    }
                }
                None => self.stats.ignored += 1,
            },
            Behaviour::Connect(d) => {
                let key = NetKey::of(&d);
                let example = Some(d.addr.to_string());
                if let Some(rarity) =
                    self.set_item(obs.process, Dim::Network, key, example, learning, now)
                {
                    self.report_network(obs.process, &exe, &d, rarity, &mut out);
                }
            }
            Behaviour::FileOpen(path) => match paths::encode_file(path) {
                Some(f) if self.set.watched.watches(&f) => {
                    if let Some(rarity) = self.file(obs.process, &exe, &f, learning, now) {
                        self.report_file(obs.process, &exe, f, rarity, &mut out);
                    }
                }
                Some(_) => self.stats.unwatched += 1,
                None => self.stats.ignored += 1,
            },
            Behaviour::Sample { cpu_pct, rss_bytes } => {
                let cpu = cpu_pct.filter(|x| x.is_finite() && *x >= 0.0);
                if cpu_pct.is_some() && cpu.is_none() {
                    self.stats.ignored += 1;
                }
                self.sample(obs.process, &exe, cpu, rss_bytes, learning, now, &mut out);
            }
            Behaviour::WxMem => {
                let key = FlagKey { flag: Flag::WxMem };
                self.set_item(obs.process, Dim::Flags, key, None, learning, now);
            }
            Behaviour::Ptrace => {
                let key = FlagKey { flag: Flag::Ptrace };
                self.set_item(obs.process, Dim::Flags, key, None, learning, now);
            }
        }
        out
    }

    /// Finds or opens the process's session (a new executable image is a new session) and
    /// returns its executable's model key.
    fn open_session(
        &mut self,
        obs: &Observation<'_>,
        now: Secs,
        out: &mut Vec<Anomaly>,
    ) -> Option<String> {
        if let Some(s) = self.sessions.get_mut(&obs.process) {
            // The common case: the same image as when the session opened.
            if s.raw == obs.exe {
                s.last_active = now;
                let exe = s.exe.clone();
                if let Some(b) = self.model.executables.get_mut(&exe) {
                    b.last_seen = b.last_seen.max(now);
                    return Some(exe);
                }
                // Evicted from the model meanwhile: start over as a new process of it.
                self.sessions.remove(&obs.process);
            }
        }
        let exe = paths::encode(obs.exe)?;
        if self.sessions.len() >= self.max_sessions {
            self.evict_session();
        }
        let learning_now = self.is_learning(now);
        let new_window = now.saturating_add(self.set.new_window);
        let created = !self.model.executables.contains_key(&exe);
        let b = self
            .model
            .executables
            .entry(exe.clone())
            .or_insert_with(|| {
                let mut b = ExeBaseline::new(&exe, now);
                if !learning_now {
                    b.learning_until = Some(new_window);
                }
                b
            });
        b.processes += 1;
        b.last_seen = b.last_seen.max(now);
        let unknown = b.learning_until.filter(|u| now < *u && !b.accepted);
        let processes = b.processes;
        if created && self.model.executables.len() > self.set.cfg.caps.executables {
            self.model
                .enforce_caps(&self.set.cfg.caps, self.set.min, Some(&exe));
        }
        self.dirty = true;
        let mut s = Session {
            id: obs.process,
            exe: exe.clone(),
            raw: obs.exe.to_path_buf(),
            last_active: now,
            ..Session::default()
        };
        if let Some(until) = unknown {
            let a = Anomaly {
                rule: AnomalyRule::UnknownExecutable,
                severity: self.set.cfg.unknown_executable,
                exe: exe.clone(),
                detail: format!("{exe} was never seen while learning"),
                baseline: format!("none yet; learning it until {}", anomaly::rfc3339(until)),
                observed: Observed::Executable,
                confidence: Confidence {
                    observations: 0,
                    processes,
                    stable_since: None,
                },
            };
            count(&mut self.stats, record(&mut s, a, out));
        }
        self.sessions.insert(obs.process, s);
        Some(exe)
    }

    /// Drops the least recently active session.
    fn evict_session(&mut self) {
        if let Some(victim) = self
            .sessions
            .iter()
            .min_by_key(|(_, s)| s.last_active)
            .map(|(k, _)| *k)
        {
            self.sessions.remove(&victim);
            self.stats.sessions_evicted += 1;
        }
    }

    /// Learns or checks a set member. Returns the rarity when it is an anomaly.
    fn set_item<K: Key + CoversKey>(
        &mut self,
        process: ProcessId,
        dim: Dim,
        key: K,
        example: Option<String>,
        learning: bool,
        now: Secs,
    ) -> Option<f64>
    where
        Lists: DimAccess<K>,
    {
        let min = self.set.min;
        let stable_after = self.set.stable_after;
        let cap = self.cap(dim);
        let Self {
            model,
            sessions,
            stats,
            ..
        } = self;
        let s = sessions.get_mut(&process)?;
        let b = model.executables.get_mut(&s.exe)?;
        let d = Lists::dim_mut(b, dim);
        if learning || !d.is_stable(now, stable_after) {
            if s.tainted || s.learned.len() >= MAX_TAUGHT {
                stats.not_learned += 1;
                return None;
            }
            let pos = d.position(&key);
            let n = learn_at(d, dim, pos, key, example, s, cap, min, now);
            count_evicted(&mut b.evicted, dim, n);
            return None;
        }
        judge(d, dim, &key, |e, k| e.key.covers_key(k), s, min, now)
    }

    fn cap(&self, dim: Dim) -> usize {
        let c = &self.set.cfg.caps;
        match dim {
            Dim::Network => c.network,
            Dim::Children => c.children,
            Dim::Parents => c.parents,
            Dim::Users => c.users,
            Dim::Files => c.files,
            Dim::Flags => 8,
        }
    }

    /// Learns or checks an opened file (text form, watched). Returns the rarity when it is an
    /// anomaly.
    fn file(
        &mut self,
        process: ProcessId,
        exe: &str,
        path: &str,
        learning: bool,
        now: Secs,
    ) -> Option<f64> {
        let min = self.set.min;
        let stable_after = self.set.stable_after;
        let cap = self.set.cfg.caps.files;
        let generalize_after = self.set.cfg.generalize_after;
        let Self {
            model,
            sessions,
            stats,
            ..
        } = self;
        let s = sessions.get_mut(&process)?;
        let b = model.executables.get_mut(exe)?;
        let sensitive = paths::is_sensitive(path);
        let covers = |e: &Entry<FileKey>, p: &FileKey| e.covers_file(&p.path, sensitive);
        let key = FileKey { path: path.into() };
        if learning || !b.files.is_stable(now, stable_after) {
            if s.tainted || s.learned.len() >= MAX_TAUGHT {
                stats.not_learned += 1;
                return None;
            }
            // An exact entry first, else a pattern that covers it.
            let pos = b
                .files
                .position(&key)
                .or_else(|| b.files.entries.iter().position(|e| covers(e, &key)));
            let ev = learn_at(&mut b.files, Dim::Files, pos, key, None, s, cap, min, now);
            b.evicted.files += ev;
            if !sensitive {
                b.files
                    .generalise(paths::parent_and_name(path).0, generalize_after, min, now);
            }
            return None;
        }
        let rarity = judge(&mut b.files, Dim::Files, &key, covers, s, min, now)?;
        if sensitive {
            return Some(1.0);
        }
        // A stranger in a directory it knows is less rare than one in a new place.
        let (dir, _) = paths::parent_and_name(path);
        let sibling = b.files.normal(min).iter().any(|e| {
            let (d, _) = paths::parent_and_name(&e.key.path);
            paths::matches(d, dir)
        });
        Some(if sibling && rarity >= 1.0 {
            0.8
        } else {
            rarity
        })
    }

    /// Learns from or checks a resource sample.
    #[allow(clippy::too_many_arguments)]
    fn sample(
        &mut self,
        process: ProcessId,
        exe: &str,
        cpu: Option<f64>,
        rss: Option<u64>,
        learning: bool,
        now: Secs,
        out: &mut Vec<Anomaly>,
    ) {
        let set = &self.set;
        let Self {
            model,
            sessions,
            stats,
            ..
        } = self;
        let Some(s) = sessions.get_mut(&process) else {
            return;
        };
        let Some(b) = model.executables.get_mut(exe) else {
            return;
        };
        let r = &mut b.resources;
        let rss = rss.map(|x| x as f64);
        if learning || !r.is_stable(now, set.stable_after) {
            if s.tainted || s.learned.len() >= MAX_TAUGHT {
                stats.not_learned += 1;
                return;
            }
            let mut changed = false;
            if let Some(x) = cpu {
                changed |= !set.ready(r, &r.cpu) || x > set.upper(&r.cpu, set.cfg.cpu_std_floor);
                r.cpu.push(x);
                s.cpu.push(x);
            }
            if let Some(x) = rss {
                let floor = set.cfg.rss_std_floor as f64;
                changed |= !set.ready(r, &r.rss) || x > set.upper(&r.rss, floor);
                r.rss.push(x);
                s.rss.push(x);
            }
            if !s.in_resources && (cpu.is_some() || rss.is_some()) {
                s.in_resources = true;
                r.processes += 1;
            }
            if changed {
                r.changed_at = now;
            }
            return;
        }
        let stable_since = Some(r.stable_from(set.stable_after));
        let confidence = |w: &Welford| Confidence {
            observations: w.n,
            processes: b.processes,
            stable_since,
        };
        let mut found = Vec::new();
        if let Some(x) = cpu {
            let floor = set.cfg.cpu_std_floor;
            let over_ceiling = r.cpu_ceiling.is_none_or(|c| x > c);
            if set.ready(r, &r.cpu) && x > set.upper(&r.cpu, floor) && over_ceiling {
                let z = (x - r.cpu.mean) / r.cpu.std_dev().max(floor);
                let c = confidence(&r.cpu);
                found.push(Anomaly {
                    rule: AnomalyRule::ResourceSpike,
                    severity: severity(rarity_of_spike(z, set.cfg.spike_sigma), c.score()),
                    exe: exe.to_string(),
                    detail: format!("CPU {}", anomaly::pct(x)),
                    baseline: quote::cpu(&r.cpu),
                    observed: Observed::Cpu { pct: x },
                    confidence: c,
                });
            }
        }
        if let Some(x) = rss {
            let floor = set.cfg.rss_std_floor as f64;
            let over_ceiling = r.rss_ceiling.is_none_or(|c| x > c as f64);
            if set.ready(r, &r.rss) && x > set.upper(&r.rss, floor) && over_ceiling {
                let z = (x - r.rss.mean) / r.rss.std_dev().max(floor);
                let c = confidence(&r.rss);
                found.push(Anomaly {
                    rule: AnomalyRule::ResourceSpike,
                    severity: severity(rarity_of_spike(z, set.cfg.spike_sigma), c.score()),
                    exe: exe.to_string(),
                    detail: format!("RSS {}", anomaly::bytes(x)),
                    baseline: quote::rss(&r.rss),
                    observed: Observed::Rss { bytes: x as u64 },
                    confidence: c,
                });
            }
        }
        for a in found {
            count(stats, record(s, a, out));
        }
    }

    fn report_child(
        &mut self,
        process: ProcessId,
        exe: &str,
        child: String,
        rarity: f64,
        out: &mut Vec<Anomaly>,
    ) {
        let Some(b) = self.model.executables.get(exe) else {
            return;
        };
        let c = self.confidence_of(b, &b.children);
        let a = Anomaly {
            rule: AnomalyRule::ProcessSpawnUnknown,
            severity: severity(rarity, c.score()),
            exe: exe.to_string(),
            detail: format!("{} spawned {child}", b.name),
            baseline: quote::children(b, self.set.min),
            observed: Observed::Child { exe: child },
            confidence: c,
        };
        self.emit(process, a, out);
    }

    fn report_network(
        &mut self,
        process: ProcessId,
        exe: &str,
        d: &Destination,
        rarity: f64,
        out: &mut Vec<Anomaly>,
    ) {
        let Some(b) = self.model.executables.get(exe) else {
            return;
        };
        let key = NetKey::of(d);
        let min = self.set.min;
        // The port known at another class of address is less rare than a new port.
        let port_known = b.network.normal(min).iter().any(|e| {
            e.key.proto == key.proto && e.key.direction == key.direction && e.key.port == key.port
        });
        let rarity = if port_known && rarity >= 1.0 {
            0.75
        } else {
            rarity
        };
        let c = self.confidence_of(b, &b.network);
        let proto = d.proto.as_str().to_ascii_uppercase();
        let detail = match d.direction {
            Direction::Outbound => format!("Unknown {proto} connection to {}", d.addr_port()),
            Direction::Inbound => format!(
                "Unknown inbound {proto} connection from {} to port {}",
                d.addr, d.port
            ),
            Direction::Listen => format!("Unknown {proto} listener on {}", d.addr_port()),
        };
        let a = Anomaly {
            rule: AnomalyRule::NetworkUnknownConnection,
            severity: severity(rarity, c.score()),
            exe: exe.to_string(),
            detail,
            baseline: quote::network(b, &key, min),
            observed: Observed::Connection {
                addr: d.addr,
                class: key.class,
                port: d.port,
                proto: d.proto,
                direction: d.direction,
            },
            confidence: c,
        };
        self.emit(process, a, out);
    }

    fn report_file(
        &mut self,
        process: ProcessId,
        exe: &str,
        path: String,
        rarity: f64,
        out: &mut Vec<Anomaly>,
    ) {
        let Some(b) = self.model.executables.get(exe) else {
            return;
        };
        let c = self.confidence_of(b, &b.files);
        let sensitive = if paths::is_sensitive(&path) {
            " (a sensitive file: learned patterns never cover it)"
        } else {
            ""
        };
        let a = Anomaly {
            rule: AnomalyRule::FileAccessUnknown,
            severity: severity(rarity, c.score()),
            exe: exe.to_string(),
            detail: format!("Access to {path}{sensitive}"),
            baseline: quote::files(b, self.set.min),
            observed: Observed::File { path },
            confidence: c,
        };
        self.emit(process, a, out);
    }

    fn confidence_of<K: Key>(&self, b: &ExeBaseline, d: &Dimension<K>) -> Confidence {
        Confidence {
            observations: d.observations(),
            processes: b.processes,
            stable_since: Some(d.stable_from(self.set.stable_after)),
        }
    }

    fn emit(&mut self, process: ProcessId, a: Anomaly, out: &mut Vec<Anomaly>) {
        if let Some(s) = self.sessions.get_mut(&process) {
            count(&mut self.stats, record(s, a, out));
        }
    }

    /// Tells the learner which heuristic rules hold for a process. One that known behaviour
    /// never silences (`baseline.suppress` off) stops the process teaching the model, and what
    /// it taught is taken back.
    pub fn note_findings(&mut self, process: ProcessId, rules: &[Rule]) {
        if !rules.iter().any(|r| !self.set.cfg.suppress.get(*r)) {
            return;
        }
        let Self {
            model,
            sessions,
            stats,
            dirty,
            ..
        } = self;
        let Some(s) = sessions.get_mut(&process) else {
            return;
        };
        if s.tainted {
            return;
        }
        s.tainted = true;
        stats.tainted += 1;
        *dirty = true;
        let Some(b) = model.executables.get_mut(&s.exe) else {
            return;
        };
        for ((dim, id), count) in s.learned.drain() {
            let counted = s.counted.remove(&(dim, id.clone()));
            match dim {
                Dim::Network => withdraw(&mut b.network, &id, count, counted, s.id),
                Dim::Children => withdraw(&mut b.children, &id, count, counted, s.id),
                Dim::Parents => withdraw(&mut b.parents, &id, count, counted, s.id),
                Dim::Users => withdraw(&mut b.users, &id, count, counted, s.id),
                Dim::Files => withdraw(&mut b.files, &id, count, counted, s.id),
                Dim::Flags => withdraw(&mut b.flags, &id, count, counted, s.id),
            }
        }
        let r = &mut b.resources;
        r.cpu = r.cpu.without(&s.cpu);
        r.rss = r.rss.without(&s.rss);
        if s.in_resources {
            r.processes = r.processes.saturating_sub(1);
            s.in_resources = false;
        }
        s.cpu = Welford::default();
        s.rss = Welford::default();
    }

    /// The process exited: its session closes (what it taught stays).
    pub fn process_exited(&mut self, process: ProcessId) {
        self.sessions.remove(&process);
    }

    /// The anomalies reported for a live process so far.
    pub fn anomalies(&self, process: ProcessId) -> &[Anomaly] {
        self.sessions
            .get(&process)
            .map_or(&[], |s| s.anomalies.as_slice())
    }

    /// `ml_score`: the highest severity among the process's anomalies (0 without any).
    pub fn ml_score(&self, process: ProcessId) -> f64 {
        self.anomalies(process)
            .iter()
            .map(|a| a.severity)
            .fold(0.0, f64::max)
    }
}

/// Counts what [`record`] did.
fn count(stats: &mut LearnStats, r: Recorded) {
    match r {
        Recorded::New => stats.anomalies += 1,
        Recorded::Capped => stats.anomalies_capped += 1,
        Recorded::Repeat => {}
    }
}

#[cfg(test)]
#[path = "learn_tests.rs"]
mod tests;
