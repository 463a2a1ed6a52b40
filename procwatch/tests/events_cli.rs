//! `procwatch events` with the eBPF sensor, end to end: JSONL on stdout limited to the requested
//! kinds, and on SIGINT a clean exit with the counts (received per kind, lost, malformed).
use std::{
    io::{BufRead, BufReader, Read},
    net::TcpListener,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn events_stream_is_jsonl_of_requested_kinds_and_sigint_prints_counts() {
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "procwatch events needs root to load eBPF programs"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_procwatch"))
        .args(["events", "--sensor", "ebpf", "--kinds", "exec,connect"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("procwatch starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut err_lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("procwatch reports readiness");
        let ready = line.contains("streaming events");
        err_lines.push(line);
        if ready {
            break;
        }
    }

    let marker = "pw-events-cli-marker";
    let mut pids = Vec::new();
    for _ in 0..20 {
        let status = Command::new("/bin/true").arg(marker).spawn().expect("true");
        pids.push(status.id());
        let _ = { status }.wait();
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    std::thread::sleep(Duration::from_millis(500));

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("procwatch exits");
    assert!(status.success(), "exit status {status:?}");
    let stdout = out.join().expect("stdout thread");
    err_lines.extend(rx.try_iter());

    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for e in &events {
        let kind = e["kind"].as_str().expect("kind");
        assert!(
            kind == "exec" || kind == "connect",
            "unrequested kind {kind}"
        );
        assert_eq!(e["sensor"], "ebpf");
        assert!(e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    for pid in &pids {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "exec" && e["tgid"] == *pid && e["argv"][1] == marker),
            "exec of {pid} missing"
        );
    }
    // The connect came from this test process's own pid; only the test's pid is not filtered.
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "connect" && e["port"] == port && e["addr"] == "127.0.0.1"),
        "connect to {port} missing"
    );

    let summary = err_lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("procwatch events: "))
        .unwrap_or_else(|| panic!("no summary on stderr: {err_lines:#?}"));
    let summary: Value = serde_json::from_str(summary).expect("summary is JSON");
    assert_eq!(summary["stopped"], "SIGINT");
    let stats = &summary["stats"];
    assert!(
        stats["received"]["exec"].as_u64().is_some_and(|n| n >= 20),
        "{stats}"
    );
    assert!(
        stats["received"]["connect"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{stats}"
    );
    assert_eq!(stats["lost_total"], 0);
    assert_eq!(stats["malformed"], 0);
    assert!(stats["kernel_lost"].is_object());
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn without_privilege_the_error_says_what_is_needed() {
    use std::os::unix::{fs::PermissionsExt, process::CommandExt};
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "needs root to drop to an unprivileged user"
    );
    // A copy the unprivileged user can execute wherever the checkout lives.
    let dir = std::env::temp_dir().join(format!("pw-nopriv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let bin = dir.join("procwatch");
    // Written by a `cp` child, never by a descriptor of this multi-threaded test process, which
    // another test's fork could inherit and make the exec below fail with ETXTBSY.
    let copied = Command::new("cp")
        .args(["--preserve=mode", "--", env!("CARGO_BIN_EXE_procwatch")])
        .arg(&bin)
        .status()
        .expect("run cp");
    assert!(copied.success(), "cp procwatch: {copied}");
    let out = Command::new(&bin)
        .args(["events", "--sensor", "ebpf", "--duration", "1"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run as nobody");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("needs root") && err.contains("CAP_BPF"),
        "{err}"
    );
    assert_eq!(err.matches("needs root").count(), 1, "said once: {err}");
}
