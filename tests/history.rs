//! The alert history end to end: the real `procwatch monitor` records each alert in its SQLite
//! file with the same id and the same JSON line as the JSONL sink; a restart continues the
//! ids; a history on a disk that fills up (a tiny tmpfs mounted in procwatch's own mount
//! namespace) is counted as failing while the JSONL stream still gets every alert; a file that
//! is not a history stops `monitor` with a message naming it, and is left untouched.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use procwatch_tests::{Monitor, TempDir, procwatch_bin, require_root, scratch_base};
use serde_json::Value;

/// Fast sweeps; `tmp_exe` itself fires on the exec event.
const FAST: &str = "sweep_interval: 1s\n";

/// Runs `n` copies of `/bin/true` from a fresh /tmp directory and waits for each one's
/// `tmp_exe` alert; returns their pids.
fn tmp_alerts(m: &Monitor, n: usize) -> Vec<u32> {
    let dir = TempDir::new_in("/tmp", "history");
    let exe = dir.copy_exe(Path::new("/bin/true"), "pw-history-true");
    let mut pids = Vec::new();
    for _ in 0..n {
        let mut child = Command::new(&exe)
            .stdin(Stdio::null())
            .spawn()
            .expect("run the copy");
        pids.push(child.id());
        let _ = child.wait();
    }
    for &pid in &pids {
        m.expect_rule(pid, "tmp_exe");
    }
    pids
}

/// Every complete JSONL line by its alert id; panics on a repeated id.
fn lines_by_id(text: &str) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(line).expect("a JSONL line");
        let id = v["id"].as_u64().expect("every alert has an id");
        assert!(
            out.insert(id, line.to_string()).is_none(),
            "id {id} twice in the JSONL"
        );
    }
    out
}

/// The id of the alert of `pid` among `lines`.
fn id_of(lines: &BTreeMap<u64, String>, pid: u32) -> Option<u64> {
    lines.iter().find_map(|(id, l)| {
        let v: Value = serde_json::from_str(l).ok()?;
        (v["pid"] == pid).then_some(*id)
    })
}

/// Every stored alert (id, json), read with SQLite directly.
fn stored(db: &Path) -> BTreeMap<u64, String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the history");
    let mut stmt = c.prepare("SELECT id, json FROM alerts").expect("select");
    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .expect("rows")
        .map(|r| {
            let (id, json) = r.expect("row");
            (u64::try_from(id).expect("positive id"), json)
        })
        .collect()
}

