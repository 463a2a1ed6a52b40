//! Learned baselines end to end, as root: `procwatch train` learns a real workload (a copied
//! binary acting as a small web service), then `procwatch monitor --model` judges it. Every
//! judgement is about processes this test started; "nothing raised" is proven by a positive
//! control: the same process ends with one deviation, whose alert must come and must be the
//! first and only one for that process.
use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Duration,
};

use procwatch::sensor::{EventBody, ebpf::KillPolicy};
use procwatch_tests::{LiveSensor, Monitor, TempDir, procwatch_bin, require_root, scratch_base};

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

/// A copy of the actor acting as a web service, driven one command at a time.
struct Service {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Service {
    fn start(exe: &Path) -> Self {
        let mut child = Command::new(exe)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the service");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command and waits for its `ok` answer.
    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("write command");
        self.stdin.flush().expect("flush");
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).expect("read reply");
        assert!(reply.starts_with("ok"), "{line}: {reply}");
        reply.trim().to_string()
    }

    fn end(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// The scene: a service binary, its served files, a helper it runs, an upstream it talks to.
struct Scene {
    dir: TempDir,
    app: PathBuf,
    helper: PathBuf,
    other: PathBuf,
    upstream: u16,
    elsewhere: u16,
    /// The service's own port (free when the scene was made; its processes share it).
    port: u16,
    /// Another free port, for a listener the service never had.
    spare: u16,
    _listeners: (TcpListener, TcpListener),
}

/// A port that was free a moment ago (ephemeral, picked by the kernel).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Scene {
    fn new() -> Self {
        let dir = TempDir::new_in(&scratch_base(), "baseline");
        std::fs::create_dir_all(dir.0.join("www")).expect("mkdir www");
        std::fs::create_dir_all(dir.0.join("private")).expect("mkdir private");
        std::fs::write(dir.0.join("www/index.html"), "<h1>hi</h1>").expect("write");
        std::fs::write(dir.0.join("www/style.css"), "h1{}").expect("write");
        std::fs::write(dir.0.join("private/key.pem"), "secret").expect("write");
        let app = dir.copy_exe(&actor(), "pw-websvc");
        let helper = dir.copy_exe(Path::new("/usr/bin/true"), "pw-helper");
        let other = dir.copy_exe(Path::new("/usr/bin/true"), "pw-stranger");
        let up = TcpListener::bind("127.0.0.1:0").expect("bind");
        let el = TcpListener::bind("127.0.0.1:0").expect("bind");
        let upstream = up.local_addr().expect("addr").port();
        let elsewhere = el.local_addr().expect("addr").port();
        Self {
            dir,
            app,
            helper,
            other,
            upstream,
            elsewhere,
            port: free_port(),
            spare: free_port(),
            _listeners: (up, el),
        }
    }

    fn model(&self) -> PathBuf {
        self.dir.0.join("model.json")
    }

    /// The config both phases use: the scene's directory is watched, spikes need few samples,
    /// and a spike is over 40 points above the mean (on this shared machine a debug build's
    /// ordinary work can take 30% of a core in a 200 ms window).
    fn config(&self) -> String {
        format!(
            "sweep_interval: 200ms\ncpu_window: 200ms\nring_buffer_kib: 65536\nbaseline:\n  watched_prefixes: [{}]\n  resource_min_samples: 4\n  cpu_std_floor: 10\n",
            self.dir.0.display()
        )
    }

    /// What the service normally does: listen on its port, be connected to (the accepted
    /// connection stays open), serve two files, talk to its upstream, run its helper, make W+X
    /// memory (a JIT), idle.
    fn normal(&self, s: &mut Service) {
        s.cmd(&format!("listen {}", self.port));
        let _client = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.cmd(&format!(
            "read {}",
            self.dir.0.join("www/index.html").display()
        ));
        s.cmd(&format!(
            "read {}",
            self.dir.0.join("www/style.css").display()
        ));
        s.cmd(&format!("connect 127.0.0.1 {}", self.upstream));
        s.cmd(&format!("spawn {}", self.helper.display()));
        s.cmd("wx");
    }
}

fn alerts_for(m: &Monitor, pid: u32) -> Vec<serde_json::Value> {
    m.alerts().into_iter().filter(|a| a["pid"] == pid).collect()
}

/// Waits for the alert of `rule` on `pid`, then checks it is the first alert for that process
/// (alerts are written in the order they are decided, so the normal behaviour before the
/// deviation raised nothing) and returns that anomaly reason.
fn only_alert(m: &Monitor, pid: u32, rule: &str) -> serde_json::Value {
    m.expect_rule(pid, rule);
    let all = alerts_for(m, pid);
    let a = all.first().cloned().unwrap_or_default();
    assert!(
        procwatch_tests::has_rule(&a, rule),
        "normal behaviour raised something before the {rule} alert: {all:#?}"
    );
    let reasons = a["reasons"].as_array().expect("reasons");
    for r in reasons {
        let counted = r["score"].as_f64().unwrap_or(0.0) > 0.0;
        if r.get("anomaly").is_none() && r["rule"] != "suspicious_port" && r["rule"] != "high_cpu" {
            assert!(
                !counted,
                "a learned heuristic finding was counted: {r:#}\n{a:#}"
            );
        }
    }
    // W+X was learned as the service's normal: if the rule fired, it is known, not counted.
    if let Some(wx) = reasons.iter().find(|r| r["rule"] == "wx_mem") {
        assert_eq!(wx["score"], 0.0, "{a:#}");
        assert!(wx["known"]["baseline"].is_string(), "{a:#}");
    }
    reasons
        .iter()
        .find(|r| r["rule"] == rule)
        .cloned()
        .expect("the rule's reason")
}

fn train(scene: &Scene, seconds: u32) -> Monitor {
    Monitor::start_cmd(
        "train",
        &scene.config(),
        &[
            "--model",
            scene.model().to_str().expect("utf-8"),
            "--duration",
            &seconds.to_string(),
        ],
    )
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn train_then_monitor_judges_a_real_web_service() {
    require_root!();
    let scene = Scene::new();

    // Learn: three processes of the service, one after the other (so each accepts the
    // connection made to it), do their normal work and idle through sweeps.
    let t = train(&scene, 14);
    for _ in 0..3 {
        let mut s = Service::start(&scene.app);
        scene.normal(&mut s);
        s.cmd("sleep 2");
        s.end();
    }
    let (status, summary, _) = t.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "train failed: {summary:?}");
    let summary = summary.expect("summary");
    assert_eq!(summary["baseline"]["trained"], true, "{summary:#}");

    // `baseline show --json` reads what train wrote.
    let out = Command::new(procwatch_bin())
        .args(["baseline", "show", "--json", "--model"])
        .arg(scene.model())
        .arg(&scene.app)
        .env("HOME", &scene.dir.0)
        .output()
        .expect("baseline show");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    eprintln!("learned resources: {}", shown["resources"]);
    let text = shown.to_string();
    assert!(text.contains("pw-helper"), "children learned: {shown:#}");
    assert!(
        text.contains(&scene.upstream.to_string()),
        "upstream port learned: {shown:#}"
    );
    assert_eq!(
        shown["behaviour"]["listens"], true,
        "its listening port learned: {shown:#}"
    );

    // Monitor with the trained model: it judges at once.
    let m = Monitor::start(
        &scene.config(),
        &[
            "--model",
            scene.model().to_str().expect("utf-8"),
            // Above unknown_executable's 0.6 (other processes of this machine), below what a
            // deviation of this briefly trained service weighs (ml_weight 2 × severity).
            "--min-score",
            "0.7",
        ],
    );

    // A new child.
    let mut s = Service::start(&scene.app);
    scene.normal(&mut s);
    s.cmd(&format!("spawn {}", scene.other.display()));
    let r = only_alert(&m, s.pid(), "process_spawn_unknown");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("pw-stranger") && reason.contains("pw-helper"),
        "names the child and the baseline: {r:#}"
    );
    assert!(r["anomaly"]["confidence"]["observations"].as_u64() > Some(0));
    assert!(r["anomaly"]["confidence"]["stable_since"].is_string());
    s.end();

