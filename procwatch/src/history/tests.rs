//! The history against real SQLite files in a scratch directory.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::*;
use crate::{
    alert::{Reason, RuleId},
    config::Rule,
};

/// A scratch directory removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pw-history-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("alerts.db")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn opts(path: &Path) -> HistoryOptions {
    HistoryOptions {
        path: path.to_path_buf(),
        max_age: Duration::from_secs(30 * 86_400),
        max_rows: 100_000,
        max_pages: None,
        ring: RING,
    }
}

/// An alert of `pid` running `exe` with these rules (weight 3 each), timed now.
fn alert(pid: u32, exe: &str, rules: &[Rule]) -> Alert {
    let mut a = crate::output::logfile::tests::sample_alert();
    a.id = 0;
    a.pid = pid;
    a.exe = Some(exe.into());
    a.timestamp = crate::clock::rfc3339_ms(chrono::Utc::now());
    a.reasons = rules
        .iter()
        .map(|r| Reason {
            rule: RuleId::Heuristic(*r),
            score: 3.0,
            reason: "test".into(),
            attack: "T0000",
            known: None,
            anomaly: None,
        })
        .collect();
    a.total_score = 3.0 * rules.len() as f64;
    a
}

/// Publishes `n` alerts of pid 1000+i; returns their ids.
fn publish_n(w: &mut HistoryWriter, n: u32) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let mut a = alert(1000 + i, "/usr/bin/x", &[Rule::TmpExe]);
            w.publish(&mut a).expect("publish").id
        })
        .collect()
}

