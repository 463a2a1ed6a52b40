//! Every process at once, read by a few threads off the caller's task. A process whose files
//! block a read (a page of its memory on a FUSE file that never answers, its executable on a
//! dead network mount) must not stop the sweep: the thread stuck on it is abandoned after the
//! read deadline (the offload pool counts it), another thread carries on with the rest, and the
//! process is reported `unread`: present, not gone. From then on it is read header-only
//! ([`Depth::Header`]: nothing that touches its memory or its files), and skipped altogether
//! if even that hangs, until it exits.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    io,
    os::unix::ffi::OsStrExt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tracing::{debug, warn};

use super::{
    Depth, ReadError, Sample,
    parse::parse_u64,
    sample::{self, Interest},
    stat::StatReader,
};
use crate::offload::{Offload, Worker};

/// Threads reading processes in one sweep (replacements for stuck ones come on top).
const WORKERS: usize = 4;
/// A process read header-only is tried in full again after this long: a filesystem that
/// hung once may have recovered, and a process must not hide from full reads for ever by
/// hanging one. Each retry that hangs again costs one more stuck thread, under the cap.
const RETRY_SLOW: Duration = Duration::from_secs(60);
/// How often the sweep looks for a thread stuck on one process.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// One sweep's result.
#[derive(Debug, Default)]
pub struct Sweep {
    /// The processes read.
    pub samples: Vec<Sample>,
    /// Processes that exist but could not be read in time (or are skipped as hung): they
    /// must not be taken for exited.
    pub unread: Vec<u32>,
    /// Reads abandoned in this sweep.
    pub abandoned: usize,
}

/// How a process that hung a read is read from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Care {
    /// Header only.
    Header,
    /// Not at all.
    Skip,
}

/// A process that hung a read: its start time (0 when the read hung before stat) and how it
/// is read now.
#[derive(Debug, Clone, Copy)]
struct Slow {
    start_ticks: u64,
    care: Care,
    since: Instant,
}

/// Runs sweeps and remembers which processes hung one. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Sweeper {
    offload: Offload,
    read_timeout: Duration,
    slow: Arc<Mutex<HashMap<u32, Slow>>>,
    /// Listening and accepted sockets (by inode) already traced to their owner in an earlier
    /// sweep, found or not: each is looked for once, not in every sweep.
    traced: Arc<Mutex<HashSet<u64>>>,
}

/// What one reading thread is doing, for the sweep that watches it.
#[derive(Debug, Default)]
struct Progress {
    /// The pid being read, 0 between reads.
    pid: AtomicU32,
    /// Its start time once stat was read.
    start_ticks: AtomicU64,
    /// When the read began, in ms since the sweep began.
    since_ms: AtomicU64,
    /// Set by the sweep: stop, and deliver nothing more.
    quit: AtomicBool,
    /// Set by the thread when it is done.
    done: AtomicBool,
}

/// What the reading threads share.
struct Shared {
    queue: Mutex<VecDeque<u32>>,
    out: Mutex<Vec<Sample>>,
    skipped: Mutex<Vec<u32>>,
    slow: HashMap<u32, Slow>,
    depth: Depth,
    interest: Interest,
    began: Instant,
    finished: Notify,
}

impl Sweeper {
    /// A sweeper whose per-process reads are abandoned after `read_timeout`.
    pub fn new(offload: Offload, read_timeout: Duration) -> Self {
        Self {
            offload,
            read_timeout,
            slow: Arc::default(),
            traced: Arc::default(),
        }
    }

