//! Workload 7: the REST API under load during an exec storm. procwatch monitors with its API
//! on loopback; an exec storm runs (as in workload 1, at 1,600/s) with a trickle of alerting
//! /tmp executables beside it; once with the API idle, once busy: one process repeats
//! `GET /api/processes` on 4 keep-alive connections, another holds 50 alert streams. Reported:
//! the API's requests/s and latency, the streams' delivery and delay, and the storm's loss and
//! procwatch's CPU per exec busy versus idle.
use std::{
    fs,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{
    Env, Plan, check_interrupted,
    measure::{self, Series},
    monitors::{self, ExecFilter},
    report::{self, Section, Table},
};
use crate::sh::Result;

const HOW: &str = "procwatch monitor (release) with `--api 127.0.0.1:0`, a token, and its \
rate limit raised out of the way; its alert history in the run's scratch directory. The storm: \
`xtask bench-worker exec` of `/bin/true` at 1,600/s, with a second generator running a /tmp \
copy of `/bin/true` at 20/s, each of which is a `tmp_exe` alert. *idle*: nobody talks to the \
API. *busy*: `xtask bench-worker http-load` repeats `GET /api/processes` (every process with \
its scores, ~100 KB) on 4 keep-alive connections, and `xtask bench-worker sse` holds 50 \
`/api/alerts/stream` clients, both separate processes on loopback, for the whole storm. \
*procwatch µs/exec*: utime+stime of procwatch (engine, sinks, history writer and the API's \
thread) from the start of the storm until it worked off its backlog, divided by the execs \
made; *lost*: the kernel's ring-buffer drops of exec events (machine-wide). *stream delay*: \
arrival at the client minus the alert's `timestamp` (the exec's kernel time), over every \
alert every client received. Medians over the rounds; *busy ÷ idle* from each round's pair.";

/// The API's port, from procwatch's log line `api listening on http://127.0.0.1:PORT`.
fn port_of(log: &[String]) -> Option<u16> {
    log.iter().find_map(|l| {
        let at = l.find("api listening on http://")?;
        let rest = &l[at + "api listening on http://".len()..];
        let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
        addr.rsplit(':').next()?.parse().ok()
    })
}

/// Starts `xtask bench-worker <args>` in the background.
fn spawn_worker(env: &Env, args: &[String]) -> Result<Child> {
    Command::new(&env.worker)
        .arg("bench-worker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start bench-worker {args:?}: {e}"))
}