/// Waits until the writer thread has written `n` alerts in all.
fn wait_written(r: &HistoryReader, n: u64) {
    let end = Instant::now() + Duration::from_secs(60);
    while r.stats().written < n {
        assert!(Instant::now() < end, "not written: {:?}", r.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ids(rs: &[AlertRecord]) -> Vec<u64> {
    rs.iter().map(|r| r.id).collect()
}

#[tokio::test]
async fn ids_are_monotonic_the_json_is_the_alert_and_filters_select_exactly() {
    let s = Scratch::new("filters");
    let (mut w, r) = History::open_with(&opts(&s.db())).expect("open");
    let mut published = Vec::new();
    let cases: [(u32, &str, &[Rule]); 5] = [
        (10, "/tmp/a", &[Rule::TmpExe]),
        (11, "/usr/bin/b", &[Rule::WxMem, Rule::Ptrace]),
        (10, "/tmp/a", &[Rule::TmpExe, Rule::WxMem]),
        (12, "/usr/bin/b", &[Rule::SuspiciousPort]),
        // A rule id that is a prefix of no other, and one that contains another's name.
        (13, "/tmp/c", &[Rule::FilelessExe]),
    ];
    for (pid, exe, rules) in cases {
        let mut a = alert(pid, exe, rules);
        let rec = w.publish(&mut a).expect("publish");
        assert_eq!(rec.id, a.id);
        assert_eq!(&*rec.json, serde_json::to_string(&a).expect("json"));
        let v: serde_json::Value = serde_json::from_str(&rec.json).expect("json");
        assert_eq!(v["id"], a.id);
        published.push(rec);
    }
    assert_eq!(
        ids(&published.iter().map(|r| (**r).clone()).collect::<Vec<_>>()),
        [1, 2, 3, 4, 5]
    );
    let w_stats = w.close().await;
    assert_eq!((w_stats.written, w_stats.rows, w_stats.dropped), (5, 5, 0));
    // Readers hold the file (and its lock) too.
    drop(r);

    // A fresh open: everything comes from the file now.
    let (w, r2) = History::open_with(&opts(&s.db())).expect("reopen");
    let q = |f: AlertFilter| {
        let r2 = r2.clone();
        async move { ids(&r2.query(f).await.expect("query")) }
    };
    assert_eq!(q(AlertFilter::default()).await, [1, 2, 3, 4, 5]);
    let rule = |r: &str| AlertFilter {
        rule: Some(r.into()),
        ..AlertFilter::default()
    };
    assert_eq!(q(rule("wx_mem")).await, [2, 3]);
    assert_eq!(q(rule("tmp_exe")).await, [1, 3]);
    assert_eq!(q(rule("tmp")).await, Vec::<u64>::new(), "rule= is exact");
    let pid = AlertFilter {
        pid: Some(10),
        ..AlertFilter::default()
    };
    assert_eq!(q(pid).await, [1, 3]);
    let exe = AlertFilter {
        exe: Some("/usr/bin/b".into()),
        ..AlertFilter::default()
    };
    assert_eq!(q(exe).await, [2, 4]);
    let score = AlertFilter {
        min_score: Some(6.0),
        ..AlertFilter::default()
    };
    assert_eq!(q(score).await, [2, 3]);
    let both = AlertFilter {
        min_score: Some(6.0),
        pid: Some(10),
        ..AlertFilter::default()
    };
    assert_eq!(q(both).await, [3]);
    let future = AlertFilter {
        since_ms: Some(chrono::Utc::now().timestamp_millis() + 3_600_000),
        ..AlertFilter::default()
    };
    assert_eq!(q(future).await, Vec::<u64>::new());
    let past = AlertFilter {
        since_ms: Some(chrono::Utc::now().timestamp_millis() - 3_600_000),
        ..AlertFilter::default()
    };
    assert_eq!(q(past).await, [1, 2, 3, 4, 5]);
    // Paging by `after`.
    let page = |after, limit| AlertFilter {
        after,
        limit,
        ..AlertFilter::default()
    };
    assert_eq!(q(page(None, 2)).await, [1, 2]);
    assert_eq!(q(page(Some(2), 2)).await, [3, 4]);
    assert_eq!(q(page(Some(4), 2)).await, [5]);
    assert_eq!(q(page(Some(5), 2)).await, Vec::<u64>::new());
    // Newest first, paging back by `before`.
    let back = |before, limit| AlertFilter {
        before,
        limit,
        newest_first: true,
        ..AlertFilter::default()
    };
    assert_eq!(q(back(None, 2)).await, [5, 4]);
    assert_eq!(q(back(Some(4), 2)).await, [3, 2]);
    assert_eq!(q(back(Some(2), 2)).await, [1]);
    let newest_tmp = AlertFilter {
        rule: Some("tmp_exe".into()),
        limit: 1,
        newest_first: true,
        ..AlertFilter::default()
    };
    assert_eq!(q(newest_tmp).await, [3]);
    // The stored record is what was published.
    let got = r2.get(3).await.expect("get").expect("alert 3");
    assert_eq!(got.json, published[2].json);
    assert_eq!(got.rules, ["tmp_exe", "wx_mem"]);
    assert_eq!((got.pid, got.exe.as_deref()), (10, Some("/tmp/a")));
    assert!(r2.get(99).await.expect("get").is_none());
    w.close().await;
}

#[tokio::test]
async fn ids_continue_after_a_restart_even_when_every_row_was_evicted() {
    let s = Scratch::new("restart");
    let mut o = opts(&s.db());
    let (mut w, r) = History::open_with(&o).expect("open");
    assert_eq!(publish_n(&mut w, 3), [1, 2, 3]);
    w.close().await;
    drop(r);
    let (mut w, r) = History::open_with(&o).expect("reopen");
    assert_eq!(r.stats().last_id, 3);
    assert_eq!(publish_n(&mut w, 2), [4, 5]);
    w.close().await;
    drop(r);
    // With a cap of one row, only the last alert stays; the next id is still after it.
    o.max_rows = 1;
    let (mut w, r) = History::open_with(&o).expect("reopen");
    assert_eq!(publish_n(&mut w, 1), [6]);
    let stats = w.close().await;
    assert_eq!(stats.rows, 1, "{stats:?}");
    drop(r);
    let (mut w, r) = History::open_with(&o).expect("reopen");
    assert_eq!(
        ids(&r.query(AlertFilter::default()).await.expect("query")),
        [6]
    );
    assert_eq!(publish_n(&mut w, 1), [7]);
    w.close().await;
}

#[tokio::test]
async fn the_row_cap_holds_and_evicts_the_oldest_counted() {
    let s = Scratch::new("cap");
    let mut o = opts(&s.db());
    o.max_rows = 50;
    let (mut w, r) = History::open_with(&o).expect("open");
    // In several rounds, so retention runs after many batches, not once at the end.
    for _ in 0..6 {
        publish_n(&mut w, 20);
        let want = r.stats().last_id;
        wait_written(&r, want);
        assert!(r.stats().rows <= 50, "{:?}", r.stats());
    }
    let stats = w.close().await;
    assert_eq!(
        (stats.written, stats.rows, stats.evicted),
        (120, 50, 70),
        "{stats:?}"
    );
    drop(r);
    let (w, r) = History::open_with(&o).expect("reopen");
    let kept = r
        .query(AlertFilter {
            limit: 1000,
            ..AlertFilter::default()
        })
        .await
        .expect("query");
    assert_eq!(
        ids(&kept),
        (71..=120).collect::<Vec<u64>>(),
        "the oldest went"
    );
    // The rules of evicted alerts went with them.
    let by_rule = r
        .query(AlertFilter {
            rule: Some("tmp_exe".into()),
            limit: 1000,
            ..AlertFilter::default()
        })
        .await
        .expect("query");
    assert_eq!(by_rule.len(), 50);
    w.close().await;
}

#[tokio::test]
async fn alerts_older_than_max_age_are_evicted() {
    let s = Scratch::new("age");
    let mut o = opts(&s.db());
    o.max_age = Duration::from_secs(86_400);
    let (mut w, r) = History::open_with(&o).expect("open");
    let mut old = alert(1, "/tmp/old", &[Rule::TmpExe]);
    old.timestamp = crate::clock::rfc3339_ms(chrono::Utc::now() - chrono::Duration::days(2));
    w.publish(&mut old).expect("publish");
    let mut new = alert(2, "/tmp/new", &[Rule::TmpExe]);
    w.publish(&mut new).expect("publish");
    wait_written(&r, 2);
    let stats = w.close().await;
    assert_eq!((stats.rows, stats.evicted), (1, 1), "{stats:?}");
    drop(r);
    let (w, r) = History::open_with(&o).expect("reopen");
    assert_eq!(ids(&r.query(AlertFilter::default()).await.expect("q")), [2]);
    w.close().await;
}

#[tokio::test]
async fn since_serves_the_ring_and_falls_back_to_the_db() {
    let s = Scratch::new("since");
    let mut o = opts(&s.db());
    o.ring = 8;
    let (mut w, r) = History::open_with(&o).expect("open");
    publish_n(&mut w, 20);
    wait_written(&r, 20);
    // The ring holds 13..=20: after 15 it covers everything.
    assert!(r.shared.ring().covers_after(15));
    assert_eq!(
        ids(&r.since(15, 100).await.expect("since")),
        [16, 17, 18, 19, 20]
    );
    // After 3, the ring does not reach back: the db has the rest, in order, no gaps.
    assert!(!r.shared.ring().covers_after(3));
    assert_eq!(
        ids(&r.since(3, 100).await.expect("since")),
        (4..=20).collect::<Vec<u64>>()
    );
    assert_eq!(ids(&r.since(3, 5).await.expect("since")), [4, 5, 6, 7, 8]);
    assert_eq!(
        ids(&r.since(20, 5).await.expect("since")),
        Vec::<u64>::new()
    );
    w.close().await;
    drop(r);
    // After a restart the ring is empty: a client resuming from an id of the last run gets
    // the rest from the database, then what this run adds.
    let (mut w, r) = History::open_with(&o).expect("reopen");
    assert_eq!(ids(&r.since(17, 100).await.expect("since")), [18, 19, 20]);
    assert_eq!(publish_n(&mut w, 2), [21, 22]);
    assert_eq!(
        ids(&r.since(17, 100).await.expect("since")),
        [18, 19, 20, 21, 22]
    );
    w.close().await;
}

#[tokio::test]
async fn live_subscribers_get_each_alert_as_it_is_published() {
    let (mut w, r) = History::memory();
    let mut rx = r.subscribe();
    publish_n(&mut w, 3);
    for want in 1..=3 {
        let got = rx.recv().await.expect("live alert");
        assert_eq!(got.id, want);
    }
    // Memory only: recent alerts and filters from the ring.
    assert_eq!(ids(&r.since(1, 10).await.expect("since")), [2, 3]);
    let f = AlertFilter {
        pid: Some(1001),
        ..AlertFilter::default()
    };
    assert_eq!(ids(&r.query(f).await.expect("query")), [2]);
    let newest = AlertFilter {
        limit: 2,
        newest_first: true,
        ..AlertFilter::default()
    };
    assert_eq!(ids(&r.query(newest).await.expect("query")), [3, 2]);
    let older = AlertFilter {
        before: Some(2),
        newest_first: true,
        ..AlertFilter::default()
    };
    assert_eq!(ids(&r.query(older).await.expect("query")), [1]);
    assert_eq!(r.get(3).await.expect("get").map(|a| a.id), Some(3));
    assert!(r.path().is_none());
    assert!(!r.stats().enabled);
    // An id given before acting (so a dump carries it) is the one published.
    let mut a = alert(7, "/tmp/x", &[Rule::TmpExe]);
    assert_eq!(w.assign_id(&mut a), 4);
    assert_eq!(w.assign_id(&mut a), 4, "given once");
    assert_eq!(w.publish(&mut a).expect("publish").id, 4);
    assert_eq!(publish_n(&mut w, 1), [5]);
}

#[test]
fn a_file_that_is_not_a_history_is_refused_and_left_untouched() {
    let s = Scratch::new("refuse");
    let check = |name: &str, bytes: &[u8], want: &str| {
        let path = s.0.join(name);
        std::fs::write(&path, bytes).expect("write");
        let e = History::open_with(&opts(&path))
            .expect_err(name)
            .to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains(want), "{name}: {e}");
        assert!(e.contains("history.path"), "says what to do: {e}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            bytes,
            "{name} untouched"
        );
    };
    check(
        "text.db",
        b"alerts, not a database\n",
        "not an SQLite database",
    );
    let mut damaged = b"SQLite format 3\0".to_vec();
    damaged.extend(std::iter::repeat_n(0xa5u8, 8192));
    check("damaged.db", &damaged, "damaged");

    // Another program's SQLite database.
    let other = s.0.join("other.db");
    {
        let c = rusqlite::Connection::open(&other).expect("create");
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .expect("table");
    }
    let before = std::fs::read(&other).expect("read");
    let e = History::open_with(&opts(&other))
        .expect_err("other")
        .to_string();
    assert!(e.contains("another program"), "{e}");
    assert_eq!(std::fs::read(&other).expect("read"), before);

    // A history of a newer format.
    let newer = s.0.join("newer.db");
    let (w, r) = History::open_with(&opts(&newer)).expect("create");
    w.close_blocking();
    drop(r);
    {
        let c = rusqlite::Connection::open(&newer).expect("open");
        c.pragma_update(None, "user_version", FORMAT_VERSION + 1)
            .expect("bump");
    }
    let e = History::open_with(&opts(&newer)).expect_err("newer");
    assert!(
        matches!(e, HistoryError::NewerFormat { found, .. } if found == FORMAT_VERSION + 1),
        "{e}"
    );
    assert!(e.to_string().contains("newer procwatch"), "{e}");
}

#[test]
fn a_second_writer_is_refused_while_the_first_has_the_file() {
    let s = Scratch::new("inuse");
    let (w, r) = History::open_with(&opts(&s.db())).expect("open");
    let e = History::open_with(&opts(&s.db())).expect_err("second");
    assert!(matches!(e, HistoryError::InUse { .. }), "{e}");
    assert!(e.to_string().contains("--no-history"), "{e}");
    w.close_blocking();
    // The lock lasts as long as a reader has the file open.
    assert!(matches!(
        History::open_with(&opts(&s.db())),
        Err(HistoryError::InUse { .. })
    ));
    drop(r);
    let (w, r) = History::open_with(&opts(&s.db())).expect("free again");
    w.close_blocking();
    drop(r);
}

#[tokio::test]
async fn a_full_database_is_counted_and_the_ring_still_has_every_alert() {
    let s = Scratch::new("full");
    let mut o = opts(&s.db());
    // A real size limit: past it SQLite reports SQLITE_FULL, as on a full disk.
    o.max_pages = Some(40);
    let (mut w, r) = History::open_with(&o).expect("open");
    let n = 300;
    let published = publish_n(&mut w, n);
    let end = Instant::now() + Duration::from_secs(60);
    while r.stats().write_failures == 0 {
        assert!(Instant::now() < end, "no failure: {:?}", r.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let live = r.stats();
    assert!(
        live.last_error
            .as_deref()
            .is_some_and(|e| e.contains("full")),
        "{live:?}"
    );
    // Every alert is still there for readers, from memory.
    assert_eq!(ids(&r.since(0, 1000).await.expect("since")), published);
    let stats = w.close().await;
    assert!(stats.written < u64::from(n), "{stats:?}");
    assert_eq!(
        stats.written + stats.dropped,
        u64::from(n),
        "every alert is written or counted as dropped: {stats:?}"
    );
    assert!(stats.write_failures > 0);
}

#[test]
fn the_default_path_follows_the_user() {
    let p = default_path().expect("a default path");
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(p, Path::new("/var/lib/procwatch/alerts.db"));
    } else {
        assert!(
            p.ends_with(".local/share/procwatch/alerts.db"),
            "{}",
            p.display()
        );
    }
}

#[tokio::test]
async fn the_config_chooses_the_database_or_memory() {
    let s = Scratch::new("config");
    let mut cfg = crate::config::History {
        enabled: false,
        path: Some(s.db()),
        ..crate::config::History::default()
    };
    let (mut w, r) = History::open(&cfg).expect("memory");
    assert!(r.path().is_none());
    assert_eq!(publish_n(&mut w, 1), [1]);
    w.close().await;
    assert!(!s.db().exists(), "no file without the history");
    cfg.enabled = true;
    cfg.max_rows = 2;
    let (mut w, r) = History::open(&cfg).expect("database");
    assert_eq!(r.path(), Some(s.db().as_path()));
    publish_n(&mut w, 3);
    let stats = w.close().await;
    assert_eq!(
        (stats.enabled, stats.rows, stats.evicted),
        (true, 2, 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_read_only_view_reads_what_another_writer_writes() {
    let s = Scratch::new("readonly");
    let missing = History::open_readonly(&s.db()).expect_err("no file yet");
    assert!(
        missing.to_string().contains(&s.db().display().to_string()),
        "{missing}"
    );
    let (mut w, r) = History::open_with(&opts(&s.db())).expect("open");
    publish_n(&mut w, 3);
    wait_written(&r, 3);
    // Beside the writer (which keeps its lock).
    let view = History::open_readonly(&s.db()).expect("read-only view");
    assert_eq!(view.stats().rows, 3);
    assert_eq!(ids(&view.since(1, 10).await.expect("since")), [2, 3]);
    publish_n(&mut w, 2);
    wait_written(&r, 5);
    // Newer than the view's open: still found, in the file.
    assert_eq!(ids(&view.since(3, 10).await.expect("since")), [4, 5]);
    assert_eq!(view.get(5).await.expect("get").map(|a| a.id), Some(5));
    let f = AlertFilter {
        pid: Some(1001),
        ..AlertFilter::default()
    };
    // pid 1001 had an alert in each round.
    assert_eq!(ids(&view.query(f).await.expect("query")), [2, 5]);
    w.close().await;
    drop(r);
    // A file that is not a history is refused the same way.
    let junk = s.0.join("junk.db");
    std::fs::write(&junk, b"junk").expect("write");
    let e = History::open_readonly(&junk).expect_err("junk");
    assert!(matches!(e, HistoryError::NotHistory { .. }), "{e}");
    assert_eq!(std::fs::read(&junk).expect("read"), b"junk");
}

#[tokio::test]
async fn a_stream_starts_after_the_last_published_alert_not_the_last_id_handed_out() {
    let (mut w, r) = History::memory();
    assert_eq!(publish_n(&mut w, 2), [1, 2]);
    // Alert 3 has its id but is still being acted on (freeze, dump, kill): not published.
    let mut a = alert(7, "/tmp/x", &[Rule::TmpExe]);
    assert_eq!(w.assign_id(&mut a), 3);
    assert_eq!(r.stats().last_id, 3);
    assert_eq!(r.published_id(), 2);
    // A client connecting now starts after 2, so it gets 3 when it is published.
    assert_eq!(r.stream_start(None), StreamStart::After(2));
    let mut rx = r.subscribe();
    w.publish(&mut a).expect("publish");
    assert_eq!(r.published_id(), 3);
    assert_eq!(rx.recv().await.expect("live").id, 3);
    // Resuming from a published id resumes there.
    assert_eq!(r.stream_start(Some(1)), StreamStart::After(1));
    assert_eq!(r.stream_start(Some(3)), StreamStart::After(3));
    // An id never published here (ids restarted): reset to the last published one.
    assert_eq!(r.stream_start(Some(4)), StreamStart::Reset(3));
    assert_eq!(r.stream_start(Some(1000)), StreamStart::Reset(3));
    // Then every new alert follows.
    assert_eq!(
        ids(&r.since(3, 10).await.expect("since")),
        Vec::<u64>::new()
    );
    assert_eq!(publish_n(&mut w, 1), [4]);
    assert_eq!(ids(&r.since(3, 10).await.expect("since")), [4]);
}

#[tokio::test]
async fn a_restarted_history_starts_published_at_its_last_id() {
    let dir = Scratch::new("published-restart");
    let o = opts(&dir.db());
    let (mut w, r) = History::open_with(&o).expect("open");
    assert_eq!(publish_n(&mut w, 3), [1, 2, 3]);
    w.close().await;
    drop(r);
    let (w, r) = History::open_with(&o).expect("reopen");
    assert_eq!(r.published_id(), 3);
    assert_eq!(r.stream_start(Some(2)), StreamStart::After(2));
    assert_eq!(r.stream_start(Some(9)), StreamStart::Reset(3));
    w.close().await;
}
