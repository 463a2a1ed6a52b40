//! The learner with a fake clock: learning, stability, poisoning, anomalies, known findings.
use std::{net::IpAddr, path::Path, time::Duration};

use super::*;
use crate::baseline::known::{Fact, Known};
use crate::baseline::net::Proto;

const NGINX: &str = "/usr/sbin/nginx";

fn cfg() -> config::Baseline {
    config::Baseline {
        learning_period: Duration::from_secs(100),
        stable_after: Duration::from_secs(10),
        new_executable_learning: Duration::from_secs(50),
        resource_min_samples: 5,
        ..config::Baseline::default()
    }
}

fn pid(n: u32) -> ProcessId {
    ProcessId {
        pid: n,
        start: 1000 + u64::from(n),
    }
}

fn learner() -> Learner {
    Learner::new(Model::new(0, "test"), &cfg(), 1024)
}

fn dest(addr: &str, port: u16) -> Destination {
    Destination {
        addr: addr.parse::<IpAddr>().expect("addr"),
        port,
        proto: Proto::Tcp,
        direction: Direction::Outbound,
    }
}

fn obs<'a>(p: ProcessId, exe: &'a str, behaviour: Behaviour<'a>) -> Observation<'a> {
    Observation {
        process: p,
        exe: Path::new(exe),
        behaviour,
    }
}

/// What a small web server does, as process `p` at time `t`.
fn serve(l: &mut Learner, p: ProcessId, t: Secs, cpu: f64) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let parent = Path::new("/usr/lib/systemd/systemd");
    for b in [
        Behaviour::Exec {
            parent_exe: Some(parent),
            user: Some("www-data"),
        },
        Behaviour::Connect(dest("10.0.0.5", 5432)),
        Behaviour::Connect(dest("127.0.0.1", 8080)),
        Behaviour::Spawn {
            child_exe: Path::new("/usr/bin/logger"),
        },
        Behaviour::FileOpen(Path::new("/etc/nginx/nginx.conf")),
        Behaviour::FileOpen(Path::new("/var/www/html/index.html")),
        Behaviour::Sample {
            cpu_pct: Some(cpu),
            rss_bytes: Some(50 << 20),
        },
    ] {
        out.extend(l.observe(&obs(p, NGINX, b), t));
    }
    out
}

/// Trains on `n` processes doing the same thing over the learning period, then lets every
/// dimension settle.
fn trained(n: u32) -> Learner {
    let mut l = learner();
    for i in 0..n {
        let p = pid(i + 1);
        assert!(serve(&mut l, p, u64::from(i), 10.0 + f64::from(i % 3)).is_empty());
        l.process_exited(p);
    }
    l
}

fn rules(v: &[Anomaly]) -> Vec<AnomalyRule> {
    v.iter().map(|a| a.rule).collect()
}

#[test]
fn the_same_workload_raises_nothing_after_learning() {
    let mut l = trained(6);
    assert!(l.is_learning(50));
    let after = 200;
    assert!(!l.is_learning(after));
    let p = pid(100);
    let out = serve(&mut l, p, after, 11.0);
    assert!(out.is_empty(), "{out:#?}");
    assert_eq!(l.ml_score(p), 0.0);
    assert!(
        l.model().learning.ended.is_some(),
        "learning ended by itself"
    );
}

