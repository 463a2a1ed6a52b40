//! The kernel's view of an exec is the truth, end to end as root: path rules judge the file the
//! kernel executed (its path walked from the dentry: `..`, `//`, relative names and symlinks
//! resolved), even when the process has already exec'd something else; a script, a program
//! run by the dynamic loader and a script on stdin are judged by that file; and every alert
//! names the process exactly (exec id, start time, parents, exec chain, cgroup).
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use procwatch_tests::{Monitor, TempDir, has_rule, require_root, scratch_base};

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

/// Runs `cmd` to completion and returns its pid.
fn run(mut cmd: Command) -> u32 {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let _ = child.wait();
    pid
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.args(["-c", script]);
    c
}

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn the_first_image_is_judged_even_after_an_immediate_second_exec() {
    require_root!();
    let m = Monitor::start("", &[]);
    let dir = TempDir::new_in("/tmp", "first-image");
    let payload = dir.copy_exe(&actor(), "payload");
    let real = std::fs::canonicalize(&payload).expect("canonical");

    // A relative name after a `cd` procwatch never saw, then /bin/true at once: /proc can
    // only ever show /bin/true, and argv[0] says `./payload`.
    let pid = run(sh(&format!(
        "cd {} && exec ./payload exec /bin/true true",
        s(&dir.0)
    )));
    let a = m.expect_rule(pid, "tmp_exe");
    assert_eq!(a["exe"], s(&real), "{a:#}");
    let chain = a["exec_chain"].as_array().expect("exec_chain");
    assert!(
        chain
            .iter()
            .any(|i| i["exe"] == s(&real) && i["time"].is_string()),
        "{a:#}"
    );
    let shell = chain.iter().position(|i| {
        i["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("/dash") || e.ends_with("/sh"))
    });
    let dropped = chain.iter().position(|i| i["exe"] == s(&real));
    assert!(
        shell.is_some() && shell < dropped,
        "the shell image comes before the payload: {a:#}"
    );
    // The exact process: exec id, start time, and this test as the shell's parent.
    assert!(a["exec_id"].as_str().is_some_and(|e| e.len() > 8), "{a:#}");
    assert!(
        a["start_boottime_ns"].as_u64().is_some_and(|n| n > 0),
        "{a:#}"
    );
    assert_eq!(a["ancestors"][0]["pid"], std::process::id(), "{a:#}");

    // A symlink outside every temp dir, and a path through `..` and `//`.
    let scratch = TempDir::new_in(&scratch_base(), "first-image-link");
    let link = scratch.0.join("innocent");
    std::os::unix::fs::symlink(&payload, &link).expect("symlink");
    let dotted = format!("/usr/..//{}/./payload", s(&dir.0).trim_start_matches('/'));
    let mut ids = Vec::new();
    for path in [s(&link).to_owned(), dotted] {
        let mut c = Command::new(&path);
        c.args(["exec", "/bin/true", "true"]);
        let pid = run(c);
        let a = m.expect_rule(pid, "tmp_exe");
        assert_eq!(a["exe"], s(&real), "{path}: {a:#}");
        ids.push(a["exec_id"].as_str().expect("exec_id").to_owned());
    }
    assert_ne!(ids[0], ids[1], "each exec has its own id");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn scripts_loaded_programs_and_stdin_are_judged_by_the_file_that_runs() {
    require_root!();
    let m = Monitor::start("", &[]);
    let tmp = TempDir::new_in("/tmp", "scripts");
    let shm = TempDir::new_in("/dev/shm", "scripts");
    let scratch = TempDir::new_in(&scratch_base(), "scripts-ok");
    let sh_script = tmp.0.join("x.sh");
    // Alive for a while: /proc then shows the interpreter, never the script.
    write_script(&sh_script, "#!/bin/sh\nsleep 1\n");
    let py = shm.0.join("x.py");
    write_script(&py, "import time\ntime.sleep(1)\n");
    let payload = tmp.copy_exe(&actor(), "payload");

    let mut cases: Vec<(&str, Command, &Path, &str)> = Vec::new();
    let mut c = Command::new(&sh_script);
    c.current_dir(&scratch.0);
    cases.push(("shebang", c, &sh_script, "shebang"));
    let mut c = Command::new("/bin/sh");
    c.arg(&sh_script);
    cases.push(("sh script", c, &sh_script, "argument"));
    let mut c = Command::new("/usr/bin/python3");
    c.args(["-u", s(&py)]);
    cases.push(("python script", c, &py, "argument"));
    let mut c = Command::new("/usr/bin/python3");
    c.arg("-").stdin(std::fs::File::open(&py).expect("open"));
    cases.push(("python from stdin", c, &py, "stdin"));
    let mut c = Command::new("/bin/sh");
    c.args(["-c", &format!(". {}", s(&sh_script))]);
    cases.push(("sourced", c, &sh_script, "argument"));
    let mut c = Command::new("/usr/bin/perl");
    c.arg(&sh_script);
    cases.push(("perl", c, &sh_script, "argument"));
    let mut c = Command::new("/lib64/ld-linux-x86-64.so.2");
    c.args([s(&payload), "sleep", "1"]);
    cases.push(("dynamic loader", c, &payload, "loader"));

    for (what, cmd, file, via) in cases {
        let pid = run(cmd);
        let a = m.expect_rule(pid, "tmp_exe");
        assert_eq!(a["program"]["path"], s(file), "{what}: {a:#}");
        assert_eq!(a["program"]["via"], via, "{what}: {a:#}");
    }

    // Benign: the same interpreters on files outside temp dirs, with /tmp paths as data.
    let ok = scratch.0.join("ok.sh");
    write_script(&ok, "#!/bin/sh\ntrue\n");
    let mut quiet = Vec::new();
    let mut c = Command::new("/bin/sh");
    c.args([s(&ok), "/tmp/data"]);
    quiet.push(run(c));
    let mut c = Command::new("/usr/bin/python3");
    c.args(["-c", "pass", "/tmp/x.py"]);
    quiet.push(run(c));
    quiet.push(run(sh("echo /tmp/x.sh >/dev/null")));
    // Positive control after them: once its alert is in, theirs would be too.
    let pid = run(Command::new(&sh_script));
    m.expect_rule(pid, "tmp_exe");
    let noisy: Vec<_> = m
        .alerts()
        .into_iter()
        .filter(|a| quiet.iter().any(|p| a["pid"] == *p))
        .collect();
    assert!(noisy.is_empty(), "benign interpreters alerted: {noisy:#?}");
}

/// A cgroup v2 hierarchy to make a container-like cgroup in, when there is one.
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split(' ');
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty by now (its only process has exited); retried while the kernel lets go.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn alerts_carry_the_cgroup_and_container_id() {
    require_root!();
    let Some(root) = cgroup2_root() else {
        eprintln!("SKIP: no cgroup2 hierarchy mounted");
        return;
    };
    let id = format!("{:0>64}", format!("{:x}", std::process::id())).replace('0', "a");
    let cg = Cgroup(root.join(format!("docker-{id}.scope")));
    std::fs::create_dir(&cg.0).expect("mkdir cgroup");
    let m = Monitor::start("", &[]);
    let dir = TempDir::new_in("/tmp", "cgroup");
    let payload = dir.copy_exe(&actor(), "payload");
    let mut child = sh(&format!(
        "echo $$ > {}/cgroup.procs && exec {} sleep 3",
        s(&cg.0),
        s(&payload)
    ))
    .spawn()
    .expect("spawn");
    let a = m.expect_rule(child.id(), "tmp_exe");
    let _ = child.kill();
    let _ = child.wait();
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(&cg.0).expect("stat cgroup").ino();
    assert_eq!(a["cgroup_id"], ino, "{a:#}");
    assert_eq!(a["cgroup"], format!("/docker-{id}.scope"), "{a:#}");
    assert_eq!(a["container_id"], id.as_str(), "{a:#}");
    assert!(has_rule(&a, "tmp_exe"));
}
