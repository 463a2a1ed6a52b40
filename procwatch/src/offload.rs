//! Work a monitored process can make slow runs here, never on the engine's task: reads of its
//! /proc files that wait on its memory (cmdline, environ and maps take its mmap lock, and a
//! page of it can live on a FUSE file that never answers), stats and reads of its executable
//! (FUSE, NFS), socket tables, dumps and freezes.
//!
//! Each job runs on a thread of its own, at most [`MAX_ACTIVE`] at a time, with a deadline. A
//! job past its deadline is abandoned: its caller gets [`SlowError::TimedOut`] at once, the
//! thread is counted as stuck (it may stay blocked in the kernel until the filesystem answers)
//! and its permit is handed on, so the next job still runs. At most [`MAX_STUCK`] threads may
//! be stuck at once; past that, new jobs are refused ([`SlowError::Refused`]) instead of
//! piling up threads, and procwatch says so once. Plain threads rather than tokio's blocking
//! pool: dropping a runtime waits for its blocking tasks, so one stuck read would hang exit.
use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Semaphore, oneshot};
use tracing::warn;

/// Jobs running at once (the machine's CPUs are for detection; these mostly wait on I/O).
pub const MAX_ACTIVE: usize = 4;
/// Threads that may be stuck in abandoned jobs at once.
pub const MAX_STUCK: usize = 32;
/// Deadline of one read of a process (its /proc files, its executable, its socket table):
/// orders of magnitude above a normal one, short enough that a hung one costs little.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a job gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlowError {
    /// It ran past its deadline and was abandoned.
    #[error("{what} took longer than {timeout:?} and was abandoned")]
    TimedOut {
        /// What the job was doing.
        what: &'static str,
        /// Its deadline.
        timeout: Duration,
    },
    /// Too many threads are stuck already; the job did not start.
    #[error("{what} not started: {stuck} threads are stuck in slow reads (the cap)")]
    Refused {
        /// What the job would have done.
        what: &'static str,
        /// Threads stuck at the time.
        stuck: usize,
    },
    /// No thread could be started, or the job panicked.
    #[error("{what} failed: {reason}")]
    Failed {
        /// What the job was doing.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// What the pool counts, for the final summary and the API.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OffloadStats {
    /// Jobs started.
    pub jobs: u64,
    /// Reads abandoned past their deadline (slow or hung filesystems, blocked memory).
    pub slow_reads_abandoned: u64,
    /// Jobs refused because [`MAX_STUCK`] threads were stuck.
    pub refused_stuck_cap: u64,
    /// Threads stuck right now.
    pub stuck_now: usize,
}

/// The pool. Cheap to clone; every clone shares the limits and the counters.
#[derive(Debug, Clone)]
pub struct Offload {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    active: Arc<Semaphore>,
    max_stuck: usize,
    stuck: AtomicUsize,
    jobs: AtomicU64,
    abandoned: AtomicU64,
    refused: AtomicU64,
    warned_cap: AtomicBool,
}

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// A thread started by the pool; [`Worker::abandon`] gives up on it.
#[derive(Debug)]
pub struct Worker {
    state: Arc<AtomicU8>,
    inner: Arc<Inner>,
}

impl Worker {
    /// Counts the thread as stuck and abandoned unless it already finished; true when it was
    /// abandoned now.
    pub fn abandon(&self) -> bool {
        // Counted as stuck before the state says so: the thread, finishing, takes it back
        // only after it sees ABANDONED, so the count never goes below zero.
        self.inner.stuck.fetch_add(1, Ordering::AcqRel);
        match self
            .state
            .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.inner.abandoned.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.inner.stuck.fetch_sub(1, Ordering::AcqRel);
                false
            }
        }
    }

    /// True once the thread has returned.
    pub fn finished(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }
}

/// The process-wide pool: one stuck budget for everything procwatch offloads.
pub fn pool() -> &'static Offload {
    static POOL: OnceLock<Offload> = OnceLock::new();
    POOL.get_or_init(|| Offload::new(MAX_ACTIVE, MAX_STUCK))
}