#[test]
fn each_deviation_raises_its_rule_quoting_the_baseline() {
    let mut l = trained(6);
    let t = 200;
    let p = pid(100);
    assert!(serve(&mut l, p, t, 11.0).is_empty());

    let child = l.observe(
        &obs(
            p,
            NGINX,
            Behaviour::Spawn {
                child_exe: Path::new("/bin/sh"),
            },
        ),
        t,
    );
    assert_eq!(rules(&child), [AnomalyRule::ProcessSpawnUnknown]);
    assert_eq!(
        child[0].reason(),
        "nginx spawned /bin/sh; baseline children: /usr/bin/logger"
    );

    let port = l.observe(
        &obs(p, NGINX, Behaviour::Connect(dest("192.168.1.100", 4444))),
        t,
    );
    assert_eq!(rules(&port), [AnomalyRule::NetworkUnknownConnection]);
    assert_eq!(
        port[0].reason(),
        "Unknown TCP connection to 192.168.1.100:4444; baseline: nginx connects to ports 5432, 8080"
    );

    let file = l.observe(
        &obs(
            p,
            NGINX,
            Behaviour::FileOpen(Path::new("/root/.bash_history")),
        ),
        t,
    );
    assert_eq!(rules(&file), [AnomalyRule::FileAccessUnknown]);
    assert_eq!(
        file[0].reason(),
        "Access to /root/.bash_history; baseline: /etc/nginx/nginx.conf, /var/www/html/index.html"
    );

    let spike = l.observe(
        &obs(
            p,
            NGINX,
            Behaviour::Sample {
                cpu_pct: Some(87.3),
                rss_bytes: None,
            },
        ),
        t,
    );
    assert_eq!(rules(&spike), [AnomalyRule::ResourceSpike]);
    assert!(
        spike[0]
            .reason()
            .starts_with("CPU 87.3% (baseline 11.0% ± "),
        "{}",
        spike[0].reason()
    );

    // Each at most once per process; ml_score is the highest severity.
    assert!(
        l.observe(
            &obs(p, NGINX, Behaviour::Connect(dest("192.168.1.100", 4444))),
            t
        )
        .is_empty()
    );
    let max = [&child, &port, &file, &spike]
        .iter()
        .map(|v| v[0].severity)
        .fold(0.0, f64::max);
    assert_eq!(l.ml_score(p), max);
    assert_eq!(l.anomalies(p).len(), 4);
    for a in l.anomalies(p) {
        assert!(
            (0.0..=1.0).contains(&a.severity) && a.severity > 0.5,
            "{a:?}"
        );
        assert_eq!(a.confidence.processes, 7);
        assert!(a.confidence.stable_since.is_some());
    }
    // Another process reports the same deviation again.
    let q = pid(101);
    assert_eq!(
        rules(&l.observe(
            &obs(q, NGINX, Behaviour::Connect(dest("192.168.1.100", 4444))),
            t
        )),
        [AnomalyRule::NetworkUnknownConnection]
    );
}

#[test]
fn a_small_cpu_change_is_no_spike_thanks_to_the_floor() {
    let mut l = trained(6);
    // Learned 10..12 %, σ < 1: without the 5-point floor, 16 % would be 5σ away.
    let p = pid(100);
    let out = l.observe(
        &obs(
            p,
            NGINX,
            Behaviour::Sample {
                cpu_pct: Some(16.0),
                rss_bytes: Some(60 << 20),
            },
        ),
        200,
    );
    assert!(out.is_empty(), "{out:?}");
    // Non-finite samples are refused, never learned.
    let before = l.model().get(NGINX).map(|b| b.resources.cpu);
    let out = l.observe(
        &obs(
            p,
            NGINX,
            Behaviour::Sample {
                cpu_pct: Some(f64::NAN),
                rss_bytes: None,
            },
        ),
        200,
    );
    assert!(out.is_empty());
    assert_eq!(l.model().get(NGINX).map(|b| b.resources.cpu), before);
    assert_eq!(l.stats().ignored, 1);
}

