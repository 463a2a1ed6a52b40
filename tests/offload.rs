//! Nothing a monitored process does to its executable may stall detection (as root, with a
//! real FUSE filesystem that stops answering): reads that hang are abandoned and counted,
//! sweeps go on, other processes are still alerted promptly. (A command line paged from such a
//! file cannot hang a reader: the kernel reads /proc/PID/cmdline and environ from anonymous
//! memory only, since CVE-2018-1120.) And a process in another mount namespace is judged by
//! the files of its namespace.
//!
//! The hung filesystem is mounted in a mount namespace of its own, so that only processes that
//! look into that namespace (this procwatch, through /proc/PID/root) can be held by it; every
//! other monitor on the machine sees no such path.
use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use procwatch_tests::{Monitor, TempDir, has_rule, require_root, scratch_base};

const FAST: &str = "sweep_interval: 1s\ncpu_window: 1s\n";
/// How long the hung filesystem may live at most (the test needs well under a minute).
const SAFETY: Duration = Duration::from_secs(90);

fn pw_fuse() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pw-fuse"))
}

/// Why this machine cannot run a FUSE test, if it cannot.
fn fuse_missing() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse does not exist".into());
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("fuse"))
    {
        return Some("the kernel has no fuse filesystem".into());
    }
    None
}

/// The first line a child prints, within `timeout`.
fn first_line(child: &mut Child, timeout: Duration) -> String {
    let out = child.stdout.take().expect("piped stdout");
    line_within(out, timeout)
}

/// Every line of `out`, as it comes (read by a thread of its own).
fn lines(out: ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line of `out`, within `timeout`.
fn line_within(out: ChildStdout, timeout: Duration) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("no line within {timeout:?}"))
        .trim()
        .to_string()
}

/// The hung filesystem and the test's own processes that use it. Dropping it (also when the
/// test fails) kills the server first, which makes the kernel fail every held request, so the
/// stuck readers and the victims can end; then the victims; then detaches the mount.
struct Hung {
    server: Arc<Mutex<Child>>,
    server_pid: u32,
    victims: Vec<Child>,
    mnt: PathBuf,
    _dir: TempDir,
}

impl Hung {
    fn start(program: &Path) -> Self {
        let dir = TempDir::new_in(&scratch_base(), "fuse");
        let mnt = dir.0.join("mnt");
        std::fs::create_dir_all(&mnt).expect("mountpoint");
        let mut server = Command::new("unshare")
            .args(["--mount", "--propagation", "private"])
            .arg(pw_fuse())
            .arg("serve")
            .arg(&mnt)
            .arg(program)
            .stdout(Stdio::piped())
            .spawn()
            .expect("pw-fuse serve");
        let line = first_line(&mut server, Duration::from_secs(10));
        let server_pid = server.id();
        let server = Arc::new(Mutex::new(server));
        // The safety net: a procwatch with a thread in a request the server holds cannot exit,
        // and a failing test waits for procwatch before it would drop this; the server goes
        // after SAFETY whatever happens, so a failure is reported, never a hung test. (A child
        // not yet waited for keeps its pid: the kill cannot hit another process.)
        let net = server.clone();
        std::thread::spawn(move || {
            std::thread::sleep(SAFETY);
            if let Ok(mut s) = net.lock() {
                let _ = s.kill();
            }
        });
        let hung = Self {
            server,
            server_pid,
            victims: Vec::new(),
            mnt,
            _dir: dir,
        };
        assert_eq!(line, "mounted", "pw-fuse serve said {line:?}");
        hung
    }

    /// `path` (under the mount) as this process reaches it: through the server's root.
    fn outside(&self, path: &Path) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/{}/root", self.server_pid));
        p.push(path.strip_prefix("/").unwrap_or(path));
        p
    }

    /// From now on every request to the filesystem is held.
    fn hang_everything(&self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.server_pid as i32, libc::SIGUSR1) };
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        if let Ok(mut s) = self.server.lock() {
            let _ = s.kill();
            let _ = s.wait();
        }
        for v in &mut self.victims {
            let _ = v.kill();
            let _ = v.wait();
        }
        // The mount goes with its namespace, when the last process in it is gone.
    }
}

