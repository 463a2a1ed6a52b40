//! Combining models learned on several hosts into one: counts add, means and variances merge
//! exactly, sets union, the caps still hold.
use super::model::{Dimension, Entry, ExeBaseline, Key, Learning, Model, Origin, Resources, Secs};

/// What a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeReport {
    /// Models combined.
    pub models: usize,
    /// Executables in the result.
    pub executables: usize,
    /// Executables present in more than one input.
    pub shared: usize,
    /// Executables evicted by `caps.executables`.
    pub evicted_executables: u64,
    /// List entries evicted by the per-list caps.
    pub evicted_entries: u64,
}

/// Settings a merge keeps.
#[derive(Debug, Clone, Copy)]
pub struct MergeLimits<'a> {
    /// The caps the result must respect.
    pub caps: &'a crate::config::Caps,
    /// `min_processes`, which decides which entries eviction spares.
    pub min_processes: usize,
    /// `generalize_after`, applied again to the combined files.
    pub generalize_after: usize,
}

/// Merges `models` (at least one) into a new model as of `now`.
pub fn merge(models: &[Model], limits: MergeLimits<'_>, now: Secs) -> (Model, MergeReport) {
    let mut out = Model::new(now, "");
    out.hosts.clear();
    let mut report = MergeReport {
        models: models.len(),
        ..MergeReport::default()
    };
    if let Some(first) = models.first() {
        out.created = first.created;
        out.learning = first.learning;
    }
    for (i, m) in models.iter().enumerate() {
        out.created = out.created.min(m.created);
        out.hosts.extend(m.hosts.iter().cloned());
        if i > 0 {
            out.learning = merge_learning(out.learning, m.learning);
        }
        out.evicted.executables += m.evicted.executables;
        out.evicted.entries += m.evicted.entries;
        for (exe, b) in &m.executables {
            match out.executables.get_mut(exe) {
                Some(mine) => {
                    merge_exe(mine, b);
                    report.shared += 1;
                }
                None => {
                    out.executables.insert(exe.clone(), b.clone());
                }
            }
        }
    }
    for b in out.executables.values_mut() {
        b.files
            .tidy(limits.generalize_after, limits.min_processes, now);
    }
    let (exes, entries) = out.enforce_caps(limits.caps, limits.min_processes, None);
    report.evicted_executables = exes;
    report.evicted_entries = entries;
    report.executables = out.executables.len();
    (out, report)
}

/// Learning ended only when it ended everywhere; trained only when every input was.
fn merge_learning(a: Learning, b: Learning) -> Learning {
    Learning {
        started: a.started.min(b.started),
        ended: match (a.ended, b.ended) {
            (Some(x), Some(y)) => Some(x.max(y)),
            _ => None,
        },
        trained: a.trained && b.trained,
    }
}

/// Stable by declaration only when both were.
fn both(a: Option<Secs>, b: Option<Secs>) -> Option<Secs> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        _ => None,
    }
}

fn merge_exe(a: &mut ExeBaseline, b: &ExeBaseline) {
    a.first_seen = a.first_seen.min(b.first_seen);
    a.last_seen = a.last_seen.max(b.last_seen);
    a.processes += b.processes;
    // Learned in a model-wide period anywhere counts as learned in one.
    a.learning_until = match (a.learning_until, b.learning_until) {
        (Some(x), Some(y)) => Some(x.max(y)),
        _ => None,
    };
    a.accepted |= b.accepted;
    merge_dim(&mut a.network, &b.network);
    merge_dim(&mut a.children, &b.children);
    merge_dim(&mut a.parents, &b.parents);
    merge_dim(&mut a.users, &b.users);
    merge_dim(&mut a.files, &b.files);
    merge_dim(&mut a.flags, &b.flags);
    merge_resources(&mut a.resources, &b.resources);
    let (x, y) = (&mut a.evicted, &b.evicted);
    x.network += y.network;
    x.children += y.children;
    x.parents += y.parents;
    x.users += y.users;
    x.files += y.files;
}

fn merge_dim<K: Key>(a: &mut Dimension<K>, b: &Dimension<K>) {
    a.changed_at = a.changed_at.max(b.changed_at);
    a.stable_since = both(a.stable_since, b.stable_since);
    for e in &b.entries {
        match a.entries.iter_mut().find(|x| x.key == e.key) {
            Some(mine) => merge_entry(mine, e),
            None => a.entries.push(e.clone()),
        }
    }
}