#[test]
fn one_process_cannot_teach_the_model() {
    let mut l = learner();
    // One (compromised) process does something odd during learning...
    let evil = pid(1);
    serve(&mut l, evil, 1, 10.0);
    l.observe(
        &obs(evil, NGINX, Behaviour::Connect(dest("203.0.113.9", 4444))),
        2,
    );
    l.observe(
        &obs(
            evil,
            NGINX,
            Behaviour::Spawn {
                child_exe: Path::new("/bin/sh"),
            },
        ),
        2,
    );
    // ... it repeats it a thousand times: still one process.
    for _ in 0..1000 {
        l.observe(
            &obs(evil, NGINX, Behaviour::Connect(dest("203.0.113.9", 4444))),
            3,
        );
    }
    for i in 2..6 {
        serve(&mut l, pid(i), u64::from(i), 10.0);
    }
    let b = l.model().get(NGINX).expect("learned");
    let e4444 = b
        .network
        .entries
        .iter()
        .find(|e| e.key.port == 4444)
        .expect("seen");
    assert_eq!((e4444.count, e4444.processes), (1001, 1));
    assert!(!e4444.is_normal(2));
    let p = pid(100);
    let out = l.observe(
        &obs(p, NGINX, Behaviour::Connect(dest("203.0.113.9", 4444))),
        200,
    );
    assert_eq!(rules(&out), [AnomalyRule::NetworkUnknownConnection]);
    // Seen once before, so less rare than something never seen.
    let never = l.observe(
        &obs(p, NGINX, Behaviour::Connect(dest("203.0.113.9", 6666))),
        200,
    );
    assert!(
        out[0].severity < never[0].severity,
        "{} vs {}",
        out[0].severity,
        never[0].severity
    );
    let sh = l.observe(
        &obs(
            p,
            NGINX,
            Behaviour::Spawn {
                child_exe: Path::new("/bin/sh"),
            },
        ),
        200,
    );
    assert_eq!(rules(&sh), [AnomalyRule::ProcessSpawnUnknown]);
    assert!(
        sh[0].baseline.contains("/usr/bin/logger"),
        "{}",
        sh[0].baseline
    );
}

#[test]
fn min_processes_is_configurable() {
    let c = config::Baseline {
        min_processes: 3,
        ..cfg()
    };
    let mut l = Learner::new(Model::new(0, "t"), &c, 16);
    serve(&mut l, pid(1), 1, 10.0);
    serve(&mut l, pid(2), 2, 10.0);
    let b = l.model().get(NGINX).expect("b");
    assert!(b.children.entries.iter().all(|e| !e.is_normal(3)));
    serve(&mut l, pid(3), 3, 10.0);
    let b = l.model().get(NGINX).expect("b");
    assert!(b.children.entries.iter().all(|e| e.is_normal(3)));
}

#[test]
fn a_flagged_process_teaches_nothing_and_its_lessons_are_taken_back() {
    let mut l = learner();
    for i in 1..=3 {
        serve(&mut l, pid(i), 1, 10.0);
    }
    let before = l.model().get(NGINX).cloned().expect("b");
    // A process connects somewhere new and spawns a shell, with a sample far off...
    let evil = pid(9);
    serve(&mut l, evil, 2, 10.0);
    l.observe(
        &obs(evil, NGINX, Behaviour::Connect(dest("198.51.100.7", 9001))),
        2,
    );
    l.observe(
        &obs(
            evil,
            NGINX,
            Behaviour::Sample {
                cpu_pct: Some(99.0),
                rss_bytes: None,
            },
        ),
        2,
    );
    // ... then a never-silenced rule flags it: reverse_shell.
    l.note_findings(evil, &[Rule::ReverseShell]);
    let after = l.model().get(NGINX).cloned().expect("b");
    assert!(
        after.network.entries.iter().all(|e| e.key.port != 9001),
        "taken back"
    );
    assert_eq!(after.resources.cpu.n, before.resources.cpu.n);
    assert!((after.resources.cpu.mean - before.resources.cpu.mean).abs() < 1e-9);
    assert_eq!(after.resources.processes, before.resources.processes);
    for (a, b) in after.children.entries.iter().zip(&before.children.entries) {
        assert_eq!((a.count, a.processes), (b.count, b.processes));
    }
    // Later behaviour of that process is not learned either.
    l.observe(
        &obs(
            evil,
            NGINX,
            Behaviour::Spawn {
                child_exe: Path::new("/bin/nc"),
            },
        ),
        3,
    );
    assert!(
        l.model().get(NGINX).is_some_and(|b| b
            .children
            .entries
            .iter()
            .all(|e| e.key.exe != "/bin/nc"))
    );
    assert_eq!(l.stats().tainted, 1);
    assert!(l.stats().not_learned >= 1);
    // A rule known behaviour may silence (wx_mem) does not stop learning.
    let jit = pid(10);
    serve(&mut l, jit, 3, 10.0);
    l.note_findings(jit, &[Rule::WxMem, Rule::HighCpu]);
    assert_eq!(l.stats().tainted, 1);
}