/// True when reading `path` does not finish within `within` (the reading thread is left
/// behind; it ends when the filesystem server dies).
fn read_hangs(path: PathBuf, within: Duration) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read(&path).map(|b| b.len()));
    });
    rx.recv_timeout(within).is_err()
}

/// Runs `exe args` to its end and returns its pid.
fn run(exe: &Path, args: &[&str]) -> u32 {
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
    let pid = child.id();
    let _ = child.wait();
    pid
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn hung_reads_are_abandoned_and_detection_goes_on() {
    require_root!();
    if let Some(why) = fuse_missing() {
        procwatch_tests::skip("hung_reads_are_abandoned_and_detection_goes_on", &why);
        return;
    }
    let bash = Path::new("/bin/bash");
    let mut fs = Hung::start(bash);

    // B: bash run from the FUSE filesystem (in its namespace), read whole first so that it
    // never needs the server again; it connects on a line from us, to a port every default
    // config allows and only this test's monitor does not (no other monitor alerts on it).
    let prog = fs.mnt.join("prog");
    assert_eq!(
        std::fs::read(fs.outside(&prog)).expect("read prog").len() as u64,
        std::fs::metadata(bash).expect("bash").len()
    );
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:443") else {
        procwatch_tests::skip(
            "hung_reads_are_abandoned_and_detection_goes_on",
            "127.0.0.1:443 is taken",
        );
        return;
    };
    let script =
        "echo started; read _; exec 3<>/dev/tcp/127.0.0.1/443; echo connected; sleep 60; exit 0";
    let mut b = Command::new("nsenter")
        .arg(format!("--mount=/proc/{}/ns/mnt", fs.server_pid))
        .arg("--")
        .arg(&prog)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bash from FUSE");
    let b_pid = b.id();
    let mut b_stdin: ChildStdin = b.stdin.take().expect("stdin");
    let b_out = lines(b.stdout.take().expect("stdout"));
    fs.victims.push(b);
    // Fully started (bash looks at its own path as it starts) before the filesystem hangs.
    let started = b_out.recv_timeout(Duration::from_secs(10));
    assert_eq!(started.as_deref(), Ok("started"));

    // From now on even a stat of B's executable hangs, and so does opening it to hash it.
    fs.hang_everything();
    assert!(
        read_hangs(fs.outside(&prog), Duration::from_secs(1)),
        "the positive control: reading B's executable should block"
    );

    // Before reads were abandoned, the first sweep (which stats every executable, to tell a
    // replaced one) never finished: no "monitoring" at all.
    let t0 = Instant::now();
    let m = Monitor::start(&format!("{FAST}ports: \"53\"\n"), &[]);
    let ready_after = t0.elapsed();
    assert!(
        ready_after < Duration::from_secs(20),
        "monitoring only after {ready_after:?}"
    );
    let _ = writeln!(b_stdin, "go");
    let connected = b_out.recv_timeout(Duration::from_secs(10));
    assert_eq!(connected.as_deref(), Ok("connected"));
    let connect = Instant::now();
    let b_alert = m.expect_rule(b_pid, "suspicious_port");
    assert!(
        connect.elapsed() < Duration::from_secs(10),
        "B alerted {:?} after its connect",
        connect.elapsed()
    );
    assert!(
        b_alert["sha256"].is_null(),
        "B's executable cannot be read, so no digest: {b_alert:#}"
    );

    // Other processes are alerted promptly: a binary in /tmp, after all that.
    let tmp = TempDir::new_in("/tmp", "offload");
    let exe = tmp.0.join("payload");
    // Written through a child, so this process never holds a writable fd a fork could keep.
    let ok = Command::new("cp")
        .arg("/bin/true")
        .arg(&exe)
        .status()
        .expect("cp");
    assert!(ok.success());
    let started = Instant::now();
    let pid = run(&exe, &[]);
    m.expect_rule(pid, "tmp_exe");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "tmp_exe alert after {:?}",
        started.elapsed()
    );

    // Sweeps go on: a deletion only a sweep can see is still found.
    let scratch = TempDir::new_in(&scratch_base(), "offload-del");
    let doomed = scratch.0.join("doomed");
    assert!(
        Command::new("cp")
            .arg("/bin/sleep")
            .arg(&doomed)
            .status()
            .expect("cp")
            .success()
    );
    let mut child = Command::new(&doomed).arg("60").spawn().expect("doomed");
    std::thread::sleep(Duration::from_millis(200));
    std::fs::remove_file(&doomed).expect("delete");
    let del = m.expect_rule(child.id(), "deleted_exe");
    assert_eq!(del["trigger"]["kind"], "sweep");
    let _ = child.kill();
    let _ = child.wait();

    // A thread stuck in a request the server took cannot be killed, even by exit: procwatch
    // prints its summary, and its exit completes once the server is gone.
    m.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_secs(2));
    drop(fs);
    let (status, summary, _) = m.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let summary = summary.expect("summary");
    let abandoned = summary["offload"]["slow_reads_abandoned"]
        .as_u64()
        .unwrap_or(0);
    // B's executable in the first sweep, and again for the alert: each abandoned, counted.
    assert!(abandoned >= 2, "{summary:#}");
    assert!(
        summary["engine"]["sweeps"].as_u64().unwrap_or(0) >= 3,
        "sweeps went on: {summary:#}"
    );
    assert!(
        summary["engine"]["sweep_unread"].as_u64().unwrap_or(0) >= 1,
        "{summary:#}"
    );
    drop(listener);
}

