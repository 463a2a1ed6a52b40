//! The REST API of a real `procwatch monitor --api 127.0.0.1:0` (an ephemeral port each):
//! every endpoint's fields, filters, paging, the OpenAPI document against what the server
//! answers, auth, bad input and limits, kill protections, the SSE stream's resume, and
//! `promtool check metrics`. Each test judges only the processes it started.
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use procwatch_tests::{Monitor, TempDir, eventually, has_rule, require_root};
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789";

/// A client of one monitor's API.
struct Api {
    base: String,
    agent: ureq::Agent,
}

/// The address the monitor's API listens on, from its log line.
fn api_of(m: &mut Monitor) -> Api {
    let line = m
        .log
        .iter()
        .find(|l| l.contains("api listening on http://"))
        .cloned()
        .unwrap_or_else(|| m.wait_log(Duration::from_secs(30), "api listening on http://"));
    let at = line.find("http://").expect("address in the log line");
    let base: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    Api {
        base,
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build(),
    }
}

/// An answer: status, body text, and `Retry-After` if any.
struct Answer {
    status: u16,
    text: String,
    retry_after: Option<String>,
    content_type: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl Api {
    fn send(&self, method: &str, path: &str, token: Option<&str>) -> Answer {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let r = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = r.status();
        let retry_after = r.header("retry-after").map(str::to_owned);
        let content_type = r.header("content-type").unwrap_or("").to_owned();
        let text = r.into_string().expect("body");
        Answer {
            status,
            text,
            retry_after,
            content_type,
        }
    }

    fn get(&self, path: &str) -> Answer {
        self.send("GET", path, Some(TOKEN))
    }

    /// GET with the token, which must answer 200 with JSON.
    fn ok(&self, path: &str) -> Value {
        let a = self.get(path);
        assert_eq!(a.status, 200, "GET {path}: {}", a.text);
        a.json()
    }
}

/// Asserts that an error answer is `{"error": ..., "status": status}`.
fn assert_error(a: &Answer, status: u16, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.text);
    let v = a.json();
    assert_eq!(v["status"], status, "{what}: {v}");
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {v}"
    );
}

/// The config of a monitor with a token (and what else `extra` adds, YAML lines under `api:`).
/// Unless `extra` sets its own, the rate limit is far above what a test asks, so that no
/// test but the one about 429 depends on how fast it runs.
fn config(extra: &str) -> String {
    let rate = if extra.contains("rate_limit") {
        ""
    } else {
        "  rate_limit: 100000\n  rate_burst: 100000\n"
    };
    if extra.starts_with(' ') {
        format!("api:\n  token: {TOKEN}\n{rate}{extra}")
    } else {
        format!("{extra}api:\n  token: {TOKEN}\n{rate}")
    }
}