#[test]
fn dimensions_become_stable_on_their_own() {
    let mut l = learner();
    for i in 1..=4 {
        serve(&mut l, pid(i), 10, 10.0);
    }
    // Children keep changing until the very end of learning (t=95..99).
    for (i, t) in [(5u32, 95u64), (6, 99)] {
        l.observe(
            &obs(
                pid(i),
                NGINX,
                Behaviour::Spawn {
                    child_exe: Path::new("/usr/bin/gzip"),
                },
            ),
            t,
        );
    }
    let p = pid(50);
    // t=102: learning is over; network is stable (quiet since t=10), children are not (t=99).
    let net = l.observe(
        &obs(p, NGINX, Behaviour::Connect(dest("10.9.9.9", 6379))),
        102,
    );
    assert_eq!(rules(&net), [AnomalyRule::NetworkUnknownConnection]);
    let kid = l.observe(
        &obs(
            p,
            NGINX,
            Behaviour::Spawn {
                child_exe: Path::new("/usr/bin/curl"),
            },
        ),
        102,
    );
    assert!(kid.is_empty(), "children still learning: {kid:?}");
    // A second process makes curl normal while children still learn; that resets the clock.
    l.observe(
        &obs(
            pid(51),
            NGINX,
            Behaviour::Spawn {
                child_exe: Path::new("/usr/bin/curl"),
            },
        ),
        104,
    );
    let b = l.model().get(NGINX).expect("b");
    assert_eq!(b.children.changed_at, 104);
    assert!(!b.children.is_stable(113, 10) && b.children.is_stable(114, 10));
    // Once stable, children are frozen: a new one is reported, not learned.
    let late = l.observe(
        &obs(
            pid(52),
            NGINX,
            Behaviour::Spawn {
                child_exe: Path::new("/bin/sh"),
            },
        ),
        120,
    );
    assert_eq!(rules(&late), [AnomalyRule::ProcessSpawnUnknown]);
    assert!(
        late[0].baseline.contains("/usr/bin/curl"),
        "{}",
        late[0].baseline
    );
    l.observe(
        &obs(
            pid(53),
            NGINX,
            Behaviour::Spawn {
                child_exe: Path::new("/bin/sh"),
            },
        ),
        121,
    );
    let b = l.model().get(NGINX).expect("b");
    assert!(
        b.children.entries.iter().all(|e| e.key.exe != "/bin/sh"),
        "frozen"
    );
    assert_eq!(
        b.children.changed_at, 104,
        "a frozen dimension does not change"
    );
}

#[test]
fn executables_first_seen_after_learning_get_their_own_window() {
    let mut l = trained(3);
    let tool = "/opt/tool/bin/tool";
    let t = 200;
    let out = l.observe(
        &obs(
            pid(70),
            tool,
            Behaviour::Exec {
                parent_exe: None,
                user: Some("alice"),
            },
        ),
        t,
    );
    assert_eq!(rules(&out), [AnomalyRule::UnknownExecutable]);
    assert_eq!(out[0].severity, 0.3, "baseline.unknown_executable");
    assert_eq!(
        out[0].reason(),
        "/opt/tool/bin/tool was never seen while learning; baseline: none yet; learning it until 1970-01-01T00:04:10Z"
    );
    // During its window it learns, and each new process of it is still unknown.
    l.observe(
        &obs(pid(70), tool, Behaviour::Connect(dest("10.1.1.1", 443))),
        t + 1,
    );
    let second = l.observe(
        &obs(pid(71), tool, Behaviour::Connect(dest("10.1.1.1", 443))),
        t + 2,
    );
    assert_eq!(rules(&second), [AnomalyRule::UnknownExecutable]);
    // After its window, it is judged like any other.
    let p = pid(72);
    let known = l.observe(
        &obs(p, tool, Behaviour::Connect(dest("10.1.1.2", 443))),
        t + 60,
    );
    assert!(known.is_empty(), "{known:?}");
    let new = l.observe(
        &obs(p, tool, Behaviour::Connect(dest("10.1.1.2", 8443))),
        t + 60,
    );
    assert_eq!(rules(&new), [AnomalyRule::NetworkUnknownConnection]);
    // Nothing is unknown while the model is still learning.
    let mut fresh = learner();
    assert!(
        fresh
            .observe(
                &obs(
                    pid(1),
                    tool,
                    Behaviour::Exec {
                        parent_exe: None,
                        user: None
                    }
                ),
                5
            )
            .is_empty()
    );
}