/// Waits for a background worker and parses its result line.
fn finish_worker(child: Child) -> Result<std::collections::BTreeMap<String, f64>> {
    let out = child
        .wait_with_output()
        .map_err(|e| format!("bench-worker: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bench-worker failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(measure::parse_key_values(text.lines().last().unwrap_or("")))
}

const TOKEN: &str = "bench-token";

/// One storm with the API idle or busy.
fn one(env: &Env, plan: &Plan, busy: bool) -> Result<measure::Sample> {
    check_interrupted()?;
    let dir = env.scratch_dir(if busy { "api-busy" } else { "api-idle" })?;
    let cfg = dir.path().join("procwatch.yaml");
    fs::write(
        &cfg,
        format!(
            "api:\n  token: {TOKEN}\n  rate_limit: 1000000\n  rate_burst: 1000000\n  \
             max_connections: 512\n"
        ),
    )
    .map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
    let history = dir.path().join("alerts.db");
    let running = monitors::start_procwatch(
        env,
        dir.path(),
        &cfg,
        &[
            "--api".into(),
            "127.0.0.1:0".into(),
            "--history".into(),
            history.to_string_lossy().into_owned(),
        ],
    )?;
    let port = port_of(&running.log_from(0)).ok_or("procwatch logged no API address")?;
    // The alerting executable: a /tmp copy of /bin/true (the scratch directory is under /tmp),
    // written by a child process (never open for writing in this one while it runs).
    let alerting = dir.path().join("pw-bench-alert");
    let cp = Command::new("cp")
        .arg("--preserve=mode")
        .arg("/bin/true")
        .arg(&alerting)
        .status()
        .map_err(|e| format!("cp: {e}"))?;
    if !cp.success() {
        return Err(format!("cp /bin/true {}: {cp}", alerting.display()));
    }
    let secs = plan.exec_secs;
    let load_secs = format!("{}", secs + 1.0);
    let mut loaders = Vec::new();
    if busy {
        for (kind, clients, path) in [("http-load", 4, "/api/processes"), ("sse", 50, "")] {
            let mut a: Vec<String> = vec![
                kind.into(),
                "--port".into(),
                port.to_string(),
                "--token".into(),
                TOKEN.into(),
                "--threads".into(),
                clients.to_string(),
                "--duration".into(),
                load_secs.clone(),
            ];
            if !path.is_empty() {
                a.extend(["--path".into(), path.into()]);
            }
            loaders.push(spawn_worker(env, &a)?);
        }
        // The stream clients connect before the storm.
        std::thread::sleep(Duration::from_millis(500));
    }
    let cpu0 = running.cpu_ticks();
    let trickle = spawn_worker(
        env,
        &[
            "exec".into(),
            "--path".into(),
            alerting.to_string_lossy().into_owned(),
            "--rate".into(),
            "20".into(),
            "--duration".into(),
            format!("{secs}"),
        ],
    )?;
    let storm = [
        "exec".to_owned(),
        "--path".into(),
        "/bin/true".into(),
        "--rate".into(),
        "1600".into(),
        "--duration".into(),
        format!("{secs}"),
    ];
    let (storm_pid, storm_result) = env.run_worker(&storm)?;
    let trickle_result = finish_worker(trickle)?;
    let mut load_results = Vec::new();
    for l in loaders {
        load_results.push(finish_worker(l)?);
    }
    running.settle(Duration::from_secs(10));
    let cpu1 = running.cpu_ticks();
    let stopped = running.stop()?;
    let capture = stopped.execs(ExecFilter::Parent(storm_pid))?;
    let made = storm_result.get("made").copied().unwrap_or(0.0)
        + trickle_result.get("made").copied().unwrap_or(0.0);
    let mut s = measure::Sample::new();
    s.insert("made", made);
    let elapsed = storm_result.get("elapsed_ns").copied().unwrap_or(0.0) / 1e9;
    if elapsed > 0.0 {
        s.insert(
            "per_s",
            storm_result.get("made").copied().unwrap_or(0.0) / elapsed,
        );
    }
    if let (Some(a), Some(b)) = (cpu0, cpu1)
        && made > 0.0
    {
        let cpu = b.saturating_sub(a) as f64 / measure::clock_ticks_per_sec();
        s.insert("us_per_exec", cpu * 1e6 / made);
    }
    if let Some(c) = capture {
        s.insert("lost", c.lost as f64);
    }
    s.insert("alerts", trickle_result.get("made").copied().unwrap_or(0.0));
    if let [http, sse] = load_results.as_slice() {
        const HTTP: [(&str, &str); 4] = [
            ("per_s", "http_per_s"),
            ("p50_ms", "http_p50_ms"),
            ("p99_ms", "http_p99_ms"),
            ("errors", "http_errors"),
        ];
        const SSE: [(&str, &str); 6] = [
            ("clients", "sse_clients"),
            ("events", "sse_events"),
            ("least_per_client", "sse_least_per_client"),
            ("p50_ms", "sse_p50_ms"),
            ("p99_ms", "sse_p99_ms"),
            ("dropped", "sse_dropped"),
        ];
        for (from, map) in [(http, &HTTP[..]), (sse, &SSE[..])] {
            for (k, name) in map {
                if let Some(v) = from.get(*k) {
                    s.insert(name, *v);
                }
            }
        }
    }
    Ok(s)
}

pub fn run(env: &Env, plan: &Plan) -> Result<Section> {
    let mut section = Section::new(7, "REST API under load", HOW);
    let mut idle = Series::new();
    let mut busy = Series::new();
    for round in 1..=plan.runs {
        for (is_busy, series) in [(false, &mut idle), (true, &mut busy)] {
            let what = if is_busy { "busy" } else { "idle" };
            eprintln!("bench: api, round {round}/{}: {what}", plan.runs);
            let sample = one(env, plan, is_busy);
            match &sample {
                Ok(s) => eprintln!(
                    "bench:   {}",
                    s.iter()
                        .map(|(k, v)| format!("{k}={v:.1}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                Err(e) => eprintln!("bench:   FAILED: {e}"),
            }
            series.runs.push(sample);
            check_interrupted()?;
        }
    }
    let mut storm = Table::new(&["API", "exec/s", "procwatch µs/exec", "lost", "alerts made"]);
    for (label, s) in [("idle", &idle), ("busy", &busy)] {
        storm.row(vec![
            label.into(),
            report::num(s.median("per_s"), 0),
            report::num(s.median("us_per_exec"), 1),
            report::num(s.max("lost"), 0),
            report::num(s.median("alerts"), 0),
        ]);
    }
    storm.row(vec![
        "busy ÷ idle".into(),
        report::ratio(busy.ratio(&idle, "per_s")),
        report::ratio(busy.ratio(&idle, "us_per_exec")),
        "—".into(),
        "—".into(),
    ]);
    section
        .tables
        .push(("The storm, API idle and busy".into(), storm));
    let mut api = Table::new(&[
        "GET /api/processes req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "stream clients",
        "alerts per client (least)",
        "stream delay p50 ms",
        "p99 ms",
        "dropped as slow",
    ]);
    api.row(vec![
        report::num(busy.median("http_per_s"), 0),
        report::num(busy.median("http_p50_ms"), 2),
        report::num(busy.median("http_p99_ms"), 2),
        report::num(busy.max("http_errors"), 0),
        report::num(busy.median("sse_clients"), 0),
        report::num(busy.median("sse_least_per_client"), 0),
        report::num(busy.median("sse_p50_ms"), 1),
        report::num(busy.median("sse_p99_ms"), 1),
        report::num(busy.max("sse_dropped"), 0),
    ]);
    section
        .tables
        .push(("The API during the storm (busy)".into(), api));
    for (what, s) in [("idle", &idle), ("busy", &busy)] {
        let (failed, first) = s.failures();
        if failed > 0 {
            section.notes.push(format!(
                "{what}: {failed} of {} runs failed: {}",
                s.runs.len(),
                first.unwrap_or("")
            ));
        }
    }
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_in_the_log() {
        let log = vec![
            "INFO something".to_string(),
            "2026-12-02T13:45:51Z INFO procwatch::api::server: api listening on http://127.0.0.1:44809 addr=127.0.0.1:44809".to_string(),
        ];
        assert_eq!(port_of(&log), Some(44809));
        assert_eq!(port_of(&log[..1]), None);
    }
}