    // A new destination port.
    let mut s = Service::start(&scene.app);
    scene.normal(&mut s);
    s.cmd(&format!("connect 127.0.0.1 {}", scene.elsewhere));
    let r = only_alert(&m, s.pid(), "network_unknown_connection");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&scene.elsewhere.to_string())
            && reason.contains(&scene.upstream.to_string()),
        "names the port and the learned ones: {r:#}"
    );
    s.end();

    // A read of a file outside the learned ones.
    let mut s = Service::start(&scene.app);
    scene.normal(&mut s);
    let secret = scene.dir.0.join("private/key.pem");
    s.cmd(&format!("read {}", secret.display()));
    let r = only_alert(&m, s.pid(), "file_access_unknown");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("key.pem") && reason.contains("index.html"),
        "names the file and the learned ones: {r:#}"
    );
    s.end();

    // The same file reached by a relative path and by a path with `..`: both are placed.
    for (cd, path) in [
        (scene.dir.0.join("private"), "key.pem".to_string()),
        (
            scene.dir.0.clone(),
            format!("{}/www/../private/key.pem", scene.dir.0.display()),
        ),
    ] {
        let mut s = Service::start(&scene.app);
        eprintln!("stage: {path} from {} in pid {}", cd.display(), s.pid());
        scene.normal(&mut s);
        s.cmd(&format!("cd {}", cd.display()));
        s.cmd(&format!("read {path}"));
        only_alert(&m, s.pid(), "file_access_unknown");
        s.end();
    }

    // UDP to the port it knows for TCP: a connect()ed datagram socket, told apart by the
    // socket type the sensor reads in the kernel.
    let mut s = Service::start(&scene.app);
    scene.normal(&mut s);
    s.cmd(&format!("udp 127.0.0.1 {}", scene.upstream));
    let r = only_alert(&m, s.pid(), "network_unknown_connection");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "Unknown UDP connection to 127.0.0.1:{}",
            scene.upstream
        )),
        "names the protocol: {r:#}"
    );
    assert_eq!(r["anomaly"]["observed"]["proto"], "udp", "{r:#}");
    s.end();

    // A listening port it never had, and a connection accepted on it: both from the /proc
    // socket table on sweeps.
    let mut s = Service::start(&scene.app);
    scene.normal(&mut s);
    s.cmd(&format!("listen {}", scene.spare));
    let _client = std::net::TcpStream::connect(("127.0.0.1", scene.spare)).expect("connect");
    let r = only_alert(&m, s.pid(), "network_unknown_connection");
    let all: Vec<String> = alerts_for(&m, s.pid())
        .iter()
        .flat_map(|a| a["reasons"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["reason"].as_str().map(str::to_owned))
        .collect();
    let listener = format!("Unknown TCP listener on 127.0.0.1:{}", scene.spare);
    assert!(
        all.iter().any(|t| t.contains(&listener)),
        "the new listening port: {r:#} / {all:#?}"
    );
    let inbound = format!("to port {}", scene.spare);
    let accepted = m.wait_alert(Duration::from_secs(60), |a| {
        a["pid"] == s.pid()
            && a["reasons"].as_array().is_some_and(|rs| {
                rs.iter().any(|r| {
                    r["anomaly"]["observed"]["direction"] == "inbound"
                        && r["reason"].as_str().is_some_and(|t| t.contains(&inbound))
                })
            })
    });
    assert!(
        accepted.is_some(),
        "the connection accepted on it: {:#?}",
        alerts_for(&m, s.pid())
    );
    s.end();

    // A CPU spike.
    let mut s = Service::start(&scene.app);
    scene.normal(&mut s);
    s.cmd("busy 6 -10");
    let r = only_alert(&m, s.pid(), "resource_spike");
    assert!(
        r["reason"].as_str().is_some_and(|t| t.contains("baseline")),
        "{r:#}"
    );
    s.end();

    m.stop();
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_corrupt_model_is_a_clear_error_and_is_left_alone() {
    require_root!();
    let dir = TempDir::new_in(&scratch_base(), "badmodel");
    let model = dir.0.join("model.json");
    let junk = b"{\"format\": \"procwatch.baseline\", \"version\": 1, \"executables\": [";
    std::fs::write(&model, junk).expect("write");
    for cmd in [
        vec!["monitor", "--duration", "5"],
        vec!["train", "--duration", "5"],
    ] {
        let out = Command::new(procwatch_bin())
            .args(&cmd)
            .arg("--model")
            .arg(&model)
            .env("HOME", &dir.0)
            .stdin(Stdio::null())
            .output()
            .expect("run procwatch");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
        assert!(
            err.contains(model.to_str().expect("utf-8")) && err.contains("corrupt"),
            "{cmd:?} names the file and the problem: {err}"
        );
        assert_eq!(
            std::fs::read(&model).expect("read"),
            junk,
            "never overwritten"
        );
    }
    // A newer format version is refused the same way.
    std::fs::write(
        &model,
        br#"{"format": "procwatch.baseline", "version": 99, "executables": {}}"#,
    )
    .expect("write");
    let out = Command::new(procwatch_bin())
        .args(["monitor", "--duration", "5", "--model"])
        .arg(&model)
        .env("HOME", &dir.0)
        .output()
        .expect("run procwatch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("version"), "{err}");
}

/// The file-open probe: a watched file opened a hundred thousand times is one event; a
/// relative path and a path through `..` are sent (only user space can place them); an
/// unwatched file is not. The last read is the positive control that everything before it
/// was delivered.
// Multi-threaded: the sensor's reader keeps draining the ring buffer while this thread blocks
// on the actor (on a busy machine a stalled reader would lose events to overflow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn file_opens_are_filtered_and_sent_once_per_process_and_path() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    let mut s = Service::start(&actor());
    let pid = s.pid();
    s.cmd("readn /etc/passwd 100000");
    s.cmd("read /usr/lib/os-release");
    s.cmd("cd /etc");
    s.cmd("read group");
    s.cmd("read /usr/../etc/hosts");
    s.cmd("readn /etc/group 3");
    let opened = |e: &procwatch::sensor::Event, want: &str| {
        e.tgid == pid
            && matches!(&e.body, EventBody::FileOpen(f) if f.path == std::ffi::OsStr::new(want))
    };
    sensor
        .expect("open of /etc/group", pid, |e| opened(e, "/etc/group"))
        .await;
    s.end();
    let count = |want: &str| sensor.seen.iter().filter(|e| opened(e, want)).count();
    assert_eq!(count("/etc/passwd"), 1, "100000 opens, one event");
    assert_eq!(count("/etc/group"), 1);
    assert_eq!(count("group"), 1, "a relative open is sent");
    assert_eq!(count("/usr/../etc/hosts"), 1, "a path through .. is sent");
    assert_eq!(
        count("/usr/lib/os-release"),
        0,
        "unwatched: stays in the kernel"
    );
    let stats = sensor.stats.snapshot();
    let json = serde_json::to_value(&stats).expect("stats");
    assert!(
        json.to_string().contains("file_open"),
        "file_open is counted: {json}"
    );
}

/// SIGHUP keeps what the monitor learned since its last save (the file is unchanged, so the
/// model in force stays), and new `baseline.watched_prefixes` reach the kernel's file-open
/// filter at once: a file under a prefix added by the reload is learned.
#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn sighup_keeps_unsaved_learning_and_takes_new_watched_prefixes() {
    require_root!();
    let scene = Scene::new();
    let www = scene.dir.0.join("www");
    let private = scene.dir.0.join("private");
    let config = |watched: &Path| {
        format!(
            "sweep_interval: 200ms\nbaseline:\n  watched_prefixes: [{}]\n",
            watched.display()
        )
    };
    // A model file to start from (a short training of whatever runs here): the service is
    // new to it, so the monitor learns it in its own window.
    let t = train(&scene, 2);
    let (status, summary, _) = t.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "train failed: {summary:?}");
    let model = scene.model();
    let mut m = Monitor::start(&config(&www), &["--model", model.to_str().expect("utf-8")]);
    let mut s = Service::start(&scene.app);
    s.cmd(&format!("connect 127.0.0.1 {}", scene.upstream));
    s.cmd(&format!("read {}", www.join("index.html").display()));
    // Not watched yet: stays in the kernel.
    s.cmd(&format!("read {}", private.join("key.pem").display()));
    m.sync_events();

    std::fs::write(&m.config, config(&private)).expect("rewrite config");
    m.signal(libc::SIGHUP);
    m.wait_log(Duration::from_secs(60), "SIGHUP: baseline model");
    s.cmd(&format!("read {}", private.join("key.pem").display()));
    m.sync_events();
    s.end();
    let (status, _, _) = m.stop();
    assert!(status.success(), "monitor exit: {status:?}");

    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&model).expect("read model")).expect("JSON");
    let exe = &saved["executables"][scene.app.to_str().expect("utf-8")];
    let ports: Vec<u64> = exe["network"]["entries"]
        .as_array()
        .map(|v| v.iter().filter_map(|e| e["port"].as_u64()).collect())
        .unwrap_or_default();
    assert!(
        ports.contains(&u64::from(scene.upstream)),
        "learned before the SIGHUP, saved at exit: {exe:#}"
    );
    let files = exe["files"].to_string();
    assert!(
        files.contains("index.html"),
        "learned before the SIGHUP: {exe:#}"
    );
    assert!(
        files.contains("key.pem"),
        "under a prefix the SIGHUP added: {exe:#}"
    );
}