#[test]
fn train_makes_everything_stable_at_once() {
    let mut l = learner();
    for i in 1..=3 {
        serve(&mut l, pid(i), 5, 10.0 + f64::from(i));
    }
    l.finish_training(6);
    assert!(!l.is_learning(7));
    assert!(l.model().learning.trained);
    // Right after training: no quiet time has passed, yet it monitors.
    let p = pid(9);
    assert!(serve(&mut l, p, 7, 11.0).is_empty());
    let out = l.observe(
        &obs(
            p,
            NGINX,
            Behaviour::Spawn {
                child_exe: Path::new("/bin/sh"),
            },
        ),
        7,
    );
    assert_eq!(rules(&out), [AnomalyRule::ProcessSpawnUnknown]);
    assert_eq!(out[0].confidence.stable_since, Some(6));
}

#[test]
fn files_generalise_into_patterns_but_never_over_sensitive_files() {
    let mut l = learner();
    for i in 1..=2 {
        for f in 0..8 {
            let path = format!("/etc/app/conf{f}.yaml");
            l.observe(
                &obs(pid(i), NGINX, Behaviour::FileOpen(Path::new(&path))),
                1,
            );
        }
        l.observe(
            &obs(
                pid(i),
                NGINX,
                Behaviour::FileOpen(Path::new("/proc/4242/mem")),
            ),
            1,
        );
        l.observe(
            &obs(
                pid(i),
                NGINX,
                Behaviour::FileOpen(Path::new("/usr/lib/libc.so")),
            ),
            1,
        );
    }
    let b = l.model().get(NGINX).expect("b");
    let mut files: Vec<&str> = b
        .files
        .entries
        .iter()
        .map(|e| e.key.path.as_str())
        .collect();
    files.sort_unstable();
    assert_eq!(
        files,
        ["/etc/app/*", "/proc/*/mem"],
        "numbers are *, unwatched dropped"
    );
    let pattern = b
        .files
        .entries
        .iter()
        .find(|e| e.key.path == "/etc/app/*")
        .expect("p");
    assert_eq!((pattern.count, pattern.processes), (16, 2));
    assert_eq!(l.stats().unwatched, 2);

    let p = pid(9);
    let t = 200;
    let same_dir = l.observe(
        &obs(
            p,
            NGINX,
            Behaviour::FileOpen(Path::new("/etc/app/new.yaml")),
        ),
        t,
    );
    assert!(same_dir.is_empty(), "covered by /etc/app/*");
    let other_pid_mem = l.observe(
        &obs(p, NGINX, Behaviour::FileOpen(Path::new("/proc/77/mem"))),
        t,
    );
    assert!(other_pid_mem.is_empty(), "/proc/*/mem learned as such");
    let deeper = l.observe(
        &obs(p, NGINX, Behaviour::FileOpen(Path::new("/etc/app/sub/x"))),
        t,
    );
    assert_eq!(rules(&deeper), [AnomalyRule::FileAccessUnknown]);
    assert_eq!(deeper[0].baseline, "/etc/app/*, /proc/*/mem");
    assert_eq!(
        deeper[0].observed,
        Observed::File {
            path: "/etc/app/sub/x".into()
        }
    );

    // A learned /etc/* never covers /etc/shadow.
    let mut l = learner();
    for i in 1..=2 {
        for f in [
            "passwd",
            "group",
            "hosts",
            "resolv.conf",
            "nsswitch.conf",
            "localtime",
            "os-release",
            "ld.so.cache",
        ] {
            l.observe(
                &obs(
                    pid(i),
                    NGINX,
                    Behaviour::FileOpen(&Path::new("/etc").join(f)),
                ),
                1,
            );
        }
    }
    assert!(
        l.model().get(NGINX).is_some_and(|b| b
            .files
            .entries
            .iter()
            .any(|e| e.key.path == "/etc/*"))
    );
    let p = pid(9);
    assert!(
        l.observe(
            &obs(p, NGINX, Behaviour::FileOpen(Path::new("/etc/fstab"))),
            200
        )
        .is_empty()
    );
    let shadow = l.observe(
        &obs(p, NGINX, Behaviour::FileOpen(Path::new("/etc/shadow"))),
        200,
    );
    assert_eq!(rules(&shadow), [AnomalyRule::FileAccessUnknown]);
    assert_eq!(
        shadow[0].severity,
        severity(1.0, shadow[0].confidence.score())
    );
    assert!(
        shadow[0].detail.contains("sensitive"),
        "{}",
        shadow[0].detail
    );
    // Lexical tricks land on the real path.
    let q = pid(10);
    let trick = l.observe(
        &obs(
            q,
            NGINX,
            Behaviour::FileOpen(Path::new("/etc/nginx/../shadow")),
        ),
        200,
    );
    assert_eq!(
        trick[0].observed,
        Observed::File {
            path: "/etc/shadow".into()
        }
    );
}