/// The rule ids the history filters an alert by.
fn stored_rules(db: &Path, id: u64) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the history");
    let mut stmt = c
        .prepare("SELECT rule FROM alert_rules WHERE alert_id = ?1 ORDER BY rule")
        .expect("select");
    stmt.query_map([i64::try_from(id).expect("id")], |r| r.get(0))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect()
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn the_history_has_every_alert_as_jsonl_has_it_and_ids_continue_after_a_restart() {
    require_root!();
    let dir = TempDir::new_in(&scratch_base(), "history");
    let db = dir.0.join("state/alerts.db");
    let db_arg = db.to_str().expect("utf-8");

    let m = Monitor::start(FAST, &["--history", db_arg]);
    let pids = tmp_alerts(&m, 5);
    let (status, summary, text) = m.stop();
    assert!(status.success(), "{status:?}");
    let first = lines_by_id(&text);
    let ids: Vec<u64> = first.keys().copied().collect();
    // One after the other, from 1 for a new history.
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "{ids:?}");
    let summary = summary.expect("exit summary");
    let h = &summary["history"];
    assert_eq!(h["written"].as_u64(), Some(ids.len() as u64), "{summary:#}");
    assert_eq!(h["dropped"], 0, "{summary:#}");
    assert_eq!(h["write_failures"], 0, "{summary:#}");
    // The database holds exactly the JSONL lines, under the same ids.
    let rows = stored(&db);
    assert_eq!(rows, first, "the history is the JSONL stream");
    // And knows each of ours by its rule.
    for pid in &pids {
        let id = id_of(&first, *pid).expect("our alert in the JSONL");
        assert!(stored_rules(&db, id).contains(&"tmp_exe".to_string()));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&db).expect("db").permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "alerts carry command lines: the file is private"
    );

    // A restart continues after the last id.
    let last = *ids.last().expect("alerts");
    let m = Monitor::start(FAST, &["--history", db_arg]);
    tmp_alerts(&m, 2);
    let (status, _, text) = m.stop();
    assert!(status.success(), "{status:?}");
    let second = lines_by_id(&text);
    let first_new = *second.keys().next().expect("alerts of the second run");
    assert_eq!(first_new, last + 1, "ids continue: {:?}", second.keys());
    let rows = stored(&db);
    let mut both = first.clone();
    both.extend(second);
    assert_eq!(rows, both, "both runs are in the history");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_full_disk_is_counted_and_the_jsonl_stream_still_gets_every_alert() {
    require_root!();
    let dir = TempDir::new_in(&scratch_base(), "history-full");
    let mnt = dir.0.join("small");
    std::fs::create_dir_all(&mnt).expect("mount point");
    let db = mnt.join("alerts.db");
    // A 192 KiB tmpfs in procwatch's own mount namespace: the database and its WAL fit at
    // start, and the disk is full after a few dozen alerts.
    let script = format!(
        "mount -t tmpfs -o size=192k none '{}' && exec \"$0\" \"$@\"",
        mnt.display()
    );
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script.as_str(),
    ];
    let m = Monitor::start_wrapped(
        &wrapper,
        "monitor",
        FAST,
        &["--history", db.to_str().expect("utf-8")],
    );
    let pids = tmp_alerts(&m, 150);
    let (status, summary, text) = m.stop();
    assert!(status.success(), "{status:?}");
    let summary = summary.expect("exit summary");
    let h = &summary["history"];
    eprintln!("history on a full disk: {h}");
    let lines = lines_by_id(&text);
    // Every alert reached the JSONL file, ours among them.
    assert_eq!(
        summary["alerts_written"].as_u64(),
        Some(lines.len() as u64),
        "{summary:#}"
    );
    for pid in pids {
        assert!(
            id_of(&lines, pid).is_some(),
            "alert of {pid} missing from the JSONL"
        );
    }
    // The history failed, said so, and accounted for every alert.
    assert!(h["write_failures"].as_u64() > Some(0), "{summary:#}");
    assert!(
        h["written"].as_u64() < Some(lines.len() as u64),
        "the disk was never full: {summary:#}"
    );
    assert_eq!(
        h["written"]
            .as_u64()
            .zip(h["dropped"].as_u64())
            .map(|(w, d)| w + d),
        Some(lines.len() as u64),
        "written + dropped = every alert: {summary:#}"
    );
    // The mount was procwatch's own: nothing of it is left here.
    assert!(!db.exists(), "the tmpfs was private to procwatch");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn no_history_writes_no_file_and_ids_start_at_one() {
    require_root!();
    let dir = TempDir::new_in(&scratch_base(), "history-off");
    let db = dir.0.join("alerts.db");
    let m = Monitor::start(
        FAST,
        &["--history", db.to_str().expect("utf-8"), "--no-history"],
    );
    tmp_alerts(&m, 2);
    let (status, summary, text) = m.stop();
    assert!(status.success(), "{status:?}");
    let lines = lines_by_id(&text);
    assert_eq!(
        lines.keys().next(),
        Some(&1),
        "ids from 1: {:?}",
        lines.keys()
    );
    let summary = summary.expect("exit summary");
    assert_eq!(summary["history"]["enabled"], false, "{summary:#}");
    assert!(!db.exists(), "--no-history wins over --history");
}

#[test]
fn a_file_that_is_not_a_history_stops_monitor_and_is_left_untouched() {
    let dir = TempDir::new_in(&scratch_base(), "history-bad");
    let db: PathBuf = dir.0.join("alerts.db");
    let junk = b"these are not alerts\n";
    std::fs::write(&db, junk).expect("write");
    let out = Command::new(procwatch_bin())
        .args(["monitor", "--duration", "5", "--history"])
        .arg(&db)
        .env("HOME", &dir.0)
        .stdin(Stdio::null())
        .output()
        .expect("run procwatch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(db.to_str().expect("utf-8")) && err.contains("not an SQLite database"),
        "names the file and the problem: {err}"
    );
    assert!(err.contains("--no-history"), "says how to go on: {err}");
    assert_eq!(std::fs::read(&db).expect("read"), junk, "never overwritten");
}
