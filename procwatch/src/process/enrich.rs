//! Enrichment the engine asks for and never waits on: each [`Job`] reads what a monitored
//! process can make slow (its command line, its socket table, its executable's bytes), runs on
//! the offload pool with a deadline, and comes back to the engine as a message. A job names
//! its process by pid and table image (see [`super::table::Process::image`]), so a result that
//! arrives after the pid was reused, or after another exec, is dropped rather than misapplied.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use super::hash::{self, HashCache};
use crate::{
    offload::{self, Offload},
    procfs::{
        ConnectFact, Depth, PidDir, ReadError, Sample,
        sample::{self, Interest},
        stat::StatReader,
    },
};

/// Executables at most this large are hashed for an alert; larger ones are reported without a
/// digest.
pub const HASH_MAX: u64 = 16 * 1024 * 1024;

/// Something the engine wants read about one process image.
#[derive(Debug)]
pub struct Job {
    /// Names the job when its result comes back.
    pub id: u64,
    /// The process.
    pub pid: u32,
    /// The table image it was asked for (a result for another image is dropped).
    pub image: u64,
    /// What to read.
    pub work: Work,
}

/// What a [`Job`] reads.
#[derive(Debug)]
pub enum Work {
    /// Who a process first seen through an event is: exe, command line, cwd, ids.
    Identity,
    /// The peers of the sockets on fds 0-2 (inodes read at exec), from its socket table; and
    /// the digest of this executable, when given (is it a renamed copy of a shell?).
    StdioNet([Option<u64>; 3], Option<PathBuf>),
    /// Which of `candidates` (its parent, siblings, grandparent) holds the other end of the
    /// shell's stdio pipes, FIFOs, unix sockets or pty, or is its `parent`, while connected.
    Relay {
        /// The shell's parent.
        parent: u32,
        /// Processes to look at.
        candidates: Vec<u32>,
    },
    /// A full sample (a recheck after a shell connected somewhere).
    Recheck(Interest),
    /// What an alert on a live process carries: its executable's sha256 (unless known) and
    /// every outbound connection. `start_ticks` (when known) must still match.
    Complete {
        /// Start time the alert was decided for (0: unknown).
        start_ticks: u64,
        /// Hash the executable, which must still be this one (an exec meanwhile makes the
        /// digest describe another program than the alert names).
        hash: Option<PathBuf>,
    },
}

/// What a [`Job`] found.
#[derive(Debug)]
pub enum Found {
    /// For [`Work::Identity`].
    Identity(Box<Sample>),
    /// For [`Work::StdioNet`]: the stdio sockets' peers, and the executable's digest.
    StdioNet(Vec<(u8, Option<ConnectFact>)>, Option<String>),
    /// For [`Work::Relay`].
    Relay(Vec<crate::procfs::relay::Relay>),
    /// For [`Work::Recheck`].
    Recheck(Box<Sample>),
    /// For [`Work::Complete`].
    Complete {
        /// The digest, when hashed.
        sha256: Option<String>,
        /// Outbound connections.
        conns: Vec<ConnectFact>,
        /// The cgroup (v2) path.
        cgroup: Option<String>,
    },
}

/// A job's result: what it found, or why nothing (gone, abandoned past its deadline, refused).
pub type Outcome = Result<Found, String>;

impl Job {
    /// What the job does, for logs and thread names.
    pub fn what(&self) -> &'static str {
        match self.work {
            Work::Identity => "identity",
            Work::StdioNet(..) => "stdio sockets",
            Work::Relay { .. } => "stdio relay",
            Work::Recheck(_) => "recheck",
            Work::Complete { .. } => "alert facts",
        }
    }

    /// Runs the job on the offload pool within [`offload::READ_TIMEOUT`].
    pub async fn run_offloaded(self, pool: &Offload, hashes: Arc<Mutex<HashCache>>) -> Outcome {
        let what = self.what();
        match pool
            .run(what, offload::READ_TIMEOUT, move || self.read(&hashes))
            .await
        {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Does the reading, on the calling thread (which may block).
    pub fn read(self, hashes: &Mutex<HashCache>) -> Result<Found, ReadError> {
        let pid = self.pid;
        match self.work {
            Work::Identity => sample::take(pid, Depth::Identity, &Interest::none())
                .map(|s| Found::Identity(Box::new(s))),
            Work::StdioNet(inodes, exe) => {
                let digest = exe.and_then(|exe| {
                    let dir = PidDir::open(pid).ok()?;
                    hash_through(&dir, &exe, hashes)
                });
                Ok(Found::StdioNet(sample::stdio_net_of(pid, &inodes), digest))
            }
            Work::Relay { parent, candidates } => {
                let ends = crate::procfs::relay::stdio_ends(pid);
                Ok(Found::Relay(crate::procfs::relay::relays(
                    pid,
                    parent,
                    &ends,
                    &candidates,
                )))
            }
            Work::Recheck(interest) => {
                sample::take(pid, Depth::Full, &interest).map(|s| Found::Recheck(Box::new(s)))
            }
            Work::Complete { start_ticks, hash } => {
                let dir = PidDir::open(pid)?;
                let now = StatReader::default().stat_in(&dir)?.start_ticks;
                if start_ticks != 0 && now != start_ticks {
                    // The pid is another process's now.
                    return Err(ReadError::Vanished { pid });
                }
                let sha256 = hash.and_then(|exe| hash_through(&dir, &exe, hashes));
                Ok(Found::Complete {
                    sha256,
                    conns: sample::outbound_conns(pid),
                    cgroup: sample::cgroup_of(pid),
                })
            }
        }
    }
}

/// The digest of the executable behind `dir`, from the cache when this version of the file was
/// hashed before. The cache is locked only to look up and to insert, never while hashing.
fn hash_through(dir: &PidDir, exe: &Path, hashes: &Mutex<HashCache>) -> Option<String> {
    let mut file = hash::open_exe(dir).ok()?;
    // Checked after the open: if the link still names the alert's executable, the file opened
    // is that program, not one exec'd since.
    let link = dir.read_link(c"exe", &mut Vec::new())?;
    if sample::classify_exe(link).0 != exe {
        return None;
    }
    let key = hash::FileKey::from_metadata(&file.metadata().ok()?);
    let cached = hashes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .cloned();
    let outcome = match cached {
        Some(outcome) => outcome,
        None => {
            let (key, outcome) = hash::hash_file(&mut file, HASH_MAX).ok()?;
            hashes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, outcome.clone());
            outcome
        }
    };
    outcome.digest().map(str::to_owned)
}
