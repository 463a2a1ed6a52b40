//! The eBPF sensor against real processes: for each event kind, a child does the thing and the
//! event for that child's pid must arrive with the right fields. Runs as root.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener},
    path::PathBuf,
    time::Duration,
};

use procwatch::sensor::{EventBody, ebpf::KillPolicy};
use procwatch_tests::{LiveSensor, TempDir, require_root, run_actor};

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(std::path::Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn exec_of_copied_binary_carries_filename_argv_and_ppid() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    let dir = TempDir::new_in("/tmp", "exec");
    let copy = dir.copy_exe(&actor(), "pw-copied");
    let marker = "marker-\u{e9}-arg";
    let (pid, status, _) = run_actor(copy.clone(), args(&["exit", "0", marker, "", "last"])).await;
    assert!(status.success());
    let e = sensor
        .expect("exec", pid, |e| {
            e.tgid == pid && matches!(e.body, EventBody::Exec(_))
        })
        .await;
    let EventBody::Exec(x) = &e.body else {
        unreachable!()
    };
    assert_eq!(x.filename, copy);
    let argv: Vec<String> = x
        .argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        argv,
        [
            copy.to_string_lossy().as_ref(),
            "exit",
            "0",
            marker,
            "",
            "last"
        ]
    );
    assert!(!x.args_truncated && !x.args_missing);
    assert_eq!(
        x.ppid,
        std::process::id(),
        "ppid comes from the kernel's fork record"
    );
    assert_eq!(e.comm.to_string_lossy(), "pw-copied");
    assert_eq!(e.uid, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn exec_of_long_argv_is_truncated_and_flagged() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    let long = "x".repeat(400);
    let mut list = vec!["exit".to_string(), "0".to_string(), long];
    list.extend((0..40).map(|i| format!("a{i}")));
    let (pid, _, _) = run_actor(actor(), list).await;
    let e = sensor
        .expect("exec", pid, |e| {
            e.tgid == pid && matches!(e.body, EventBody::Exec(_))
        })
        .await;
    let EventBody::Exec(x) = &e.body else {
        unreachable!()
    };
    assert!(x.args_truncated, "{x:?}");
    assert!(x.argv.len() <= procwatch_common::MAX_ARGS);
    assert_eq!(x.argv[1], "exit");
    assert_eq!(
        x.argv[3].len(),
        procwatch_common::ARG_LEN - 1,
        "a long argument is cut, not dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn fork_and_exit_with_status() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    let (pid, _, lines) = run_actor(actor(), args(&["fork"])).await;
    let child: u32 = lines
        .iter()
        .find_map(|l| l.strip_prefix("child ").and_then(|p| p.parse().ok()))
        .expect("actor prints its child's pid");
    let e = sensor
        .expect(
            "fork",
            pid,
            |e| matches!(e.body, EventBody::Fork(f) if f.child_tgid == child),
        )
        .await;
    let EventBody::Fork(f) = e.body else {
        unreachable!()
    };
    assert_eq!((f.parent_tgid, e.tgid), (pid, pid));

    let (pid, status, _) = run_actor(actor(), args(&["exit", "7"])).await;
    assert_eq!(status.code(), Some(7));
    let e = sensor
        .expect("exit", pid, |e| {
            e.tgid == pid && matches!(e.body, EventBody::Exit(_))
        })
        .await;
    assert_eq!(
        e.body,
        EventBody::Exit(procwatch::sensor::event::Exit { exit_code: Some(7) })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn threads_are_not_reported_as_forks() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    // std::thread::spawn goes through pthread_create: clone3(CLONE_THREAD | ...).
    let (pid, status, lines) = run_actor(actor(), args(&["threads", "16"])).await;
    assert!(
        status.success() && lines.iter().any(|l| l.starts_with("threads 16")),
        "{lines:?}"
    );
    sensor
        .expect("exit", pid, |e| {
            e.tgid == pid && matches!(e.body, EventBody::Exit(_))
        })
        .await;
    let forks = sensor
        .seen
        .iter()
        .filter(|e| matches!(e.body, EventBody::Fork(f) if f.parent_tgid == pid))
        .count();
    assert_eq!(forks, 0, "thread creations reported as forks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn ptrace_attach_and_seize_name_the_target() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    for (action, request) in [
        ("ptrace-attach", "PTRACE_ATTACH"),
        ("ptrace-seize", "PTRACE_SEIZE"),
    ] {
        let (pid, _, lines) = run_actor(actor(), args(&[action])).await;
        let target: u64 = lines
            .iter()
            .find_map(|l| l.strip_prefix("target ").and_then(|p| p.parse().ok()))
            .expect("actor prints its target");
        let e = sensor
            .expect(action, pid, |e| {
                e.tgid == pid && matches!(e.body, EventBody::Ptrace(_))
            })
            .await;
        let EventBody::Ptrace(p) = e.body else {
            unreachable!()
        };
        assert_eq!((p.request_name, p.target_pid), (request, target));
        assert!(
            lines.iter().any(|l| l == "after"),
            "policy is off: the actor survives"
        );
        assert_eq!(e.kernel_action, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn connect_over_ipv4_and_ipv6_loopback() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let listener = TcpListener::bind((ip, 0)).expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        let (pid, _, lines) = run_actor(
            actor(),
            args(&["connect", &ip.to_string(), &port.to_string()]),
        )
        .await;
        assert!(
            lines.iter().any(|l| l == "after true"),
            "connect failed: {lines:?}"
        );
        let e = sensor
            .expect("connect", pid, |e| {
                e.tgid == pid && matches!(e.body, EventBody::Connect(_))
            })
            .await;
        let EventBody::Connect(c) = e.body else {
            unreachable!()
        };
        assert_eq!((c.addr, c.port), (ip, port));
        assert_eq!(c.family, if ip.is_ipv4() { "inet" } else { "inet6" });
        assert!(c.fd >= 3, "fd {}", c.fd);
        assert_eq!(
            c.socket,
            Some("stream"),
            "the socket type, read in the kernel"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn wx_memory_via_mprotect_mmap_and_pkey_mprotect() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    for (action, syscall) in [
        ("mprotect-wx", "mprotect"),
        ("mmap-wx", "mmap"),
        ("pkey-mprotect-wx", "pkey_mprotect"),
    ] {
        let (pid, status, lines) = run_actor(actor(), args(&[action])).await;
        assert!(status.success(), "{action}: {lines:?}");
        let e = sensor
            .expect(action, pid, |e| {
                e.tgid == pid && matches!(e.body, EventBody::WxMem(_))
            })
            .await;
        let EventBody::WxMem(w) = e.body else {
            unreachable!()
        };
        assert_eq!(w.syscall, syscall);
        assert_eq!(w.prot & 0x6, 0x6, "W and X requested");
        assert!(w.len == 4096 || w.len == 8192, "len {}", w.len);
    }
    // The actor's own RW mapping (not W+X) must have been filtered in the kernel.
    let rw_only = sensor
        .seen
        .iter()
        .filter(|e| matches!(e.body, EventBody::WxMem(w) if w.prot & 0x6 != 0x6))
        .count();
    assert_eq!(rw_only, 0, "non-W+X calls reached user space");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn memfd_create_carries_its_name() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    let (pid, _, _) = run_actor(actor(), args(&["memfd", "pw-test-memfd"])).await;
    let e = sensor
        .expect("memfd", pid, |e| {
            e.tgid == pid && matches!(e.body, EventBody::Memfd(_))
        })
        .await;
    let EventBody::Memfd(m) = e.body else {
        unreachable!()
    };
    assert_eq!(m.name, "pw-test-memfd");
    assert_eq!(m.flags, libc::MFD_CLOEXEC);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn no_event_is_lost_or_malformed_in_a_burst_of_execs() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    let mut pids = Vec::new();
    for _ in 0..200 {
        let (pid, _, _) = run_actor(actor(), args(&["exit", "0"])).await;
        pids.push(pid);
    }
    let last = *pids.last().expect("ran");
    sensor
        .expect("exit", last, |e| {
            e.tgid == last && matches!(e.body, EventBody::Exit(_))
        })
        .await;
    let _ = sensor.wait_for(Duration::from_millis(200), |_| false).await;
    for pid in &pids {
        assert!(
            sensor
                .seen
                .iter()
                .any(|e| e.tgid == *pid && matches!(e.body, EventBody::Exec(_))),
            "exec of {pid} missing"
        );
    }
    let snap = sensor.stats.snapshot();
    assert_eq!(snap.malformed, 0);
    assert_eq!(snap.lost_total, 0);
}

/// The start time /proc shows for `pid` (clock ticks since boot).
fn proc_start(pid: u32) -> u64 {
    procwatch::procfs::stat::read_stat(pid)
        .unwrap_or_else(|e| panic!("stat {pid}: {e}"))
        .start_ticks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn start_times_and_the_executed_file_come_from_the_kernel() {
    require_root!();
    use procwatch::identity::{ExeId, ticks_from_boot_ns};
    let mut sensor = LiveSensor::start(KillPolicy::default());
    let dir = TempDir::new_in("/tmp", "ident");
    let exe = dir.copy_exe(&actor(), "pw-ident");
    let link = dir.0.join("pw-ident-link");
    std::os::unix::fs::symlink(&exe, &link).expect("symlink");
    // Started through a symlink: the kernel names the file itself.
    let mut linked = procwatch_tests::Actor::spawn(&link, &["--wait", "exit", "0"]);
    let pid = linked.pid();
    assert!(linked.read_line().is_some_and(|l| l.starts_with("ready")));
    let start = proc_start(pid);
    linked.go();
    let _ = tokio::task::spawn_blocking(move || linked.finish()).await;
    let e = sensor
        .expect("exec", pid, |e| {
            e.tgid == pid && matches!(e.body, EventBody::Exec(_))
        })
        .await;
    assert_eq!(e.start_ticks(), Some(start), "exec start time: {e:?}");
    let EventBody::Exec(x) = &e.body else {
        unreachable!()
    };
    assert_eq!(x.filename, link, "the path as exec'd");
    assert_eq!(
        x.exe,
        Some(ExeId::of_path(&exe).expect("stat")),
        "the file as the kernel sees it"
    );
    assert_eq!(x.ppid, std::process::id(), "real_parent from the kernel");
    // Every later event of the process carries the same start time.
    let exit = sensor
        .expect("exit", pid, |e| {
            e.tgid == pid && matches!(e.body, EventBody::Exit(_))
        })
        .await;
    assert_eq!(exit.start_ticks(), Some(start));

    // A fork names the child with its own start time (an actor forks: this test process is
    // "procwatch" to the sensor, and its own forks are filtered).
    let mut parent = procwatch_tests::Actor::spawn(&actor(), &["--fork", "sleep", "2"]);
    let ppid = parent.pid();
    let children = format!("/proc/{ppid}/task/{ppid}/children");
    let mut cpid = 0;
    assert!(
        procwatch_tests::eventually(Duration::from_secs(5), || {
            cpid = std::fs::read_to_string(&children)
                .ok()
                .and_then(|c| c.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            cpid != 0
        }),
        "the actor forked"
    );
    let cstart = proc_start(cpid);
    let f = sensor
        .expect(
            "fork",
            ppid,
            |e| matches!(&e.body, EventBody::Fork(f) if f.child_tgid == cpid),
        )
        .await;
    let _ = parent.child.kill();
    let _ = tokio::task::spawn_blocking(move || parent.finish()).await;
    let EventBody::Fork(f) = f.body else {
        unreachable!()
    };
    assert_eq!(f.parent_tgid, ppid);
    assert_eq!(
        f.child_start_time_ns.and_then(ticks_from_boot_ns),
        Some(cstart)
    );
}

/// The offset of `field` in a format file, parsed here independently of procwatch's parser.
fn format_offset(category: &str, name: &str, field: &str) -> Option<u32> {
    let root = if std::path::Path::new("/sys/kernel/tracing/events").is_dir() {
        "/sys/kernel/tracing"
    } else {
        "/sys/kernel/debug/tracing"
    };
    let text = std::fs::read_to_string(format!("{root}/events/{category}/{name}/format")).ok()?;
    text.lines().find_map(|line| {
        let (decl, rest) = line
            .trim()
            .strip_prefix("field:")?
            .split_once(";\toffset:")?;
        let ident = decl.rsplit(' ').next()?.split('[').next()?;
        (ident == field).then(|| rest.split(';').next()?.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn loader_passes_the_format_files_offsets_and_btf_offsets() {
    require_root!();
    use procwatch::sensor::tracefs::FIELDS;
    let sensor = LiveSensor::start(KillPolicy::default());
    let passed = sensor.sensor.tracepoint_offsets();
    for (slot, category, name, field) in FIELDS {
        let want = format_offset(category, name, field).unwrap_or(procwatch_common::tp::UNKNOWN);
        assert_eq!(passed[slot], want, "{category}:{name} {field}");
    }
    // Every field the programs read exists on this kernel (group_dead included).
    assert!(
        passed.iter().all(|&o| o != procwatch_common::tp::UNKNOWN),
        "{passed:?}"
    );
    let kernel = sensor.sensor.kernel_offsets().expect("this kernel has BTF");
    assert_eq!(kernel[procwatch_common::ko::VALID], 1);
    assert_eq!(
        kernel,
        &procwatch::sensor::btf::kernel_offsets(std::path::Path::new(
            procwatch::sensor::btf::VMLINUX_BTF
        ))
        .expect("btf")
    );
    // The BTF fork probe runs, so the classic fork probes are not attached.
    let probes: Vec<&str> = sensor
        .sensor
        .probes()
        .iter()
        .map(|p| p.tracepoint.as_str())
        .collect();
    assert!(probes.contains(&"tp_btf:sched_process_fork"), "{probes:?}");
    assert!(!probes.contains(&"syscalls:sys_enter_clone3"), "{probes:?}");
    assert!(sensor.sensor.probes_missing().is_empty());
}
