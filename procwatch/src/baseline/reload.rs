//! Taking a model file back in while learning (SIGHUP after `baseline allow/accept/forget`)
//! without dropping what was learned since the last save.
//!
//! The file is the reviewed truth for what a person changed; the learner's model is the truth
//! for what was observed. Both started from the same saved revision, and edits only add
//! entries (`allow`, `accept`), mark things accepted, or remove whole executables (`forget`).
//! So the file is taken as it is, and the learner's model is folded in: an entry in both keeps
//! the file's origin with the larger counts (the learner's are the file's plus what it saw
//! since; counts are never added, which would count the saved part twice); an entry or an
//! executable only the learner has is kept when it is new since the last save, and dropped
//! when the file had it then (`forget` removed it).
use std::collections::BTreeSet;

use super::{
    merge::MergeLimits,
    model::{Dimension, Entry, ExeBaseline, Key, Model, Resources, Secs},
};

/// `file` (just read) with what `learned` (the learner's model) holds beyond it. `synced` are
/// the executables the file held when it was last written or read by this learner.
pub fn keep_learned(
    file: Model,
    learned: &Model,
    synced: &BTreeSet<String>,
    limits: MergeLimits<'_>,
    now: Secs,
) -> Model {
    let mut out = file;
    if out.learning.ended.is_none() {
        out.learning.ended = learned.learning.ended;
        out.learning.trained |= learned.learning.trained;
    }
    out.evicted.executables = out.evicted.executables.max(learned.evicted.executables);
    out.evicted.entries = out.evicted.entries.max(learned.evicted.entries);
    for (exe, m) in &learned.executables {
        match out.executables.get_mut(exe) {
            Some(f) => {
                keep_exe(f, m);
                f.files
                    .tidy(limits.generalize_after, limits.min_processes, now);
            }
            // New since the last save: learned meanwhile.
            None if !synced.contains(exe) => {
                out.executables.insert(exe.clone(), m.clone());
            }
            // In the file then, not now: a person forgot it.
            None => {}
        }
    }
    out.enforce_caps(limits.caps, limits.min_processes, None);
    out
}

fn keep_exe(f: &mut ExeBaseline, m: &ExeBaseline) {
    f.first_seen = f.first_seen.min(m.first_seen);
    f.last_seen = f.last_seen.max(m.last_seen);
    f.processes = f.processes.max(m.processes);
    f.accepted |= m.accepted;
    keep_dim(&mut f.network, &m.network);
    keep_dim(&mut f.children, &m.children);
    keep_dim(&mut f.parents, &m.parents);
    keep_dim(&mut f.users, &m.users);
    keep_dim(&mut f.files, &m.files);
    keep_dim(&mut f.flags, &m.flags);
    keep_resources(&mut f.resources, &m.resources);
    let (x, y) = (&mut f.evicted, &m.evicted);
    x.network = x.network.max(y.network);
    x.children = x.children.max(y.children);
    x.parents = x.parents.max(y.parents);
    x.users = x.users.max(y.users);
    x.files = x.files.max(y.files);
}

fn keep_dim<K: Key>(f: &mut Dimension<K>, m: &Dimension<K>) {
    f.changed_at = f.changed_at.max(m.changed_at);
    f.stable_since = f.stable_since.or(m.stable_since);
    for e in &m.entries {
        match f.entries.iter_mut().find(|x| x.key == e.key) {
            Some(mine) => keep_entry(mine, e),
            None => f.entries.push(e.clone()),
        }
    }
}

/// The same entry in the file and in the learner: the learner's counts include the file's.
fn keep_entry<K>(f: &mut Entry<K>, m: &Entry<K>) {
    f.count = f.count.max(m.count);
    // The learner's contributors are the file's (as saved) and those seen since.
    if m.processes >= f.processes {
        f.contributors.clone_from(&m.contributors);
    }
    f.processes = f.processes.max(m.processes);
    f.first_seen = f.first_seen.min(m.first_seen);
    f.last_seen = f.last_seen.max(m.last_seen);
    for x in &m.examples {
        f.add_example(x.clone());
    }
}

fn keep_resources(f: &mut Resources, m: &Resources) {
    f.changed_at = f.changed_at.max(m.changed_at);
    f.stable_since = f.stable_since.or(m.stable_since);
    f.processes = f.processes.max(m.processes);
    if m.cpu.n >= f.cpu.n {
        f.cpu = m.cpu;
    }
    if m.rss.n >= f.rss.n {
        f.rss = m.rss;
    }
    f.cpu_ceiling = f.cpu_ceiling.or(m.cpu_ceiling);
    f.rss_ceiling = f.rss_ceiling.or(m.rss_ceiling);
}
