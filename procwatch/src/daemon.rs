//! `-d/--daemon` for systems without systemd: detach from the terminal (double fork, setsid),
//! send diagnostics to a log file, and keep a pid file for the life of the process.
//! Runs before the async runtime starts: forking a multi-threaded process is not safe.
use std::{
    fs::OpenOptions,
    io::{Read, Write},
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

/// Removes the pid file when the daemon exits (if it still names this process).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|s| s.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The pid recorded in `path`, when that process is still alive.
pub fn running_pid(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "procwatch" && pid != std::process::id()).then_some(pid)
}

fn fork() -> anyhow::Result<libc::pid_t> {
    // SAFETY: called before any thread is started (no runtime yet).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork failed: {}", std::io::Error::last_os_error());
    }
    Ok(pid)
}

/// Detaches. Returns in the daemon only; the original process exits once the daemon has
/// written its pid file (status 0), or reports why it could not (status 1).
pub fn daemonize(pid_file: &Path, log: &Path) -> anyhow::Result<PidFile> {
    if let Some(pid) = running_pid(pid_file) {
        bail!(
            "procwatch is already running as pid {pid} ({})",
            pid_file.display()
        );
    }
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(log)
        .with_context(|| format!("cannot open the daemon log {}", log.display()))?;
    let (mut ready_r, mut ready_w) = std::io::pipe().context("pipe")?;

    if fork()? > 0 {
        drop(ready_w);
        let mut msg = String::new();
        let _ = ready_r.read_to_string(&mut msg);
        if msg.starts_with("ok") {
            std::process::exit(0);
        }
        eprintln!("procwatch: daemon failed to start: {}", msg.trim());
        std::process::exit(1);
    }
    drop(ready_r);
    // SAFETY: setsid has no preconditions; the child is not a group leader.
    unsafe { libc::setsid() };
    if fork()? > 0 {
        // The session leader exits so the daemon can never reacquire a terminal.
        std::process::exit(0);
    }
    let result = (|| -> anyhow::Result<PidFile> {
        std::env::set_current_dir("/").context("chdir /")?;
        // SAFETY: umask has no preconditions.
        unsafe { libc::umask(0o027) };
        let null = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .context("/dev/null")?;
        // SAFETY: duplicating valid fds onto the standard ones.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(log_file.as_raw_fd(), 2);
        }
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(pid_file)
            .with_context(|| format!("cannot write the pid file {}", pid_file.display()))?;
        writeln!(f, "{}", std::process::id()).context("write pid file")?;
        Ok(PidFile {
            path: pid_file.to_path_buf(),
        })
    })();
    let _ = match &result {
        Ok(_) => ready_w.write_all(b"ok\n"),
        Err(e) => ready_w.write_all(format!("{e:#}\n").as_bytes()),
    };
    drop(ready_w);
    if result.is_err() {
        std::process::exit(1);
    }
    result
}