/// A process in another mount namespace runs `DIR/tool` from a tmpfs that exists only there,
/// while on the host `DIR/tool` is another file: it is not "replaced". A file deleted inside
/// that namespace is still "deleted".
#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_container_process_is_judged_by_its_own_files() {
    require_root!();
    let dir = TempDir::new_in(&scratch_base(), "mntns");
    let host_tool = dir.0.join("tool");
    assert!(
        Command::new("cp")
            .arg("/bin/true")
            .arg(&host_tool)
            .status()
            .expect("cp")
            .success()
    );
    let m = Monitor::start(FAST, &[]);
    let d = dir.0.to_str().expect("utf-8");
    let script = format!(
        "mount -t tmpfs pw-ns {d} && cp /bin/sleep {d}/tool && cp /bin/sleep {d}/gone || exit 1; \
         {d}/tool 30 & t=$!; {d}/gone 30 & g=$!; sleep 0.5; rm {d}/gone; echo $t $g; wait"
    );
    let mut ns = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare");
    let line = line_within(ns.stdout.take().expect("stdout"), Duration::from_secs(10));
    let pids: Vec<u32> = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{line:?}");
    let (tool, gone) = (pids[0], pids[1]);
    let a = m.expect_rule(gone, "deleted_exe");
    assert!(
        a["reasons"].to_string().contains("was deleted"),
        "deleted inside its namespace: {a:#}"
    );
    // The sweep that found `gone` deleted judged `tool` too; one more sweep for good measure.
    std::thread::sleep(Duration::from_millis(2500));
    let wrong: Vec<_> = m
        .alerts()
        .into_iter()
        .filter(|a| a["pid"] == tool && has_rule(a, "deleted_exe"))
        .collect();
    let _ = ns.kill();
    let _ = Command::new("kill")
        .arg(tool.to_string())
        .arg(gone.to_string())
        .status();
    let _ = ns.wait();
    assert!(
        wrong.is_empty(),
        "the container's own tool is not replaced: {wrong:#?}"
    );
}