    /// Processes currently read with care (they hung a read and have not exited).
    pub fn slow_processes(&self) -> usize {
        self.slow
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// A sweep, or none (an empty one, with a warning) when /proc cannot be listed at all.
    pub async fn sweep_or_warn(&self, depth: Depth, interest: &Interest) -> Sweep {
        self.sweep(depth, interest).await.unwrap_or_else(|e| {
            warn!(error = %e, "cannot read /proc");
            Sweep::default()
        })
    }

    /// Reads every process in /proc but this one, at `depth` (processes that hung a read: less).
    pub async fn sweep(&self, depth: Depth, interest: &Interest) -> io::Result<Sweep> {
        let pids = list_pids()?;
        let slow = {
            let mut slow = self.slow.lock().unwrap_or_else(PoisonError::into_inner);
            // A pid no longer listed has exited: it is not slow any more.
            let listed: std::collections::HashSet<u32> = pids.iter().copied().collect();
            slow.retain(|pid, s| {
                listed.contains(pid) && (s.care == Care::Skip || s.since.elapsed() < RETRY_SLOW)
            });
            slow.clone()
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(pids.into()),
            out: Mutex::default(),
            skipped: Mutex::default(),
            slow,
            depth,
            interest: interest.clone(),
            began: Instant::now(),
            finished: Notify::new(),
        });
        let mut workers = Vec::with_capacity(WORKERS);
        for _ in 0..WORKERS {
            match self.start_worker(&shared) {
                Ok(w) => workers.push(w),
                Err(e) => warn!(error = %e, "a sweep thread could not start"),
            }
        }
        let mut sweep = Sweep::default();
        let mut hung = Vec::new();
        let timeout_ms = u64::try_from(self.read_timeout.as_millis()).unwrap_or(u64::MAX);
        loop {
            let live: Vec<&(Worker, Arc<Progress>)> = workers
                .iter()
                .filter(|(_, p)| !p.done.load(Ordering::Acquire) && !p.quit.load(Ordering::Acquire))
                .collect();
            if live.is_empty() {
                break;
            }
            let now_ms = ms_since(shared.began);
            let mut stuck = Vec::new();
            for (worker, progress) in live {
                let pid = progress.pid.load(Ordering::Acquire);
                let since = progress.since_ms.load(Ordering::Acquire);
                if pid != 0 && now_ms.saturating_sub(since) > timeout_ms {
                    progress.quit.store(true, Ordering::Release);
                    if worker.abandon() {
                        stuck.push((pid, progress.start_ticks.load(Ordering::Acquire)));
                    }
                }
            }
            for (pid, start_ticks) in stuck {
                warn!(
                    pid,
                    timeout_ms,
                    "reading /proc/{pid} did not finish in time; abandoned (its memory or files \
                     block reads: a hung FUSE or network filesystem?). It is read header-only \
                     from now on; the sweep goes on"
                );
                sweep.abandoned += 1;
                sweep.unread.push(pid);
                hung.push((pid, start_ticks));
                match self.start_worker(&shared) {
                    Ok(w) => workers.push(w),
                    Err(e) => warn!(error = %e, "no thread to carry on the sweep"),
                }
            }
            tokio::select! {
                _ = shared.finished.notified() => {}
                _ = tokio::time::sleep(WATCH_EVERY) => {}
            }
        }
        // Left in the queue when no thread could carry on: present, unread.
        sweep.unread.extend(
            shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain(..),
        );
        sweep.unread.extend(
            shared
                .skipped
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain(..),
        );
        sweep.samples =
            std::mem::take(&mut *shared.out.lock().unwrap_or_else(PoisonError::into_inner));
        self.remember(hung);
        if depth == Depth::Full {
            self.sockets(&mut sweep.samples, interest).await;
        }
        Ok(sweep)
    }

    /// The socket phase, itself a read that may be abandoned (then this sweep has no socket
    /// facts).
    async fn sockets(&self, samples: &mut [Sample], interest: &Interest) {
        let queries = sample::socket_queries(samples);
        if queries.is_empty() {
            return;
        }
        let interest = interest.clone();
        let traced = self.traced.clone();
        match self
            .offload
            .run("socket tables", self.read_timeout, move || {
                let mut traced = traced.lock().unwrap_or_else(PoisonError::into_inner);
                sample::socket_facts(&queries, &interest, &mut traced)
            })
            .await
        {
            Ok(facts) => sample::apply_socket_facts(samples, facts),
            Err(e) => warn!(error = %e, "this sweep has no socket facts"),
        }
    }

    /// Hung processes are read header-only next time; one that hung even so is skipped.
    fn remember(&self, hung: Vec<(u32, u64)>) {
        let mut slow = self.slow.lock().unwrap_or_else(PoisonError::into_inner);
        for (pid, start_ticks) in hung {
            let care = match slow.get(&pid) {
                Some(s) if s.start_ticks == start_ticks || start_ticks == 0 => Care::Skip,
                _ => Care::Header,
            };
            slow.insert(
                pid,
                Slow {
                    start_ticks,
                    care,
                    since: Instant::now(),
                },
            );
        }
    }