#[test]
fn caps_evict_the_least_used_and_count() {
    let c = config::Baseline {
        caps: config::Caps {
            network: 4,
            ..config::Caps::default()
        },
        ..cfg()
    };
    let mut l = Learner::new(Model::new(0, "t"), &c, 16);
    for i in 1..=2 {
        // Port 443 is used a lot; 1000.. once each.
        for _ in 0..10 {
            l.observe(
                &obs(pid(i), NGINX, Behaviour::Connect(dest("10.0.0.1", 443))),
                1,
            );
        }
    }
    for port in 1000..1010 {
        l.observe(
            &obs(pid(3), NGINX, Behaviour::Connect(dest("10.0.0.1", port))),
            2,
        );
    }
    let b = l.model().get(NGINX).expect("b");
    assert_eq!(b.network.entries.len(), 4);
    assert!(
        b.network.entries.iter().any(|e| e.key.port == 443),
        "normal entry kept"
    );
    assert_eq!(b.evicted.network, 7);
    let e443 = b
        .network
        .entries
        .iter()
        .find(|e| e.key.port == 443)
        .expect("443");
    assert_eq!(e443.examples, ["10.0.0.1"]);
}

#[test]
fn known_findings_need_a_stable_normal_dimension() {
    let java = "/usr/lib/jvm/bin/java";
    let mut l = learner();
    for i in 1..=3 {
        l.observe(&obs(pid(i), java, Behaviour::WxMem), 1);
        l.observe(
            &obs(pid(i), java, Behaviour::Connect(dest("10.0.0.2", 5432))),
            1,
        );
        for _ in 0..6 {
            l.observe(
                &obs(
                    pid(i),
                    java,
                    Behaviour::Sample {
                        cpu_pct: Some(90.0),
                        rss_bytes: None,
                    },
                ),
                1,
            );
        }
    }
    let exe = Path::new(java);
    assert_eq!(l.known(exe, Rule::WxMem, Fact::WxMem, 50), Known::Learning);
    let t = 200;
    match l.known(exe, Rule::WxMem, Fact::WxMem, t) {
        Known::Known {
            baseline,
            confidence,
        } => {
            assert_eq!(baseline, "java makes W+X memory in 3 of 3 processes");
            assert_eq!(confidence.processes, 3);
        }
        other => panic!("{other:?}"),
    }
    let pg = dest("10.0.0.3", 5432);
    assert!(matches!(
        l.known(exe, Rule::SuspiciousPort, Fact::Connect(&pg), t),
        Known::Known { .. }
    ));
    let other = dest("10.0.0.3", 4444);
    assert_eq!(
        l.known(exe, Rule::SuspiciousPort, Fact::Connect(&other), t),
        Known::Unknown
    );
    assert!(matches!(
        l.known(exe, Rule::HighCpu, Fact::Cpu(92.0), t),
        Known::Known { .. }
    ));
    assert_eq!(
        l.known(exe, Rule::Ptrace, Fact::Ptrace, t),
        Known::NotSuppressible
    );
    assert_eq!(
        l.known(exe, Rule::ReverseShell, Fact::Executable, t),
        Known::NotSuppressible
    );
    assert_eq!(
        l.known(exe, Rule::FilelessExe, Fact::Executable, t),
        Known::NotSuppressible
    );
    assert_eq!(
        l.known(exe, Rule::WxMem, Fact::Ptrace, t),
        Known::NotTracked
    );
    assert_eq!(
        l.known(Path::new("/bin/other"), Rule::WxMem, Fact::WxMem, t),
        Known::NoBaseline
    );
    // A process that never made W+X memory while learning: not known.
    let mut l2 = trained(3);
    assert_eq!(
        l2.known(Path::new(NGINX), Rule::WxMem, Fact::WxMem, t),
        Known::Unknown
    );
    // Suppression can be turned on for ptrace (a debugger host).
    let c = config::Baseline {
        suppress: config::Suppress {
            ptrace: true,
            ..Default::default()
        },
        ..cfg()
    };
    l2.set_config(&c);
    assert_eq!(
        l2.known(Path::new(NGINX), Rule::Ptrace, Fact::Ptrace, t),
        Known::Unknown
    );
}

