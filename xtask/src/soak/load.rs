//! The soak's mixed load: long-running `xtask bench-worker` generators (the bench's), each
//! reporting its counts every 0.1 s, and the loopback listener the dialling children connect
//! to. Everything started is stopped when [`Load`] is dropped.
use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, TcpListener},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    bench::{Env, measure, monitors},
    sh::{self, Result},
};

/// Rates of the generators, per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// `/bin/true`: the exec storm.
    pub storm: f64,
    /// The /tmp copy of `/bin/true` (`tmp_exe` alerts).
    pub payload: f64,
    /// Children that make a page W+X (`wx_mem` alerts).
    pub wx: f64,
    /// Children that connect to the suspicious port (`suspicious_port` alerts).
    pub dial: f64,
    /// Connects of one long-lived process to an allowed port (events, no alerts).
    pub connects: f64,
}

/// The mix: a few hundred execs a second, a few alerts a second.
pub const RATES: Rates = Rates {
    storm: 300.0,
    payload: 4.0,
    wx: 1.0,
    dial: 1.0,
    connects: 100.0,
};

/// What a generator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Connect,
}

/// A generator's counts, updated from its `progress` lines.
#[derive(Debug, Default)]
struct Progress {
    made: AtomicU64,
    failed: AtomicU64,
    /// Its last line (the final `key=value` result once it ended).
    last: Mutex<String>,
}

struct Worker {
    name: &'static str,
    kind: Kind,
    child: Child,
    progress: Arc<Progress>,
    reader: Option<thread::JoinHandle<()>>,
}

/// One generator's totals at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Made {
    pub name: &'static str,
    pub made: u64,
    pub failed: u64,
}

/// The running load.
pub struct Load {
    workers: Vec<Worker>,
    listener: Option<Listener>,
}

/// Counts so far, summed over the generators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub execs: u64,
    pub connects: u64,
}

/// A loopback listener that takes each connection and drops it, until dropped.
pub struct Listener {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Listener {
    pub fn start() -> Result<Listener> {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        l.set_nonblocking(true)
            .map_err(|e| format!("listener: {e}"))?;
        let port = l
            .local_addr()
            .map_err(|e| format!("listener address: {e}"))?
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Relaxed) {
                match l.accept() {
                    Ok(_) => {}
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Listener {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A free port on 127.0.0.1 (free when this returns; the connect generator binds it soon
/// after, and says so if it cannot).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))?
        .port())
}

impl Load {
    /// Starts every generator for `secs` seconds: the storm, the /tmp payload, the W+X and
    /// dialling children (both the release xtask binary, `bench-worker wx` / `dial`), and the
    /// connect generator listening on `allowed_port`; `listener` takes the dialled
    /// connections.
    pub fn start(
        env: &Env,
        payload: &Path,
        rates: &Rates,
        secs: f64,
        allowed_port: u16,
        listener: Listener,
    ) -> Result<Load> {
        let worker = env.worker.display().to_string();
        let duration = format!("{secs}");
        let exec = |path: &str, rate: f64, child_args: &[String]| {
            let mut a: Vec<String> = vec!["exec".into(), "--path".into(), path.into()];
            for arg in child_args {
                a.extend(["--arg".into(), arg.clone()]);
            }
            a.extend(["--rate".into(), format!("{rate}")]);
            a
        };
        let child = |args: &[&str]| -> Vec<String> {
            std::iter::once("bench-worker")
                .chain(args.iter().copied())
                .map(str::to_owned)
                .collect()
        };
        let suspicious = listener.port.to_string();
        let plans: Vec<(&'static str, Kind, Vec<String>)> = vec![
            ("storm", Kind::Exec, exec("/bin/true", rates.storm, &[])),
            (
                "payload",
                Kind::Exec,
                exec(&payload.display().to_string(), rates.payload, &[]),
            ),
            ("wx", Kind::Exec, exec(&worker, rates.wx, &child(&["wx"]))),
            (
                "dial",
                Kind::Exec,
                exec(
                    &worker,
                    rates.dial,
                    &child(&["dial", "--port", suspicious.as_str()]),
                ),
            ),
            (
                "connect",
                Kind::Connect,
                vec![
                    "connect".into(),
                    "--port".into(),
                    allowed_port.to_string(),
                    "--rate".into(),
                    format!("{}", rates.connects),
                ],
            ),
        ];
        let mut load = Load {
            workers: Vec::new(),
            listener: Some(listener),
        };
        for (name, kind, mut args) in plans {
            args.extend([
                "--duration".into(),
                duration.clone(),
                "--progress".into(),
                "0.1".into(),
            ]);
            load.workers.push(spawn(env, name, kind, &args)?);
        }
        Ok(load)
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for w in &self.workers {
            let made = w.progress.made.load(Relaxed);
            match w.kind {
                Kind::Exec => c.execs += made,
                Kind::Connect => c.connects += made,
            }
        }
        c
    }

    /// Fails when a generator has exited before its time.
    pub fn check_alive(&mut self) -> Result {
        for w in &mut self.workers {
            if let Ok(Some(st)) = w.child.try_wait() {
                let last = w
                    .progress
                    .last
                    .lock()
                    .map(|l| l.clone())
                    .unwrap_or_default();
                return Err(format!(
                    "the {} generator exited early ({st}); its last line: {last}",
                    w.name
                ));
            }
        }
        Ok(())
    }

    /// Waits (at most `timeout`) for every generator to end by itself; their totals.
    pub fn finish(mut self, timeout: Duration) -> Result<Vec<Made>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        for w in &mut self.workers {
            let status = loop {
                if let Ok(Some(st)) = w.child.try_wait() {
                    break st;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "the {} generator did not end within {} s of its time",
                        w.name,
                        timeout.as_secs()
                    ));
                }
                thread::sleep(Duration::from_millis(50));
            };
            if let Some(r) = w.reader.take() {
                let _ = r.join();
            }
            let last = w
                .progress
                .last
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default();
            if !status.success() {
                return Err(format!(
                    "the {} generator failed ({status}): {last}",
                    w.name
                ));
            }
            let result = measure::parse_key_values(&last);
            let get = |k: &str| result.get(k).copied().unwrap_or(0.0) as u64;
            out.push(Made {
                name: w.name,
                made: get("made"),
                failed: get("failed"),
            });
        }
        self.listener = None;
        Ok(out)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
            if let Some(r) = w.reader.take() {
                let _ = r.join();
            }
        }
    }
}

/// Starts `xtask bench-worker <args>` and follows its stdout.
fn spawn(env: &Env, name: &'static str, kind: Kind, args: &[String]) -> Result<Worker> {
    let mut cmd = Command::new(&env.worker);
    cmd.arg("bench-worker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Its own group (Ctrl-C reaches only xtask, which stops it in order); killed with xtask.
    monitors::own_group(&mut cmd, libc::SIGKILL);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", sh::display(&cmd)))?;
    let stdout = child.stdout.take().ok_or("no stdout to follow")?;
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let kv = measure::parse_key_values(&line);
            if let Some(m) = kv.get("made") {
                p.made.store(*m as u64, Relaxed);
            }
            if let Some(f) = kv.get("failed") {
                p.failed.store(*f as u64, Relaxed);
            }
            if let Ok(mut last) = p.last.lock() {
                *last = line;
            }
        }
    });
    Ok(Worker {
        name,
        kind,
        child,
        progress,
        reader: Some(reader),
    })
}