impl Offload {
    /// A pool running `max_active` jobs at once with at most `max_stuck` stuck threads.
    pub fn new(max_active: usize, max_stuck: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                active: Arc::new(Semaphore::new(max_active.max(1))),
                max_stuck,
                stuck: AtomicUsize::new(0),
                jobs: AtomicU64::new(0),
                abandoned: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                warned_cap: AtomicBool::new(false),
            }),
        }
    }

    /// The counters.
    pub fn stats(&self) -> OffloadStats {
        let i = &self.inner;
        OffloadStats {
            jobs: i.jobs.load(Ordering::Relaxed),
            slow_reads_abandoned: i.abandoned.load(Ordering::Relaxed),
            refused_stuck_cap: i.refused.load(Ordering::Relaxed),
            stuck_now: i.stuck.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` on a thread of its own within `timeout`, once one of the pool's slots is free
    /// (the wait for a slot is not part of the deadline: a queue is not a slow read).
    pub async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        timeout: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SlowError> {
        let permit = self
            .inner
            .active
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| SlowError::Failed {
                what,
                reason: e.to_string(),
            })?;
        let (tx, mut rx) = oneshot::channel();
        // A panic drops `tx` unsent: the receiver sees the job end without a result.
        let worker = self.spawn(what, move || {
            let _ = tx.send(f());
        })?;
        let outcome = match tokio::time::timeout(timeout, &mut rx).await {
            Ok(done) => done,
            Err(_) if worker.abandon() => {
                drop(permit);
                return Err(SlowError::TimedOut { what, timeout });
            }
            // It finished just as the deadline passed: its result is there.
            Err(_) => rx.await,
        };
        outcome.map_err(|_| SlowError::Failed {
            what,
            reason: "the job panicked".into(),
        })
    }

    /// Starts `f` on a thread of its own, outside the slot limit, watched by the caller (a
    /// sweep, which abandons a worker stuck on one process and carries on with another).
    /// Refused when [`MAX_STUCK`] threads are stuck.
    pub fn spawn(
        &self,
        what: &'static str,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<Worker, SlowError> {
        let stuck = self.inner.stuck.load(Ordering::Acquire);
        if stuck >= self.inner.max_stuck {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            if !self.inner.warned_cap.swap(true, Ordering::Relaxed) {
                warn!(
                    stuck,
                    "{stuck} threads are stuck in reads that never returned (a hung FUSE or \
                     network filesystem, or a process blocking its own memory); new slow reads \
                     are refused until some return, and detection goes on without them"
                );
            }
            return Err(SlowError::Refused { what, stuck });
        }
        let state = Arc::new(AtomicU8::new(RUNNING));
        let worker = Worker {
            state: state.clone(),
            inner: self.inner.clone(),
        };
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name(format!("pw-{what}"))
            .spawn(move || {
                // A panic must still mark the thread done, or it would count as stuck forever.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(f));
                if state.swap(DONE, Ordering::AcqRel) == ABANDONED {
                    inner.stuck.fetch_sub(1, Ordering::AcqRel);
                }
            })
            .map_err(|e| SlowError::Failed {
                what,
                reason: e.to_string(),
            })?;
        self.inner.jobs.fetch_add(1, Ordering::Relaxed);
        Ok(worker)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A job that blocks until `release` sends (or is dropped).
    fn gate() -> (mpsc::Sender<()>, impl FnOnce() + Send + 'static) {
        let (release, wait) = mpsc::channel::<()>();
        (release, move || {
            let _ = wait.recv();
        })
    }

    /// Polls until no thread is stuck (the released ones return at once).
    async fn unstuck(pool: &Offload) {
        for _ in 0..500 {
            if pool.stats().stuck_now == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("threads still stuck: {:?}", pool.stats());
    }

    #[tokio::test]
    async fn a_job_past_its_deadline_is_abandoned_counted_and_its_slot_handed_on() {
        let pool = Offload::new(1, 4);
        let (release, job) = gate();
        let r = pool.run("stuck", Duration::from_millis(50), job).await;
        assert!(
            matches!(r, Err(SlowError::TimedOut { what: "stuck", .. })),
            "{r:?}"
        );
        let s = pool.stats();
        assert_eq!((s.slow_reads_abandoned, s.stuck_now), (1, 1));
        // The only slot is free again: the next job runs while the first is still stuck.
        assert_eq!(pool.run("next", Duration::from_secs(5), || 7).await, Ok(7));
        let _ = release.send(());
        unstuck(&pool).await;
        assert_eq!(pool.stats().slow_reads_abandoned, 1, "counted once");
    }

    #[tokio::test]
    async fn past_the_stuck_cap_jobs_are_refused_until_one_returns() {
        let pool = Offload::new(4, 1);
        let (release, job) = gate();
        let r = pool.run("stuck", Duration::from_millis(50), job).await;
        assert!(matches!(r, Err(SlowError::TimedOut { .. })), "{r:?}");
        let r = pool.run("refused", Duration::from_secs(5), || 1).await;
        assert_eq!(
            r,
            Err(SlowError::Refused {
                what: "refused",
                stuck: 1
            })
        );
        assert_eq!(pool.stats().refused_stuck_cap, 1);
        let _ = release.send(());
        unstuck(&pool).await;
        assert_eq!(pool.run("again", Duration::from_secs(5), || 2).await, Ok(2));
    }

    #[tokio::test]
    async fn a_job_that_panics_is_an_error_and_leaves_nothing_stuck() {
        let pool = Offload::new(1, 1);
        let r = pool
            .run("boom", Duration::from_secs(5), || -> u8 { panic!("boom") })
            .await;
        assert!(
            matches!(r, Err(SlowError::Failed { what: "boom", .. })),
            "{r:?}"
        );
        assert_eq!(pool.stats().stuck_now, 0);
        assert_eq!(pool.run("fine", Duration::from_secs(5), || 3).await, Ok(3));
    }
}