    fn start_worker(
        &self,
        shared: &Arc<Shared>,
    ) -> Result<(Worker, Arc<Progress>), crate::offload::SlowError> {
        let progress = Arc::new(Progress::default());
        let (p, s) = (progress.clone(), shared.clone());
        let worker = self.offload.spawn("sweep", move || {
            read_queue(&s, &p);
            p.done.store(true, Ordering::Release);
            s.finished.notify_one();
        })?;
        Ok((worker, progress))
    }
}

/// A reading thread: takes pids off the queue until it is empty or the sweep gives up on it.
fn read_queue(shared: &Shared, progress: &Progress) {
    let mut reader = StatReader::default();
    loop {
        if progress.quit.load(Ordering::Acquire) {
            return;
        }
        let Some(pid) = shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
        else {
            return;
        };
        let slow = shared.slow.get(&pid).copied();
        let depth = match slow {
            Some(Slow {
                care: Care::Skip, ..
            }) => {
                shared
                    .skipped
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(pid);
                continue;
            }
            Some(Slow {
                care: Care::Header, ..
            }) => Depth::Header,
            None => shared.depth,
        };
        progress.start_ticks.store(0, Ordering::Release);
        progress
            .since_ms
            .store(ms_since(shared.began), Ordering::Release);
        progress.pid.store(pid, Ordering::Release);
        let mut read = |depth| {
            sample::take_with(pid, depth, &shared.interest, &mut reader, &mut |ticks| {
                progress.start_ticks.store(ticks, Ordering::Release)
            })
        };
        let mut result = read(depth);
        // A new process under the pid of a slow one that exited: read it in full.
        if let (Ok(s), Some(slow)) = (&result, slow)
            && slow.start_ticks != 0
            && s.start_ticks != slow.start_ticks
        {
            result = read(shared.depth);
        }
        progress.pid.store(0, Ordering::Release);
        if progress.quit.load(Ordering::Acquire) {
            // Abandoned meanwhile: the sweep has counted this process as unread.
            return;
        }
        match result {
            Ok(s) => shared
                .out
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(s),
            Err(ReadError::Vanished { .. }) => {}
            Err(e) => debug!(error = %e, "process skipped in sweep"),
        }
    }
}

/// Every pid in /proc but this process's own.
fn list_pids() -> io::Result<Vec<u32>> {
    let me = std::process::id();
    let mut pids = Vec::with_capacity(512);
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        if let Some(pid) =
            parse_u64(entry.file_name().as_bytes()).and_then(|p| u32::try_from(p).ok())
            && pid != me
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sweep_finds_pid_1_and_skips_itself() {
        let sweeper = Sweeper::new(Offload::new(2, 4), Duration::from_secs(10));
        let all = sweeper
            .sweep(Depth::Full, &Interest::none())
            .await
            .expect("/proc readable");
        assert!(all.samples.iter().any(|s| s.pid == 1));
        assert!(all.samples.iter().all(|s| s.pid != std::process::id()));
        assert_eq!(all.abandoned, 0);
    }

    #[tokio::test]
    async fn identity_sweeps_read_command_lines_and_header_sweeps_do_not() {
        let sweeper = Sweeper::new(Offload::new(2, 4), Duration::from_secs(10));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let identity = sweeper
            .sweep(Depth::Identity, &Interest::none())
            .await
            .expect("sweep");
        let header = sweeper
            .sweep(Depth::Header, &Interest::none())
            .await
            .expect("sweep");
        let _ = child.kill();
        let _ = child.wait();
        let of = |s: &Sweep| s.samples.iter().find(|s| s.pid == pid).cloned();
        let i = of(&identity).expect("sleep in the identity sweep");
        assert_eq!(i.cmdline, ["sleep", "30"]);
        assert!(!i.partial);
        let h = of(&header).expect("sleep in the header sweep");
        assert!(h.cmdline.is_empty() && h.partial);
        assert_eq!(h.start_ticks, i.start_ticks);
    }
}
