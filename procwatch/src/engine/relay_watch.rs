//! Shells that take commands through a pipe, FIFO or pty whose relay was not found at their
//! exec (nor at the look a moment later): each is looked at again whenever any process
//! connects, with that process as the candidate relay. So a relay that is no relative of the
//! shell (the FIFO held by an unrelated process) or that connects late is found at its
//! connect, not only by a sweep.
use std::{collections::HashMap, time::Instant};

/// Shells watched at once; beyond it the oldest is let go (and counted).
const MAX_SHELLS: usize = 256;

/// Candidate relays gathered for one shell before its look is due; more are counted, not
/// looked at (a connect storm by many processes must not become as many /proc reads).
const MAX_CANDIDATES: usize = 64;

/// The shells, and the looks due for them.
#[derive(Debug, Default)]
pub struct RelayWatch {
    /// (pid, image) of each shell, oldest first.
    shells: Vec<(u32, u64)>,
    /// Per shell: the processes that connected since, and when to look.
    due: HashMap<(u32, u64), (Vec<u32>, Instant)>,
    /// Shells let go for want of room, and candidates not looked at.
    pub dropped: u64,
}

impl RelayWatch {
    /// Watches a shell whose relay is unknown.
    pub fn watch(&mut self, pid: u32, image: u64) {
        if self.shells.contains(&(pid, image)) {
            return;
        }
        if self.shells.len() >= MAX_SHELLS {
            let old = self.shells.remove(0);
            self.due.remove(&old);
            self.dropped += 1;
        }
        self.shells.push((pid, image));
    }

    /// Stops watching `pid` (its relay was found).
    pub fn forget(&mut self, pid: u32) {
        self.shells.retain(|&(p, _)| p != pid);
        self.due.retain(|&(p, _), _| p != pid);
    }

    /// True when no shell is watched (a connect costs nothing then).
    pub fn is_empty(&self) -> bool {
        self.shells.is_empty()
    }

    /// Keeps only the shells `live` says still run that image.
    pub fn retain(&mut self, live: impl Fn(u32, u64) -> bool) {
        self.shells.retain(|&(p, i)| live(p, i));
        let shells = &self.shells;
        self.due.retain(|k, _| shells.contains(k));
    }

    /// `connector` connected: every watched shell gets it as a candidate relay, looked at
    /// `at` (once the connection is established).
    pub fn on_connect(&mut self, connector: u32, at: Instant) {
        for &shell in &self.shells {
            if shell.0 == connector {
                continue;
            }
            let (candidates, _) = self.due.entry(shell).or_insert_with(|| (Vec::new(), at));
            if candidates.contains(&connector) {
                continue;
            }
            if candidates.len() >= MAX_CANDIDATES {
                self.dropped += 1;
                continue;
            }
            candidates.push(connector);
        }
    }

    /// The looks due by `now`: (shell pid, image, candidate relays).
    pub fn take_due(&mut self, now: Instant) -> Vec<(u32, u64, Vec<u32>)> {
        let keys: Vec<(u32, u64)> = self
            .due
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.due.remove(&k).map(|(c, _)| (k.0, k.1, c)))
            .collect()
    }

    /// When the next look is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.values().map(|(_, at)| *at).min()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_connect_makes_one_look_per_shell_with_each_connector_once() {
        let mut w = RelayWatch::default();
        let t = Instant::now();
        assert!(w.is_empty());
        w.watch(10, 1);
        w.watch(10, 1);
        w.watch(20, 2);
        w.on_connect(30, t);
        w.on_connect(30, t);
        w.on_connect(10, t);
        assert_eq!(w.next_due(), Some(t));
        assert!(w.take_due(t - Duration::from_millis(1)).is_empty());
        let mut due = w.take_due(t);
        due.sort();
        assert_eq!(due, [(10, 1, vec![30]), (20, 2, vec![30, 10])]);
        assert!(w.take_due(t).is_empty());
        w.forget(10);
        w.retain(|p, _| p != 20);
        assert!(w.is_empty());
    }

    #[test]
    fn bounds_are_counted() {
        let mut w = RelayWatch::default();
        let t = Instant::now();
        for pid in 0..(MAX_SHELLS as u32 + 1) {
            w.watch(pid + 1, 0);
        }
        assert_eq!(w.dropped, 1);
        w.retain(|p, _| p == 2);
        for c in 0..(MAX_CANDIDATES as u32 + 3) {
            w.on_connect(1000 + c, t);
        }
        assert_eq!(w.dropped, 4);
        assert_eq!(w.take_due(t)[0].2.len(), MAX_CANDIDATES);
    }
}