#[test]
fn a_new_image_is_a_new_session_and_sessions_are_bounded() {
    let mut l = Learner::new(Model::new(0, "t"), &cfg(), 2);
    let p = pid(1);
    l.observe(
        &obs(
            p,
            "/bin/bash",
            Behaviour::Exec {
                parent_exe: None,
                user: None,
            },
        ),
        1,
    );
    l.observe(
        &obs(
            p,
            NGINX,
            Behaviour::Exec {
                parent_exe: Some(Path::new("/bin/bash")),
                user: None,
            },
        ),
        1,
    );
    assert_eq!(l.model().get("/bin/bash").map(|b| b.processes), Some(1));
    assert_eq!(l.model().get(NGINX).map(|b| b.processes), Some(1));
    l.observe(&obs(pid(2), NGINX, Behaviour::WxMem), 1);
    l.observe(&obs(pid(3), NGINX, Behaviour::WxMem), 1);
    assert_eq!(l.stats().sessions_evicted, 1);
    // Relative executables are not learned.
    assert!(
        l.observe(&obs(pid(4), "bin/x", Behaviour::WxMem), 1)
            .is_empty()
    );
    assert_eq!(l.stats().ignored, 1);
}

#[test]
fn a_process_that_outlives_a_restart_still_counts_once() {
    let sh = Behaviour::Spawn {
        child_exe: Path::new("/bin/sh"),
    };
    let mut l = learner();
    let p = pid(1);
    l.observe(&obs(p, NGINX, sh), 1);
    // procwatch restarts: the model survives, the sessions do not.
    let model = l.into_model();
    let text = serde_json::to_string(&model).expect("json");
    let mut l = Learner::new(serde_json::from_str(&text).expect("back"), &cfg(), 16);
    l.observe(&obs(p, NGINX, sh), 2);
    let e = &l.model().get(NGINX).expect("b").children.entries[0];
    assert_eq!((e.count, e.processes), (2, 1), "the same process");
    assert!(!e.is_normal(2));
    l.observe(&obs(pid(2), NGINX, sh), 3);
    let e = &l.model().get(NGINX).expect("b").children.entries[0];
    assert_eq!(e.processes, 2);
    assert!(e.is_normal(2));
    assert!(e.contributors.is_empty(), "no longer needed once normal");
}

#[test]
fn a_scanning_process_is_bounded_and_counted() {
    let mut l = trained(3);
    let scanner = pid(66);
    let mut reported = 0;
    for port in 1..=2000u16 {
        reported += l
            .observe(
                &obs(scanner, NGINX, Behaviour::Connect(dest("10.0.0.9", port))),
                300,
            )
            .len();
    }
    assert_eq!(reported, MAX_REPORTED);
    assert_eq!(l.stats().anomalies_capped, 2000 - MAX_REPORTED as u64);
    assert_eq!(l.anomalies(scanner).len(), 32, "the most severe are kept");

    // While learning, one process stops teaching after MAX_TAUGHT distinct things.
    let mut l = learner();
    for port in 1..=1500u16 {
        l.observe(
            &obs(scanner, NGINX, Behaviour::Connect(dest("10.0.0.9", port))),
            1,
        );
    }
    assert_eq!(l.stats().not_learned, 1500 - MAX_TAUGHT as u64);
    let b = l.model().get(NGINX).expect("b");
    assert_eq!(b.network.entries.len(), config::Caps::default().network);
    assert_eq!(
        b.evicted.network,
        (MAX_TAUGHT - config::Caps::default().network) as u64
    );
}

