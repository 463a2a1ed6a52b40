//! Counters of what the sensors delivered and what was lost, shared without locks.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::event::EventKind;

const KINDS: usize = EventKind::ALL.len();

/// Lock-free counters: written by the sensor tasks, read by whoever reports.
#[derive(Debug, Default)]
pub struct SensorStats {
    received: [AtomicU64; KINDS],
    kernel_lost: [AtomicU64; KINDS],
    malformed: AtomicU64,
    fallback_lost: AtomicU64,
    missed_wakeups: AtomicU64,
    undelivered_at_stop: AtomicU64,
    /// Set once when the sensor starts.
    probes_missing: std::sync::OnceLock<Vec<String>>,
}

impl SensorStats {
    /// Counts one event delivered.
    pub fn received(&self, kind: EventKind) {
        self.received[kind.index()].fetch_add(1, Relaxed);
    }

    /// Counts one record rejected by the decoder.
    pub fn malformed(&self) {
        self.malformed.fetch_add(1, Relaxed);
    }

    /// Stores the kernel's running total of events of `kind` that found the ring buffer full.
    pub fn set_kernel_lost(&self, kind: EventKind, total: u64) {
        self.kernel_lost[kind.index()].store(total, Relaxed);
    }

    /// Counts a timed drain of the ring buffer that found records no wakeup had announced.
    pub fn missed_wakeup(&self) {
        self.missed_wakeups.fetch_add(1, Relaxed);
    }

    /// Counts records left in the ring when a stop cut the final drain short.
    pub fn undelivered_at_stop(&self, n: u64) {
        self.undelivered_at_stop.fetch_add(n, Relaxed);
    }

    /// Counts events the fallback sensor knows it missed (netlink ENOBUFS overruns).
    pub fn fallback_lost(&self, n: u64) {
        self.fallback_lost.fetch_add(n, Relaxed);
    }

    /// Records the probes that failed to attach (once, at start; later calls are ignored).
    pub fn set_probes_missing(&self, probes: Vec<String>) {
        let _ = self.probes_missing.set(probes);
    }

    /// Probes that failed to attach.
    pub fn probes_missing(&self) -> Vec<String> {
        self.probes_missing.get().cloned().unwrap_or_default()
    }

    /// Events lost anywhere so far (cheap: no snapshot).
    pub fn lost_total(&self) -> u64 {
        self.kernel_lost
            .iter()
            .map(|a| a.load(Relaxed))
            .sum::<u64>()
            + self.fallback_lost.load(Relaxed)
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> StatsSnapshot {
        let per_kind = |a: &[AtomicU64; KINDS]| {
            EventKind::ALL
                .iter()
                .map(|k| (k.as_str(), a[k.index()].load(Relaxed)))
                .collect::<Vec<_>>()
        };
        let received = per_kind(&self.received);
        let kernel_lost = per_kind(&self.kernel_lost);
        StatsSnapshot {
            received_total: received.iter().map(|(_, n)| n).sum(),
            lost_total: kernel_lost.iter().map(|(_, n)| n).sum::<u64>()
                + self.fallback_lost.load(Relaxed),
            received: received.into_iter().collect(),
            kernel_lost: kernel_lost.into_iter().collect(),
            fallback_lost: self.fallback_lost.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            missed_wakeups: self.missed_wakeups.load(Relaxed),
            undelivered_at_stop: self.undelivered_at_stop.load(Relaxed),
            probes_missing: self.probes_missing(),
        }
    }
}

/// Counters at one moment, as printed and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Events delivered, all kinds.
    pub received_total: u64,
    /// Events lost anywhere (kernel ring buffer full, netlink overrun).
    pub lost_total: u64,
    /// Events delivered, per kind.
    pub received: std::collections::BTreeMap<&'static str, u64>,
    /// Events the kernel could not put in the ring buffer, per kind.
    pub kernel_lost: std::collections::BTreeMap<&'static str, u64>,
    /// Events the netlink fallback missed (ENOBUFS).
    pub fallback_lost: u64,
    /// Records rejected by the decoder.
    pub malformed: u64,
    /// Timed drains of the ring buffer that found records no wakeup had announced (delivered
    /// late, not lost).
    pub missed_wakeups: u64,
    /// Records still in the ring when a stop during a storm cut the final drain short (after
    /// [`super::ebpf`]'s one second of delivering); not delivered, counted here.
    pub undelivered_at_stop: u64,
    /// Probes that failed to attach (`category:name`, `tp_btf:name`): what they report is
    /// not seen.
    pub probes_missing: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sums_per_kind() {
        let s = SensorStats::default();
        s.received(EventKind::Exec);
        s.received(EventKind::Exec);
        s.received(EventKind::Connect);
        s.set_kernel_lost(EventKind::Exec, 5);
        s.fallback_lost(2);
        s.malformed();
        let snap = s.snapshot();
        assert_eq!(snap.received_total, 3);
        assert_eq!(snap.received["exec"], 2);
        assert_eq!(snap.kernel_lost["exec"], 5);
        assert_eq!(snap.lost_total, 7);
        assert_eq!(s.lost_total(), 7);
        assert_eq!(snap.malformed, 1);
    }
}