fn start(extra_cfg: &str, args: &[&str]) -> (Monitor, Api) {
    let mut all = vec!["--api", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut m = Monitor::start(&config(extra_cfg), &all);
    let api = api_of(&mut m);
    (m, api)
}

/// A process of this test that alerts (`tmp_exe`): a copy of sleep under /tmp.
fn suspicious(dir: &TempDir, name: &str) -> std::process::Child {
    let exe = dir.copy_exe(Path::new("/bin/sleep"), name);
    Command::new(exe)
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .expect("run the suspicious process")
}

/// Resolves a `$ref` of the document.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().expect("ref name");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Checks `v` against the documented `schema`'s required fields and top-level types.
fn check_fields(doc: &Value, schema: &Value, v: &Value, what: &str) {
    let schema = resolve(doc, schema);
    if schema["type"] == "array" {
        let items = v
            .as_array()
            .unwrap_or_else(|| panic!("{what}: not an array: {v}"));
        for x in items.iter().take(5) {
            check_fields(doc, &schema["items"], x, what);
        }
        return;
    }
    for field in schema["required"].as_array().into_iter().flatten() {
        let f = field.as_str().expect("field name");
        let got = v
            .get(f)
            .unwrap_or_else(|| panic!("{what}: no field {f:?} in {v:#}"));
        let want = resolve(doc, &schema["properties"][f]);
        let types: Vec<&str> = match &want["type"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.is_empty() {
            let actual = match got {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            let fits =
                types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
            assert!(fits, "{what}: field {f} is {actual}, documented {types:?}");
        }
        if want["type"] == "array" && want["items"].get("$ref").is_some() {
            check_fields(doc, want, got, &format!("{what}.{f}"));
        }
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn every_endpoint_answers_what_the_openapi_document_says() {
    require_root!();
    let (m, api) = start("", &[]);
    let dir = TempDir::new_in("/tmp", "api-doc");
    let mut child = suspicious(&dir, "pw-api-doc");
    let pid = child.id();
    let alert = m.expect_rule(pid, "tmp_exe");
    let alert_id = alert["id"].as_u64().expect("alert id");
    // The snapshot is republished within 250 ms of a change.
    assert!(
        eventually(Duration::from_secs(30), || {
            api.get(&format!("/api/process/{pid}")).status == 200
        }),
        "process {pid} never appeared in the API"
    );
    let exe = alert["exe"].as_str().expect("exe").to_string();
    let doc = api.ok("/api/openapi.json");
    let paths = doc["paths"].as_object().expect("paths");
    let mut asked = BTreeSet::new();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("operations") {
            if method != "get" || path == "/api/alerts/stream" {
                continue; // Writes and the stream have tests of their own below.
            }
            let concrete = path
                .replace("{pid}", &pid.to_string())
                .replace("{id}", &alert_id.to_string())
                .replace("{exe}", exe.trim_start_matches('/'))
                .replace("{path}", "index.html");
            let a = api.get(&concrete);
            let documented: Vec<&String> = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .collect();
            assert!(
                documented.iter().any(|c| **c == a.status.to_string()),
                "GET {concrete} answered {} (documented: {documented:?}): {}",
                a.status,
                a.text
            );
            asked.insert(path.clone());
            let content = &op["responses"][a.status.to_string()]["content"];
            if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
                check_fields(&doc, schema, &a.json(), &format!("GET {concrete}"));
            } else if let Some(kind) = content.as_object().and_then(|c| c.keys().next()) {
                assert!(
                    a.content_type.starts_with(kind.as_str()),
                    "GET {concrete}: content type {} documented {kind}",
                    a.content_type
                );
            }
        }
    }
    assert!(asked.len() >= 12, "too few paths asked: {asked:?}");

    // /api/processes: fields, our process with its reason, sort, order, min_score, limit.
    let all = api.ok("/api/processes?sort=pid&order=asc");
    let rows = all["processes"].as_array().expect("rows");
    let pids: Vec<u64> = rows
        .iter()
        .map(|r| r["pid"].as_u64().expect("pid"))
        .collect();
    assert!(pids.windows(2).all(|w| w[0] < w[1]), "not ascending by pid");
    let mine = rows
        .iter()
        .find(|r| r["pid"] == pid)
        .expect("our process listed");
    assert!(
        mine["total_score"].as_f64().expect("score") >= 3.0,
        "{mine}"
    );
    assert!(
        mine["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .any(|r| r["rule"] == "tmp_exe"),
        "{mine}"
    );
    assert_eq!(mine["exe"], exe.as_str());
    let by_score = api.ok("/api/processes?sort=total_score&order=desc&min_score=3&limit=500");
    let scores: Vec<f64> = by_score["processes"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["total_score"].as_f64().expect("score"))
        .collect();
    assert!(scores.iter().all(|s| *s >= 3.0), "{scores:?}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let one = api.ok("/api/processes?limit=1");
    assert_eq!(one["count"], 1);
    assert!(one["total"].as_u64().expect("total") >= 2);
    let sus = api.ok("/api/suspicious?min_score=3");
    assert!(
        sus["processes"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|r| r["pid"] == pid)
    );
    assert!(
        sus["processes"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|r| r["total_score"].as_f64() >= Some(3.0))
    );

    // /api/process/{pid}: its chain, ancestors (the test first), fds.
    let d = api.ok(&format!("/api/process/{pid}"));
    assert_eq!(d["ancestors"][0]["pid"], std::process::id(), "{d:#}");
    assert!(
        d["exec_chain"].as_array().is_some_and(|c| !c.is_empty()),
        "{d:#}"
    );
    assert!(d["fds"]["total"].as_u64().is_some_and(|n| n >= 3), "{d:#}");

    // /api/alerts: our alert, the same as its JSONL line; filters; paging by cursor.
    let got = api.ok(&format!("/api/alerts/{alert_id}"));
    assert_eq!(got, alert, "the API's alert differs from the JSONL line");
    let by_pid = api.ok(&format!("/api/alerts?pid={pid}&rule=tmp_exe"));
    let ids: Vec<u64> = by_pid["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["id"].as_u64().expect("id"))
        .collect();
    assert!(ids.contains(&alert_id), "{by_pid}");
    assert!(
        by_pid["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .all(|a| a["pid"] == pid && has_rule(a, "tmp_exe"))
    );
    let none = api.ok(&format!("/api/alerts?pid={pid}&rule=ptrace"));
    assert_eq!(none["count"], 0, "{none}");
    let high = api.ok("/api/alerts?min_score=1000");
    assert_eq!(high["count"], 0, "{high}");
    let everything = api.ok("/api/alerts?limit=1000");
    let all_ids: Vec<u64> = everything["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["id"].as_u64().expect("id"))
        .collect();
    let mut paged = Vec::new();
    let mut cursor = 0u64;
    loop {
        let page = api.ok(&format!("/api/alerts?limit=2&after={cursor}"));
        let batch: Vec<u64> = page["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| a["id"].as_u64().expect("id"))
            .collect();
        assert!(batch.len() <= 2);
        paged.extend(&batch);
        match page["next_after"].as_u64() {
            Some(next) => cursor = next,
            None => break,
        }
    }
    // Alerts may have come in between: the paged walk holds every id of the earlier full
    // read, ascending, each once.
    assert!(paged.windows(2).all(|w| w[0] < w[1]), "{paged:?}");
    for id in &all_ids {
        assert!(
            paged.contains(id),
            "id {id} missing from the paged walk {paged:?}"
        );
    }
    // Newest first, paged by `before`: the same ids, descending.
    let mut newest = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let url = match before {
            Some(b) => format!("/api/alerts?order=desc&limit=2&before={b}"),
            None => "/api/alerts?order=desc&limit=2".to_string(),
        };
        let page = api.ok(&url);
        assert!(page["next_after"].is_null(), "{page}");
        newest.extend(
            page["alerts"]
                .as_array()
                .expect("alerts")
                .iter()
                .map(|a| a["id"].as_u64().expect("id")),
        );
        match page["next_before"].as_u64() {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert!(newest.windows(2).all(|w| w[0] > w[1]), "{newest:?}");
    for id in &all_ids {
        assert!(newest.contains(id), "id {id} missing from {newest:?}");
    }
    assert_error(&api.get("/api/alerts?order=sideways"), 400, "bad order");
    assert_error(
        &api.get("/api/alerts?limit=1001"),
        400,
        "limit above the cap",
    );
    // A heuristic a baseline cannot hold is refused with the reason (an anomaly is added:
    // `accept_adds_what_an_anomaly_reported`).
    let acc = api.send(
        "POST",
        &format!("/api/alerts/{alert_id}/accept"),
        Some(TOKEN),
    );
    assert_error(&acc, 400, "accept of tmp_exe alone");
    assert!(acc.text.contains("tmp_exe"), "{}", acc.text);
    assert_error(
        &api.send("POST", "/api/alerts/99999999999/accept", Some(TOKEN)),
        404,
        "accept unknown",
    );
    let since_future = api.ok("/api/alerts?since=2999-01-01T00:00:00Z");
    assert_eq!(since_future["count"], 0);
    assert_error(&api.get("/api/alerts/99999999999"), 404, "unknown alert");
    assert_error(&api.get("/api/alerts/abc"), 400, "non-numeric alert id");
    assert_error(&api.get("/api/alerts?since=yesterday"), 400, "bad since");

    // /api/stats: counts that include our alert (republished within 250 ms).
    let mut s = api.ok("/api/stats");
    assert!(eventually(Duration::from_secs(30), || {
        s = api.ok("/api/stats");
        s["alerts_by_rule"]["tmp_exe"].as_u64() >= Some(1)
    }));
    assert!(s["processes"].as_u64() >= Some(2));
    assert!(s["suspicious"].as_u64() >= Some(1));
    assert!(s["alerts_by_rule"]["tmp_exe"].as_u64() >= Some(1), "{s}");
    assert_eq!(s["sensor"]["name"], "ebpf");
    assert!(s["events_total"].as_u64() >= Some(1), "{s}");

    // Bad input.
    assert_error(&api.get("/api/process/abc"), 400, "non-numeric pid");
    assert_error(&api.get("/api/process/0"), 400, "pid 0");
    assert_error(&api.get("/api/process/99999999"), 400, "pid beyond Linux's");
    assert_error(&api.get("/api/process/4194304"), 404, "unknown pid");
    assert_error(&api.get("/api/processes?sort=nope"), 400, "bad sort column");
    assert_error(&api.get("/api/processes?order=sideways"), 400, "bad order");
    assert_error(
        &api.get("/api/processes?min_score=-1"),
        400,
        "negative min_score",
    );
    assert_error(&api.get("/api/processes?limit=0"), 400, "limit 0");
    assert_error(
        &api.get("/api/processes?colour=red"),
        400,
        "unknown parameter",
    );
    assert_error(&api.get("/api/nothing-here"), 404, "unknown path");
    assert_error(
        &api.send("DELETE", "/api/stats", Some(TOKEN)),
        405,
        "wrong method",
    );

    let _ = child.kill();
    let _ = child.wait();
    drop(m);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn metrics_pass_promtool() {
    require_root!();
    let (m, api) = start("", &[]);
    let dir = TempDir::new_in("/tmp", "api-metrics");
    let mut child = suspicious(&dir, "pw-api-metrics");
    m.expect_rule(child.id(), "tmp_exe");
    let _ = child.kill();
    let _ = child.wait();
    // The engine's counters are republished within 250 ms.
    let mut a = api.get("/metrics");
    assert!(eventually(Duration::from_secs(30), || {
        a = api.get("/metrics");
        a.text.contains("procwatch_alerts_total{rule=\"tmp_exe\"}")
    }));
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(
        a.content_type.starts_with("text/plain"),
        "{}",
        a.content_type
    );
    for name in [
        "procwatch_events_total{kind=\"exec\"}",
        "procwatch_events_lost_total{kind=\"exec\"}",
        "procwatch_alerts_total{rule=\"tmp_exe\"}",
        "procwatch_sink_writes_total{sink=\"jsonl\",status=\"written\"}",
        "procwatch_processes_tracked",
        "procwatch_build_info{",
        "procwatch_history_rows",
        "procwatch_api_requests_total{",
    ] {
        assert!(a.text.contains(name), "no {name} in:\n{}", a.text);
    }
    // No pid or path labels.
    assert!(
        !a.text.contains("pid=") && !a.text.contains("/tmp/"),
        "{}",
        a.text
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; cargo xtask test installs it)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(a.text.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(m);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_token_guards_reads_and_writes() {
    require_root!();
    let (m, api) = start("", &[]);
    assert_error(
        &api.send("GET", "/api/stats", None),
        401,
        "read without token",
    );
    assert_error(
        &api.send("GET", "/api/processes", Some("wrong")),
        401,
        "read, wrong token",
    );
    assert_error(
        &api.send("GET", "/metrics", None),
        401,
        "metrics without token",
    );
    assert_eq!(api.send("GET", "/api/stats", Some(TOKEN)).status, 200);
    // The scheme is case-insensitive (RFC 9110).
    let lower = api
        .agent
        .get(&format!("{}/api/stats", api.base))
        .set("Authorization", &format!("bearer {TOKEN}"))
        .call();
    assert!(lower.as_ref().is_ok_and(|r| r.status() == 200), "{lower:?}");
    assert_eq!(
        api.send("GET", "/api/health", None).status,
        200,
        "health is open"
    );
    assert_eq!(api.send("GET", "/", None).status, 200, "the page is open");
    let me = std::process::id();
    assert_error(
        &api.send("POST", &format!("/api/process/{me}/kill"), None),
        403,
        "write without token",
    );
    assert_error(
        &api.send("POST", &format!("/api/process/{me}/kill"), Some("wrong")),
        401,
        "write, wrong token",
    );
    assert_error(
        &api.send("POST", "/api/alerts/1/accept", None),
        403,
        "accept without token",
    );
    drop(m);

    // No token configured: procwatch makes one, in a file only root may read, and reads
    // need it too (every user's fds, maps and cwd are no business of every local user).
    let mut m = Monitor::start("", &["--api", "127.0.0.1:0"]);
    let made = api_of(&mut m);
    let line = m
        .log
        .iter()
        .find(|l| l.contains("requests need the generated one in "))
        .cloned()
        .expect("the generated token's path is logged");
    let path = line
        .rsplit("requests need the generated one in ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .expect("path in the log line")
        .to_string();
    assert_eq!(path, "/var/lib/procwatch/api.token", "{line}");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&path).expect("the token file exists");
    assert_eq!(meta.mode() & 0o077, 0, "{path}: group/others may read it");
    let generated = std::fs::read_to_string(&path).expect("read the token");
    let generated = generated.trim();
    assert!(generated.len() >= 32, "{generated:?} is too short");
    assert_error(
        &made.send("GET", "/api/stats", None),
        401,
        "read without the generated token",
    );
    assert_error(
        &made.send("GET", "/api/process/1", None),
        401,
        "another user's process without the generated token",
    );
    assert_eq!(made.send("GET", "/api/stats", Some(generated)).status, 200);
    assert_error(
        &made.send("POST", &format!("/api/process/{me}/kill"), None),
        403,
        "write without the generated token",
    );
    drop(m);

    // The explicit opt-out: reads open on loopback, writes still refused.
    let mut m = Monitor::start("api:\n  open_reads: true\n", &["--api", "127.0.0.1:0"]);
    let open = api_of(&mut m);
    assert_eq!(open.send("GET", "/api/stats", None).status, 200);
    assert_error(
        &open.send("POST", &format!("/api/process/{me}/kill"), None),
        403,
        "write with no token configured",
    );
    drop(m);
}

#[test]
fn serving_beyond_loopback_without_a_token_is_refused() {
    let dir = TempDir::new_in(&procwatch_tests::scratch_base(), "api-refuse");
    let cfg = dir.0.join("c.yaml");
    std::fs::write(&cfg, "").expect("config");
    // Under `timeout`: should the refusal break, the server would serve on and the test would
    // hang instead of failing (exit 124 then).
    let out = Command::new("timeout")
        .arg("60")
        .arg(procwatch_tests::procwatch_bin())
        .args([
            "api", "--host", "0.0.0.0", "--port", "0", "--quiet", "--config",
        ])
        .arg(&cfg)
        .env("HOME", &dir.0)
        .env("PROCWATCH_MODEL", dir.0.join("m.json"))
        .stdin(Stdio::null())
        .output()
        .expect("procwatch runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("without a token") && err.contains("0.0.0.0"),
        "{err}"
    );

    // A token file others may read is refused too.
    let token = dir.0.join("token");
    std::fs::write(&token, "abc\n").expect("token");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(&cfg, format!("api:\n  token_file: {}\n", token.display())).expect("config");
    let out = Command::new("timeout")
        .arg("60")
        .arg(procwatch_tests::procwatch_bin())
        .args(["api", "--port", "0", "--quiet", "--config"])
        .arg(&cfg)
        .env("HOME", &dir.0)
        .env("PROCWATCH_MODEL", dir.0.join("m.json"))
        .stdin(Stdio::null())
        .output()
        .expect("procwatch runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("token_file") && err.contains("644"), "{err}");
}

/// Sends raw bytes and reads the answer's status line.
fn raw(base: &str, request: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("status line");
    line
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_foreign_host_name_is_misdirected() {
    require_root!();
    // DNS rebinding: a page on a name re-pointed at 127.0.0.1 sends its own name as Host.
    let (m, api) = start("  allowed_hosts: [monitor.internal]\n", &[]);
    let ask = |host: &str| {
        raw(
            &api.base,
            &format!(
                "GET /api/stats HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Connection: close\r\n\r\n"
            ),
        )
    };
    let port = api.base.rsplit(':').next().expect("port");
    for foreign in ["evil.example", "evil.example:80", "10.11.12.13"] {
        let status = ask(foreign);
        assert!(status.contains(" 421 "), "Host {foreign}: {status}");
    }
    for ours in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "[::1]".to_string(),
        "monitor.internal".to_string(),
    ] {
        let status = ask(&ours);
        assert!(status.contains(" 200 "), "Host {ours}: {status}");
    }
    // The 421 is JSON like every error.
    let a = api
        .agent
        .get(&format!("{}/api/health", api.base))
        .set("Host", "evil.example")
        .call();
    match a {
        Err(ureq::Error::Status(421, r)) => {
            let v: Value = r.into_json().expect("JSON");
            assert!(
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("allowed_hosts")),
                "{v}"
            );
        }
        other => panic!("expected 421: {other:?}"),
    }
    drop(m);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn data_answers_are_neither_cached_nor_sniffed() {
    require_root!();
    let (m, api) = start("", &[]);
    for (path, token, want) in [
        ("/api/stats", Some(TOKEN), 200),
        ("/metrics", Some(TOKEN), 200),
        ("/api/health", None, 200),
        ("/api/stats", None, 401),
        ("/api/no-such-thing", Some(TOKEN), 404),
    ] {
        let mut req = api.agent.get(&format!("{}{path}", api.base));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let r = match req.call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{path}: {e}"),
        };
        assert_eq!(r.status(), want, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    drop(m);
}

/// A TCP connection to `to` from the loopback address `from` (another client address).
fn connect_from(from: std::net::Ipv4Addr, to: std::net::SocketAddrV4) -> TcpStream {
    use std::os::fd::FromRawFd;
    let sin = |a: std::net::SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr_in values
    // live across the calls that read them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let src = sin(std::net::SocketAddrV4::new(from, 0));
        let rc = libc::bind(fd, (&raw const src).cast(), len);
        assert_eq!(rc, 0, "bind {from}: {}", std::io::Error::last_os_error());
        let dst = sin(to);
        let rc = libc::connect(fd, (&raw const dst).cast(), len);
        assert_eq!(rc, 0, "connect {to}: {}", std::io::Error::last_os_error());
        stream
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn one_client_holding_idle_sockets_does_not_lock_others_out() {
    require_root!();
    let (m, api) = start(
        "  max_connections_per_client: 4\n  max_connections: 64\n",
        &[],
    );
    let addr: std::net::SocketAddrV4 = api
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("v4 address");
    let greedy = std::net::Ipv4Addr::new(127, 0, 0, 1);
    // The greedy client opens its share of sockets and sends nothing on them.
    let held: Vec<TcpStream> = (0..4).map(|_| connect_from(greedy, addr)).collect();
    let ask = |mut s: TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let _ = s
            .write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let mut t = String::new();
        let _ = s.read_to_string(&mut t);
        t
    };
    // One more from it is refused at once...
    let t = ask(connect_from(greedy, addr));
    assert!(t.starts_with("HTTP/1.1 429"), "{t:?}");
    assert!(t.contains("max_connections_per_client"), "{t}");
    // ...while another client is served.
    let t = ask(connect_from(std::net::Ipv4Addr::new(127, 0, 0, 2), addr));
    assert!(t.starts_with("HTTP/1.1 200"), "{t:?}");
    drop(held);
    // Its sockets closed, the greedy client is served again.
    assert!(eventually(Duration::from_secs(30), || ask(connect_from(
        greedy, addr
    ))
    .starts_with("HTTP/1.1 200")));
    drop(m);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn idle_and_trickling_connections_are_closed() {
    require_root!();
    let (m, api) = start("", &[]);
    let addr = api.base.trim_start_matches("http://").to_string();
    // One socket that never sends, one that sends half a request head (slowloris), one
    // kept alive after an answer: the server closes each (after 10 s without a full head),
    // well within the 60 s this client waits.
    let idle = TcpStream::connect(&addr).expect("connect");
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("send");
    let mut kept = TcpStream::connect(&addr).expect("connect");
    kept.write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send");
    for (what, mut s) in [("idle", idle), ("slowloris", slow), ("kept alive", kept)] {
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut t = Vec::new();
        let r = s.read_to_end(&mut t);
        assert!(
            r.is_ok(),
            "{what}: the server kept the connection open: {r:?}"
        );
        if what == "kept alive" {
            assert!(
                t.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&t)
            );
        }
    }
    drop(m);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn stopping_does_not_wait_for_stream_clients() {
    require_root!();
    let (m, api) = start("", &[]);
    // A stream client that stays connected (streams never end by themselves).
    let mut stream = TcpStream::connect(api.base.trim_start_matches("http://")).expect("connect");
    stream
        .write_all(
            format!(
                "GET /api/alerts/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("send");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = String::new();
    BufReader::new(&stream)
        .read_line(&mut head)
        .expect("status line");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // SAFETY: signalling the procwatch this test started.
    unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) };
    let (status, _, _) = m.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}");
    drop(stream);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn limits_answer_413_and_429() {
    require_root!();
    let (m, api) = start(
        "  rate_limit: 1\n  rate_burst: 5\n  max_connections: 4\n  max_body_bytes: 1KiB\n",
        &[],
    );
    // A body over the limit: refused from its declared length, before it is sent.
    let me = std::process::id();
    let status = raw(
        &api.base,
        &format!(
            "POST /api/process/{me}/kill HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 100000000\r\n\r\n"
        ),
    );
    assert!(status.contains(" 413 "), "{status}");
    // Beyond the burst, 429 with Retry-After; health stays open for probes.
    let mut limited = None;
    for _ in 0..20 {
        let a = api.get("/api/stats");
        if a.status == 429 {
            limited = Some(a);
            break;
        }
    }
    let a = limited.expect("no 429 within 20 quick requests at rate_limit 1, burst 5");
    assert_error(&a, 429, "rate limit");
    assert!(a.retry_after.is_some(), "no Retry-After");
    assert_eq!(
        api.send("GET", "/api/health", None).status,
        200,
        "health is not rate limited"
    );
    // Connections beyond max_connections: answered 429 and closed at once.
    let addr = api.base.trim_start_matches("http://").to_string();
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let mut extra = TcpStream::connect(&addr).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut text = String::new();
    let _ = extra.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 429"), "{text:?}");
    assert!(text.contains("\"status\":429"), "{text}");
    drop(held);
    // Once they close, connections are served again.
    assert!(eventually(Duration::from_secs(30), || {
        TcpStream::connect(&addr).is_ok_and(|mut s| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(
                b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let mut t = String::new();
            let _ = s.read_to_string(&mut t);
            t.starts_with("HTTP/1.1 200")
        })
    }));
    // The refusals are counted (the bucket refills at 1/s).
    let mut refused = None;
    assert!(eventually(Duration::from_secs(30), || {
        let a = api.get("/metrics");
        refused = a.text.lines().find_map(|l| {
            l.strip_prefix("procwatch_api_connections_refused_total ")
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        a.status == 200
    }));
    assert!(
        refused >= Some(1),
        "refused connections not counted: {refused:?}"
    );
    drop(m);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn kills_keep_the_protections_and_are_recorded() {
    require_root!();
    // The scope: a holder process of this test and its child. Everything here is this test's
    // own, also the process outside the scope (a sibling of the holder).
    let mut holder = Command::new("/bin/sh")
        .args(["-c", "/bin/sleep 300 & echo $!; wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("holder");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the inner pid");
    let inner: u32 = line.trim().parse().expect("pid");
    let mut outside = Command::new("/bin/sleep")
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .expect("sleep");
    let scope = holder.id().to_string();
    let (m, api) = start("", &["--enforce-scope-pid", &scope]);
    let post = |path: &str| api.send("POST", path, Some(TOKEN));
    // The kill path names the process as shown: its start time from GET /api/process/{pid}.
    let kill = |pid: u32| {
        let shown = api.get(&format!("/api/process/{pid}"));
        let start = if shown.status == 200 {
            shown.json()["start_boottime_ns"].as_u64().unwrap_or(0)
        } else {
            0
        };
        format!("/api/process/{pid}/kill?start_boottime_ns={start}")
    };
    let post_kill = |pid: u32| post(&kill(pid));
    assert_error(&post_kill(1), 403, "pid 1");
    assert_error(&post_kill(m.pid()), 403, "procwatch itself");
    assert_error(
        &post("/api/process/abc/kill?start_boottime_ns=1"),
        400,
        "non-numeric pid",
    );
    assert_error(&post_kill(4_194_304), 404, "unknown pid");
    for pid in [inner, outside.id()] {
        assert!(
            eventually(Duration::from_secs(30), || api
                .get(&format!("/api/process/{pid}"))
                .status
                == 200),
            "process {pid} never appeared"
        );
    }
    // Outside the scope: refused, and it lives.
    let a = post_kill(outside.id());
    assert_error(&a, 403, "outside --enforce-scope-pid");
    assert!(a.text.contains("outside"), "{}", a.text);
    assert!(
        outside.try_wait().expect("try_wait").is_none(),
        "the process outside the scope was killed"
    );
    let _ = outside.kill();
    let _ = outside.wait();

    // Not the process shown (another start time, as after a pid reuse): 409, and it lives.
    let shown = api.ok(&format!("/api/process/{inner}"))["start_boottime_ns"]
        .as_u64()
        .expect("start_boottime_ns");
    let a = post(&format!(
        "/api/process/{inner}/kill?start_boottime_ns={}",
        shown + 1
    ));
    assert_error(&a, 409, "another start time");
    assert!(a.text.contains("not the one shown"), "{}", a.text);
    assert!(
        procwatch::procfs::stat::read_stat(inner).is_ok(),
        "a kill naming another start time killed the process"
    );
    // No start time: 400.
    assert_error(
        &post(&format!("/api/process/{inner}/kill")),
        400,
        "no start_boottime_ns",
    );
    // Inside the scope: killed, exactly, and recorded as an alert.
    let a = post(&format!(
        "/api/process/{inner}/kill?start_boottime_ns={shown}"
    ));
    assert_eq!(a.status, 200, "{}", a.text);
    let v = a.json();
    assert_eq!(v["killed"], true, "{v}");
    assert_eq!(v["alert"]["action"], "killed", "{v}");
    // Answered once recorded: the alert is in the history at once, no waiting.
    let answered = v["alert"]["id"].as_u64().expect("the alert's id");
    let at_once = api.get(&format!("/api/alerts/{answered}"));
    assert_eq!(
        at_once.status, 200,
        "the kill's alert is not in the history yet: {}",
        at_once.text
    );
    assert_eq!(at_once.json()["action"], "killed", "{}", at_once.text);
    assert_eq!(at_once.json()["pid"], inner, "{}", at_once.text);
    // The holder's `wait` returns once its child is dead.
    let status = holder.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert!(
        procwatch::procfs::stat::read_stat(inner).is_err(),
        "the killed process is still there"
    );
    let recorded = m
        .wait_alert(Duration::from_secs(60), |a| {
            a["pid"] == inner && a["action"] == "killed"
        })
        .expect("the kill is recorded as an alert in the JSONL");
    assert_eq!(recorded["trigger"]["kind"], "api_kill", "{recorded}");
    let id = recorded["id"].as_u64().expect("id");
    assert_eq!(id, answered, "{recorded}");
    assert_eq!(api.ok(&format!("/api/alerts/{id}")), recorded);
    // Gone now: a second kill finds nothing.
    assert!(eventually(Duration::from_secs(30), || {
        post(&format!(
            "/api/process/{inner}/kill?start_boottime_ns={shown}"
        ))
        .status
            == 404
    }));
    drop(m);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn kill_protections_hold_without_a_scope() {
    require_root!();
    // No --enforce-scope-pid here: the protections alone must refuse. Only refusals are
    // asserted, of processes that a kill could not take from this machine anyway (init and
    // kthreadd ignore signals they do not handle) or that this test owns.
    let dir = TempDir::new_in(&procwatch_tests::scratch_base(), "api-allow");
    let allowed = dir.0.join("pw-allowed-sleep");
    procwatch_tests::install_exe(Path::new("/bin/sleep"), &allowed);
    let mut child = Command::new(&allowed)
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .expect("run the allowlisted copy");
    let cfg = format!("enforce:\n  allow_exe_paths: [{}]\n", allowed.display());
    let (m, api) = start(&cfg, &[]);
    let kill = |pid: u32| {
        let shown = api.get(&format!("/api/process/{pid}"));
        let start = if shown.status == 200 {
            shown.json()["start_boottime_ns"].as_u64().unwrap_or(0)
        } else {
            0
        };
        api.send(
            "POST",
            &format!("/api/process/{pid}/kill?start_boottime_ns={start}"),
            Some(TOKEN),
        )
    };
    let a = kill(1);
    assert_error(&a, 403, "pid 1");
    assert!(
        a.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("init")),
        "{}",
        a.text
    );
    assert!(
        eventually(Duration::from_secs(30), || api.get("/api/process/2").status
            == 200),
        "kthreadd never listed"
    );
    let a = kill(2);
    assert_error(&a, 403, "kthreadd");
    assert!(a.text.contains("kernel thread"), "{}", a.text);
    let a = kill(m.pid());
    assert_error(&a, 403, "procwatch itself");
    assert!(a.text.contains("procwatch"), "{}", a.text);
    assert!(
        eventually(Duration::from_secs(30), || api
            .get(&format!("/api/process/{}", child.id()))
            .status
            == 200),
        "the allowlisted process never listed"
    );
    let a = kill(child.id());
    assert_error(&a, 403, "an allowlisted executable");
    assert!(a.text.contains("allowlisted"), "{}", a.text);
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the allowlisted process was killed"
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(m);
}

/// One event of the stream.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: String,
}

/// Opens the stream (resuming after `last` when given); events arrive on the channel.
fn stream(base: &str, last: Option<u64>) -> (std::sync::mpsc::Receiver<Sse>, TcpStream) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    let resume = last.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    s.write_all(
        format!(
            "GET /api/alerts/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\
             Authorization: Bearer {TOKEN}\r\n{resume}\r\n"
        )
        .as_bytes(),
    )
    .expect("send");
    let reader = s.try_clone().expect("clone");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(reader);
        let mut line = String::new();
        let (mut id, mut event, mut data) = (None, String::new(), String::new());
        // Chunked framing lines are not `field: value` lines and are passed over.
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            let l = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")) {
                id = v.trim().parse().ok();
            } else if let Some(v) = l
                .strip_prefix("event: ")
                .or_else(|| l.strip_prefix("event:"))
            {
                event = v.trim().to_string();
            } else if let Some(v) = l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")) {
                data.push_str(v);
            } else if l.is_empty() && !data.is_empty() {
                let _ = tx.send(Sse {
                    id: id.take(),
                    event: std::mem::take(&mut event),
                    data: std::mem::take(&mut data),
                });
            }
            line.clear();
        }
    });
    (rx, s)
}

/// Waits for the stream's alert event of `pid`.
fn next_alert_of(rx: &std::sync::mpsc::Receiver<Sse>, pid: u32) -> (u64, Value) {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let ev = rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no streamed alert for pid {pid}"));
        if ev.event != "alert" {
            continue;
        }
        let v: Value = serde_json::from_str(&ev.data).expect("alert JSON");
        assert_eq!(ev.id, v["id"].as_u64(), "the event id is the alert id");
        if v["pid"] == pid {
            return (ev.id.expect("id"), v);
        }
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn the_stream_resumes_with_last_event_id() {
    require_root!();
    let (m, api) = start("", &[]);
    let dir = TempDir::new_in("/tmp", "api-sse");
    let (rx, conn) = stream(&api.base, None);
    // Wait for the stream to be attached (its client counted) before the first alert.
    assert!(eventually(Duration::from_secs(30), || {
        api.ok("/api/stats")["api"]["stream_clients"].as_i64() >= Some(1)
    }));
    let mut first = suspicious(&dir, "pw-api-sse-1");
    let (id1, live) = next_alert_of(&rx, first.id());
    let jsonl = m.expect_rule(first.id(), "tmp_exe");
    assert_eq!(
        live, jsonl,
        "the streamed alert differs from the JSONL line"
    );
    // Disconnected, two alerts happen; the client resumes after the first.
    drop(conn);
    drop(rx);
    let mut second = suspicious(&dir, "pw-api-sse-2");
    let mut third = suspicious(&dir, "pw-api-sse-3");
    let a2 = m.expect_rule(second.id(), "tmp_exe");
    let a3 = m.expect_rule(third.id(), "tmp_exe");
    let (rx, _conn) = stream(&api.base, Some(id1));
    let mut seen = Vec::new();
    let want: BTreeSet<u64> = [a2["id"].as_u64(), a3["id"].as_u64()]
        .into_iter()
        .flatten()
        .collect();
    let end = Instant::now() + Duration::from_secs(60);
    while !want.iter().all(|id| seen.contains(id)) {
        let ev = rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("resume delivered only {seen:?}, wanted {want:?}"));
        if ev.event == "alert" {
            seen.push(ev.id.expect("id"));
        }
    }
    assert!(
        !seen.contains(&id1),
        "the alert before Last-Event-ID came again: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated: {seen:?}"
    );
    // And live alerts follow on the resumed stream.
    let mut fourth = suspicious(&dir, "pw-api-sse-4");
    let (id4, _) = next_alert_of(&rx, fourth.id());
    assert!(id4 > *seen.last().expect("seen"));
    for c in [&mut first, &mut second, &mut third, &mut fourth] {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(m);
}

/// A client resuming from an id this procwatch never published (ids restarted) is told to
/// reset, then gets every new alert (not only those above its old id).
#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_stream_resuming_past_the_last_id_is_reset() {
    require_root!();
    let (m, api) = start("", &[]);
    let dir = TempDir::new_in("/tmp", "api-sse-reset");
    let old_run = 1_000_000_000_000u64;
    let (rx, _conn) = stream(&api.base, Some(old_run));
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("an event after resuming past the last id");
    assert_eq!(first.event, "reset", "{first:?}");
    let data: Value = serde_json::from_str(&first.data).expect("reset JSON");
    let published = data["last_id"].as_u64().expect("last_id");
    assert!(published < old_run, "{data}");
    assert_eq!(first.id, Some(published), "{first:?}");
    let mut p = suspicious(&dir, "pw-api-sse-reset");
    let (id, _) = next_alert_of(&rx, p.id());
    assert!(
        id > published && id < old_run,
        "{id} after reset to {published}"
    );
    let _ = p.kill();
    let _ = p.wait();
    drop(m);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn accept_adds_what_an_anomaly_reported() {
    require_root!();
    // A model trained for a moment: everything after is judged against it.
    let dir = TempDir::new_in(&procwatch_tests::scratch_base(), "api-accept");
    let model = dir.0.join("model.json");
    let cfg = dir.0.join("c.yaml");
    std::fs::write(&cfg, "").expect("config");
    let out = Command::new(procwatch_tests::procwatch_bin())
        .args(["train", "--duration", "2s", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--model")
        .arg(&model)
        .env("HOME", &dir.0)
        .stdin(Stdio::null())
        .output()
        .expect("train");
    assert!(
        out.status.success(),
        "train: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model_arg = model.to_string_lossy().to_string();
    let (m, api) = start("min_score: 0.5\n", &["--model", &model_arg]);
    // An executable the model has never seen.
    let exe = dir.copy_exe(Path::new("/bin/sleep"), "pw-api-unknown");
    let mut child = Command::new(&exe)
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .expect("run");
    let alert = m.expect_rule(child.id(), "unknown_executable");
    let id = alert["id"].as_u64().expect("id");
    let acc = api.send("POST", &format!("/api/alerts/{id}/accept"), Some(TOKEN));
    assert_eq!(acc.status, 200, "{}", acc.text);
    let acc = acc.json();
    assert_eq!(acc["id"], id);
    assert!(
        acc["added"].as_array().is_some_and(|a| !a.is_empty()),
        "{acc}"
    );
    let key = exe.to_string_lossy().trim_start_matches('/').to_string();
    assert!(
        eventually(Duration::from_secs(30), || api
            .get(&format!("/api/baselines/{key}"))
            .status
            == 200),
        "{} never got a baseline",
        exe.display()
    );
    let list = api.ok("/api/baselines");
    assert_eq!(list["enabled"], true);
    let _ = child.kill();
    let _ = child.wait();
    drop(m);
}

#[test]
fn procwatch_api_serves_its_own_proc_view_without_ebpf() {
    let models = TempDir::new_in(&procwatch_tests::scratch_base(), "api-model");
    let model = models.0.join("model.json");
    let model_arg = model.to_string_lossy().into_owned();
    let mut m = Monitor::start_cmd(
        "api",
        &config(""),
        &["--port", "0", "--interval", "500ms", "--model", &model_arg],
    );
    let api = api_of(&mut m);
    let me = std::process::id();
    assert!(
        eventually(Duration::from_secs(30), || {
            api.get(&format!("/api/process/{me}")).status == 200
        }),
        "this test's process is not listed"
    );
    let s = api.ok("/api/stats");
    assert_eq!(s["sensor"]["name"], "sweep", "{s}");
    assert_eq!(s["command"], "api");
    // A /tmp executable alerts at the next sweep, and the alert is in the API's history.
    let dir = TempDir::new_in("/tmp", "api-sweep");
    let mut child = suspicious(&dir, "pw-api-sweep");
    let alert = m.expect_rule(child.id(), "tmp_exe");
    let id = alert["id"].as_u64().expect("id");
    assert_eq!(api.ok(&format!("/api/alerts/{id}")), alert);
    // The table's copy is republished within 250 ms of the sweep.
    let listed = eventually(Duration::from_secs(30), || {
        api.ok("/api/suspicious?min_score=3&sort=pid")["processes"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["pid"] == child.id()))
    });
    assert!(listed, "the /tmp process is not among the suspicious ones");
    let _ = child.kill();
    let _ = child.wait();
    // Read-only by default: stopping writes no model...
    // SAFETY: signalling the procwatch this test started.
    unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) };
    let (status, _, _) = m.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}");
    assert!(!model.exists(), "procwatch api wrote {}", model.display());
    // ...and with --save-model it does (what it learned from the sweeps).
    let m = Monitor::start_cmd(
        "api",
        &config(""),
        &[
            "--port",
            "0",
            "--interval",
            "500ms",
            "--model",
            &model_arg,
            "--save-model",
        ],
    );
    // SAFETY: as above.
    unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) };
    let (status, _, _) = m.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}");
    assert!(model.exists(), "--save-model wrote no {}", model.display());
}