/// Short-lived processes exiting while /proc sweeps run back to back: a sweep that read one
/// before it exited is merged after its exit event. Each process must alert once (its exec
/// from /tmp) and count once for its baseline; a sweep that brought it back would judge it as
/// a new process (a second alert, a second process learned).
#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn processes_exiting_during_sweeps_alert_and_count_once() {
    require_root!();
    let dir = TempDir::new_in("/tmp", "exit-race");
    let exe = dir.copy_exe(Path::new("/bin/sleep"), "pw-brief");
    let model = dir.0.join("model.json");
    let m = Monitor::start(
        "sweep_interval: 100ms\ncpu_window: 100ms\n",
        &["--model", model.to_str().expect("utf-8")],
    );
    let mut pids = Vec::new();
    for i in 0..60u32 {
        // Lifetimes spread over a sweep's length, so exits land inside sweeps.
        let secs = format!("0.{:03}", 20 + (i * 37) % 230);
        let mut child = Command::new(&exe)
            .arg(&secs)
            .stdin(Stdio::null())
            .spawn()
            .expect("run the brief process");
        pids.push(child.id());
        let _ = child.wait();
    }
    m.sync_events();
    m.sync_sweep();
    m.sync_sweep();
    let alerts = m.alerts();
    let mut alerted = 0;
    for pid in &pids {
        let mine: Vec<&serde_json::Value> = alerts.iter().filter(|a| a["pid"] == *pid).collect();
        assert!(
            mine.len() <= 1,
            "pid {pid} alerted {} times: {mine:#?}",
            mine.len()
        );
        alerted += mine.len();
    }
    assert!(alerted > 0, "no brief process alerted at all: {alerts:#?}");
    let (status, _, _) = m.stop();
    assert!(status.success(), "monitor exit: {status:?}");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&model).expect("read model")).expect("JSON");
    let processes = saved["executables"][exe.to_str().expect("utf-8")]["processes"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        (1..=pids.len() as u64).contains(&processes),
        "{} processes ran, the baseline counted {processes}",
        pids.len()
    );
}
