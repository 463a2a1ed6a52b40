//! The most recent alerts in memory: what readers see before it is on disk, and all they see
//! when there is no database.
use std::{collections::VecDeque, sync::Arc};

use super::{AlertFilter, AlertRecord, record};

/// The last `cap` published alerts, ids ascending and contiguous.
pub(super) struct Ring {
    items: VecDeque<Arc<AlertRecord>>,
    cap: usize,
}

impl Ring {
    /// An empty ring of `cap` alerts.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            items: VecDeque::with_capacity(cap.min(1024)),
            cap: cap.max(1),
        }
    }

    /// Adds the newest alert, forgetting the oldest past the capacity.
    pub(super) fn push(&mut self, r: Arc<AlertRecord>) {
        if self.items.len() == self.cap {
            self.items.pop_front();
        }
        self.items.push_back(r);
    }

    /// Whether every alert published in this run with an id above `after` is still here (ids
    /// are handed out one by one, so only the oldest matters). An empty ring covers nothing:
    /// the alerts after `after` may be in the database, from an earlier run.
    pub(super) fn covers_after(&self, after: u64) -> bool {
        self.items
            .front()
            .is_some_and(|r| r.id <= after.saturating_add(1))
    }

    /// The first `limit` alerts with an id above `after`.
    pub(super) fn after(&self, after: u64, limit: usize) -> Vec<AlertRecord> {
        // Ids are contiguous: skip straight to the first one above `after`.
        let start = self.items.partition_point(|r| r.id <= after);
        self.items
            .range(start..)
            .take(limit)
            .map(|r| (**r).clone())
            .collect()
    }

    /// The first `limit` alerts `f` selects.
    pub(super) fn matching(&self, f: &AlertFilter, limit: usize) -> Vec<AlertRecord> {
        let start = self.items.partition_point(|r| r.id <= f.after.unwrap_or(0));
        let from = self.items.range(start..).filter(|r| record::matches(f, r));
        if f.newest_first {
            from.rev().take(limit).map(|r| (**r).clone()).collect()
        } else {
            from.take(limit).map(|r| (**r).clone()).collect()
        }
    }

    /// The alert with this id, if still here.
    pub(super) fn get(&self, id: u64) -> Option<AlertRecord> {
        let i = self.items.partition_point(|r| r.id < id);
        self.items
            .get(i)
            .filter(|r| r.id == id)
            .map(|r| (**r).clone())
    }
}
