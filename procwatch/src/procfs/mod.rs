//! Reading /proc: the one reader and the one model of a process that the sensors, the engine,
//! `scan` and the actions share. Nothing here knows about events, the process table or
//! detection; everything else imports from here and nothing here imports back.
//!
//! - [`PidDir`]: every file of one process is opened through one handle of its `/proc/<pid>`
//!   directory, so a reused pid is never mixed with the process it replaced.
//! - [`stat`]: stat, status and W+X mappings; [`sockets`]: socket tables and socket fds.
//! - [`sample`]: [`Sample`], one process as read from /proc, at a chosen [`Depth`].
//! - [`sweep`]: every process at once, off the caller's task, with hung reads abandoned.
//!
//! A process that is gone (or goes while it is read) is [`ReadError::Vanished`].
mod dir;
pub(crate) mod parse;
pub mod relay;
pub mod sample;
pub mod sockets;
pub mod stat;
pub mod sweep;

use std::{ffi::OsString, io};

pub(crate) use dir::{PidDir, classify, for_each_line, open_raw, proc_path, read_link_at};
pub use sample::{ConnectFact, Depth, ExeState, Sample};

use crate::text::os_from_bytes;

/// At most this many bytes of a command line are read; longer ones are marked truncated.
pub const CMDLINE_MAX: usize = 32 * 1024;

/// Why a process could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The process does not exist (any more): ENOENT/ESRCH. Expected; skip it.
    #[error("process {pid} is gone")]
    Vanished {
        /// The pid asked for.
        pid: u32,
    },
    /// A file could not be read for another reason (permissions, hidepid, ...).
    #[error("reading /proc/{pid}/{file}: {source}")]
    Io {
        /// The pid asked for.
        pid: u32,
        /// Which file.
        file: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file did not have the expected format.
    #[error("/proc/{pid}/{file} is malformed")]
    Malformed {
        /// The pid asked for.
        pid: u32,
        /// Which file.
        file: &'static str,
    },
}

impl ReadError {
    /// True when the process is simply gone.
    pub fn is_vanished(&self) -> bool {
        matches!(self, ReadError::Vanished { .. })
    }
}

/// Splits /proc/<pid>/cmdline on NULs (one trailing NUL ends the last argument).
pub fn split_cmdline(bytes: &[u8]) -> Vec<OsString> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let body = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    body.split(|&b| b == 0).map(os_from_bytes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_splits_on_nul() {
        assert_eq!(
            split_cmdline(b"/bin/ls\0-l\0\0x\0"),
            ["/bin/ls", "-l", "", "x"]
        );
        assert_eq!(split_cmdline(b"setproctitle style"), ["setproctitle style"]);
        assert!(split_cmdline(b"").is_empty());
    }
}