/// SIGHUP with the file as this learner last saved it: nothing learned since is dropped.
#[test]
fn a_reload_of_an_unchanged_file_keeps_what_was_learned_since() {
    let mut l = trained(2);
    let saved = l.snapshot();
    l.snapshot_saved(saved.revision + 1, 10);
    let mut file = saved.clone();
    file.revision += 1;
    let p = pid(50);
    let late = dest("10.0.0.9", 6379);
    l.observe(&obs(p, NGINX, Behaviour::Connect(late)), 20);
    let before = l.model().clone();
    assert!(l.is_dirty());
    assert_eq!(l.reload(file, 21), Reloaded::Unchanged);
    assert_eq!(l.model(), &before, "the model in force stays");
    assert!(l.is_dirty(), "and is still saved later");
}

/// SIGHUP after `baseline allow` and `forget` changed the file: the edits are in force, and
/// what was learned since the last save is kept (counts not doubled, forgotten not back).
#[test]
fn a_reload_of_an_edited_file_keeps_the_edits_and_what_was_learned_since() {
    let other = "/usr/bin/psql";
    let mut l = trained(2);
    l.observe(
        &obs(pid(40), other, Behaviour::Connect(dest("10.0.0.5", 5432))),
        5,
    );
    let saved = l.snapshot();
    l.snapshot_saved(saved.revision + 1, 10);
    let mut file = saved.clone();
    file.revision += 1;
    // Edits made by `baseline` while the monitor runs.
    let allow = crate::baseline::edit::Allow::Port {
        port: 443,
        proto: Proto::Tcp,
        direction: Direction::Outbound,
        class: crate::baseline::net::AddrClass::Any,
    };
    crate::baseline::edit::allow(&mut file, Path::new(NGINX), &allow, &cfg(), 11).expect("allow");
    crate::baseline::edit::forget(&mut file, Path::new(other)).expect("forget");
    file.revision += 1;
    // Learned after the save: a new destination, more of a known one, a new executable, and
    // more of the forgotten one.
    let p = pid(50);
    l.observe(
        &obs(p, NGINX, Behaviour::Connect(dest("10.0.0.9", 6379))),
        20,
    );
    l.observe(
        &obs(p, NGINX, Behaviour::Connect(dest("10.0.0.5", 5432))),
        20,
    );
    let newcomer = "/usr/bin/redis-cli";
    l.observe(
        &obs(
            pid(51),
            newcomer,
            Behaviour::Connect(dest("10.0.0.9", 6379)),
        ),
        20,
    );
    l.observe(
        &obs(pid(52), other, Behaviour::Connect(dest("10.0.0.5", 5432))),
        20,
    );
    let known_count = |m: &Model, port: u16| {
        m.executables[NGINX]
            .network
            .entries
            .iter()
            .find(|e| e.key.port == port && e.key.class != crate::baseline::net::AddrClass::Any)
            .map(|e| (e.count, e.processes))
    };
    let learned = known_count(l.model(), 5432).expect("5432");
    let revision = file.revision;
    assert_eq!(l.reload(file, 21), Reloaded::Merged);
    let m = l.model();
    assert_eq!(
        m.revision, revision,
        "the next save expects the file's revision"
    );
    let net = &m.executables[NGINX].network.entries;
    assert!(
        net.iter()
            .any(|e| e.key.port == 443 && e.origin == crate::baseline::model::Origin::Allowed),
        "the edit is in force: {net:#?}"
    );
    assert!(
        net.iter().any(|e| e.key.port == 6379),
        "learned since: kept"
    );
    assert_eq!(
        known_count(m, 5432),
        Some(learned),
        "counts are not added twice"
    );
    assert!(
        m.executables.contains_key(newcomer),
        "a new executable is kept"
    );
    assert!(
        !m.executables.contains_key(other),
        "a forgotten one stays forgotten"
    );
    assert!(l.is_dirty(), "the merge is saved later");
}