/// The same behaviour on two hosts: different processes, so the process counts add too.
fn merge_entry<K>(a: &mut Entry<K>, b: &Entry<K>) {
    a.count += b.count;
    a.processes += b.processes;
    a.first_seen = a.first_seen.min(b.first_seen);
    a.last_seen = a.last_seen.max(b.last_seen);
    if a.origin == Origin::Learned {
        a.origin = b.origin;
    }
    for x in &b.examples {
        a.add_example(x.clone());
    }
    for c in &b.contributors {
        if !a.contributors.contains(c) {
            a.contributors.push(*c);
        }
    }
}

fn merge_resources(a: &mut Resources, b: &Resources) {
    a.changed_at = a.changed_at.max(b.changed_at);
    a.stable_since = both(a.stable_since, b.stable_since);
    a.processes += b.processes;
    a.cpu = a.cpu.merged(&b.cpu);
    a.rss = a.rss.merged(&b.rss);
    a.cpu_ceiling = match (a.cpu_ceiling, b.cpu_ceiling) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    a.rss_ceiling = a.rss_ceiling.max(b.rss_ceiling);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        baseline::{
            learn::{Behaviour, Learner, Observation, ProcessId},
            net::{Destination, Direction, Proto},
            stats::tests::Rng,
        },
        config,
    };
    use std::path::Path;

    const EXES: [&str; 3] = ["/usr/sbin/nginx", "/usr/bin/psql", "/usr/bin/python3"];

    /// A random but reproducible stream of observations from many processes.
    fn workload(seed: u64, pids: std::ops::Range<u32>) -> Vec<(ProcessId, &'static str, u32, f64)> {
        let mut rng = Rng(seed);
        let mut out = Vec::new();
        for pid in pids {
            let exe = EXES[(rng.next_u64() % 3) as usize];
            for _ in 0..(1 + rng.next_u64() % 6) {
                let what = (rng.next_u64() % 7) as u32;
                out.push((ProcessId { pid, start: 7 }, exe, what, rng.unit() * 100.0));
            }
        }
        out
    }

    fn learn(l: &mut Learner, w: &[(ProcessId, &'static str, u32, f64)]) {
        for &(p, exe, what, x) in w {
            let port = 5000 + (x as u16 % 4);
            let b = match what {
                0 => Behaviour::Connect(Destination {
                    addr: "10.0.0.1".parse().expect("addr"),
                    port,
                    proto: Proto::Tcp,
                    direction: Direction::Outbound,
                }),
                1 | 2 => Behaviour::Spawn {
                    child_exe: Path::new(if what == 1 { "/bin/sh" } else { "/usr/bin/env" }),
                },
                3 => Behaviour::Exec {
                    parent_exe: Some(Path::new("/usr/lib/systemd/systemd")),
                    user: Some(if x > 50.0 { "root" } else { "www" }),
                },
                4 => Behaviour::WxMem,
                5 => Behaviour::FileOpen(Path::new(if x > 50.0 {
                    "/etc/hosts"
                } else {
                    "/etc/passwd"
                })),
                _ => Behaviour::Sample {
                    cpu_pct: Some(x),
                    rss_bytes: Some((x * 1e6) as u64),
                },
            };
            l.observe(
                &Observation {
                    process: p,
                    exe: Path::new(exe),
                    behaviour: b,
                },
                10,
            );
        }
    }

    fn limits(caps: &config::Caps) -> MergeLimits<'_> {
        MergeLimits {
            caps,
            min_processes: 2,
            generalize_after: 8,
        }
    }

    fn sorted<K: Key>(d: &Dimension<K>) -> Vec<(String, u64, u64)> {
        let mut v: Vec<_> = d
            .entries
            .iter()
            .map(|e| (e.key.id(), e.count, e.processes))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn merging_hosts_equals_learning_everything_in_one_place() {
        let cfg = config::Baseline::default();
        let a_obs = workload(1, 1..200);
        let b_obs = workload(2, 1000..1300);
        let mut a = Learner::new(Model::new(0, "host-a"), &cfg, 100_000);
        let mut b = Learner::new(Model::new(5, "host-b"), &cfg, 100_000);
        let mut all = Learner::new(Model::new(0, "both"), &cfg, 100_000);
        learn(&mut a, &a_obs);
        learn(&mut b, &b_obs);
        learn(&mut all, &a_obs);
        learn(&mut all, &b_obs);
        let caps = config::Caps::default();
        let (m, report) = merge(&[a.into_model(), b.into_model()], limits(&caps), 99);
        let want = all.into_model();
        assert_eq!(report.models, 2);
        assert_eq!(report.shared, 3);
        assert_eq!(
            m.hosts.iter().map(String::as_str).collect::<Vec<_>>(),
            ["host-a", "host-b"]
        );
        assert_eq!(m.created, 0);
        assert_eq!(m.executables.len(), want.executables.len());
        for (exe, w) in &want.executables {
            let got = &m.executables[exe];
            assert_eq!(got.processes, w.processes, "{exe}");
            assert_eq!(sorted(&got.network), sorted(&w.network), "{exe}");
            assert_eq!(sorted(&got.children), sorted(&w.children), "{exe}");
            assert_eq!(sorted(&got.parents), sorted(&w.parents), "{exe}");
            assert_eq!(sorted(&got.users), sorted(&w.users), "{exe}");
            assert_eq!(sorted(&got.files), sorted(&w.files), "{exe}");
            assert_eq!(sorted(&got.flags), sorted(&w.flags), "{exe}");
            let (g, e) = (&got.resources, &w.resources);
            assert_eq!(
                (g.processes, g.cpu.n, g.rss.n),
                (e.processes, e.cpu.n, e.rss.n)
            );
            assert!((g.cpu.mean - e.cpu.mean).abs() < 1e-9, "{exe}");
            assert!(
                (g.cpu.m2 - e.cpu.m2).abs() < 1e-6 * e.cpu.m2.max(1.0),
                "{exe}"
            );
            assert!(
                (g.rss.m2 - e.rss.m2).abs() < 1e-6 * e.rss.m2.max(1.0),
                "{exe}"
            );
        }
    }

    #[test]
    fn learning_ends_only_where_it_ended_everywhere() {
        let mut a = Model::new(10, "a");
        let mut b = Model::new(20, "b");
        a.learning.ended = Some(100);
        a.learning.trained = true;
        let caps = config::Caps::default();
        let (m, _) = merge(&[a.clone(), b.clone()], limits(&caps), 0);
        assert_eq!(m.learning.started, 10);
        assert_eq!(m.learning.ended, None);
        b.learning.ended = Some(200);
        b.learning.trained = true;
        let (m, _) = merge(&[a, b], limits(&caps), 0);
        assert_eq!(m.learning.ended, Some(200));
        assert!(m.learning.trained);
    }

    #[test]
    fn merge_keeps_the_caps_and_regeneralises_files() {
        let mut a = Model::new(0, "a");
        let mut b = Model::new(0, "b");
        let mut na = ExeBaseline::new("/usr/sbin/nginx", 0);
        let mut nb = ExeBaseline::new("/usr/sbin/nginx", 0);
        for i in 0..5 {
            let key = |f: String| super::super::model::FileKey { path: f };
            na.files.entries.push(Entry {
                processes: 3,
                ..Entry::first(key(format!("/var/www/a{i}.html")), 0)
            });
            nb.files.entries.push(Entry {
                processes: 3,
                ..Entry::first(key(format!("/var/www/b{i}.html")), 0)
            });
        }
        a.executables.insert("/usr/sbin/nginx".into(), na);
        b.executables.insert("/usr/sbin/nginx".into(), nb);
        for i in 0..3 {
            let exe = format!("/bin/tool{i}");
            let mut t = ExeBaseline::new(&exe, 0);
            t.processes = i;
            b.executables.insert(exe, t);
        }
        let caps = config::Caps {
            executables: 3,
            ..config::Caps::default()
        };
        let (m, r) = merge(&[a, b], limits(&caps), 50);
        let files: Vec<&str> = m.executables["/usr/sbin/nginx"]
            .files
            .entries
            .iter()
            .map(|e| e.key.path.as_str())
            .collect();
        assert_eq!(files, ["/var/www/*"], "10 normal files of one directory");
        assert_eq!(m.executables["/usr/sbin/nginx"].files.entries[0].count, 10);
        assert_eq!(m.executables.len(), 3);
        assert_eq!(r.evicted_executables, 1);
        assert_eq!(m.evicted.executables, 1);
        assert!(!m.executables.contains_key("/bin/tool0"), "least used went");
    }
}
