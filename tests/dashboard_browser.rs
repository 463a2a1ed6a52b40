//! The web dashboard in a real browser, as root: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`) against a running `procwatch monitor --api`
//! with a token, while a suspicious process of this test's own tree runs. It checks what a
//! person would: the page asks for the token, the table shows the process with a red score,
//! its row opens the detail view, a hostile process name stays text, the live feed shows a new
//! alert (latency from the JSONL line to the page is measured and printed), the accept button
//! adds the alert to the baseline (the API then shows it), and the page fits a phone's width.
//! Screenshots go to `target/test-output/dashboard/`.
use std::{
    io::{BufRead, BufReader},
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use procwatch_tests::{
    Monitor, TempDir, eventually, has_rule, require_root, scratch_base, skip, target_dir,
};
use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A generous bound for anything the page has to show (a shared, busy 2-CPU machine).
const SHOW: Duration = Duration::from_secs(60);

fn http() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

/// The answer to a request whatever its status (ureq reports 4xx/5xx as errors).
fn answer(r: Result<ureq::Response, ureq::Error>, what: &str) -> Result<(u16, Value), String> {
    let resp = match r {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => return Err(format!("{what}: {e}")),
    };
    let status = resp.status();
    let v = resp
        .into_json()
        .map_err(|e| format!("{what}: {status}, answer is not JSON: {e}"))?;
    Ok((status, v))
}

/// chromedriver and one headless Chromium session, both ended on drop.
struct Browser {
    driver: Child,
    base: String,
    http: ureq::Agent,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver on a port it picks and opens a session; `Err` says why Chromium
    /// cannot run here.
    fn start() -> Result<Self, String> {
        let driver_bin = which("chromedriver").ok_or("chromedriver is not installed")?;
        let chromium = which("chromium").ok_or("chromium is not installed")?;
        let mut driver = Command::new(driver_bin)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("chromedriver does not start: {e}"))?;
        let stdout = driver.stdout.take().ok_or("chromedriver stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|p| p.trim_end_matches('.').parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let Ok(port) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = driver.kill();
            let _ = driver.wait();
            return Err("chromedriver did not report its port within 30 s".into());
        };
        let profile = TempDir::new_in(&scratch_base(), "chromium-profile");
        let mut b = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: http(),
            _profile: profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--window-size=1280,800", "--hide-scrollbars",
                    format!("--user-data-dir={}", b._profile.0.display()),
                ],
            },
        }}});
        let v = b
            .send("POST", "/session", Some(caps))
            .map_err(|e| format!("Chromium does not start under chromedriver: {e}"))?;
        let id = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {v}"))?;
        b.base = format!("{}/session/{id}", b.base);
        Ok(b)
    }

    /// One WebDriver command; the `value` of its answer, or the WebDriver error.
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let resp = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, Some(b)) => self.http.post(&url).send_json(b),
            (_, None) => self.http.post(&url).send_json(json!({})),
        };
        let (status, v) = answer(resp, &format!("{method} {url}"))?;
        if status != 200 {
            return Err(format!("{method} {url}: {status} {}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.send(method, path, body)
            .unwrap_or_else(|e| panic!("webdriver: {e}"))
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` in the page (its arguments as `arguments[i]`) and returns its result.
    fn js(&self, script: &str, args: &[Value]) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// The element matching `css`, if there is one now.
    fn find(&self, css: &str) -> Option<String> {
        self.send(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )
        .ok()
        .and_then(|v| v[ELEMENT].as_str().map(str::to_owned))
    }

    /// Waits up to [`SHOW`] for `css` to match a displayed element.
    fn wait(&self, css: &str, what: &str) -> String {
        let mut found = None;
        let shown = eventually(SHOW, || {
            found = self.find(css).filter(|e| {
                self.send("GET", &format!("/element/{e}/displayed"), None)
                    .is_ok_and(|v| v == true)
            });
            found.is_some()
        });
        assert!(
            shown,
            "{what}: nothing displayed matches {css} within {SHOW:?}; page text:\n{}",
            self.page_text()
        );
        found.unwrap_or_default()
    }

    /// A real click (the browser's own input events), as a person would.
    fn click(&self, element: &str) {
        self.cmd("POST", &format!("/element/{element}/click"), None);
    }

    fn type_text(&self, element: &str, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks what `css` matches, found afresh each try: the table is redrawn on every
    /// refresh, which leaves an element found before stale.
    fn click_on(&self, css: &str, what: &str) {
        let mut last = String::new();
        let done = eventually(SHOW, || {
            let Some(e) = self.find(css) else {
                return false;
            };
            self.send("POST", &format!("/element/{e}/click"), None)
                .map_err(|err| last = err)
                .is_ok()
        });
        assert!(
            done,
            "{what}: could not click {css}: {last}\npage:\n{}",
            self.page_text()
        );
    }

    /// The text `css` shows now (read in one step: an element found before may be stale).
    fn text_of(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null",
            &[json!(css)],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn clear(&self, element: &str) {
        self.cmd("POST", &format!("/element/{element}/clear"), None);
    }

    fn text(&self, element: &str) -> String {
        self.cmd("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn page_text(&self) -> String {
        self.send(
            "POST",
            "/execute/sync",
            Some(json!({"script": "return document.body.innerText", "args": []})),
        )
        .map(|v| v.as_str().unwrap_or_default().chars().take(4000).collect())
        .unwrap_or_else(|e| e)
    }

    /// The viewport as a phone or desktop of `width` × `height` CSS pixels.
    fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile,
                }}),
            ),
        );
    }

    /// Saves a screenshot of the viewport as `path` (PNG) and prints where it is.
    fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = data_encoding::BASE64
            .decode(b64.as_str().unwrap_or_default().as_bytes())
            .expect("screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.base.contains("/session/") {
            let _ = self.send("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The procwatch API, read as the page reads it.
struct Api {
    base: String,
    token: String,
    http: ureq::Agent,
}

impl Api {
    fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
            .call();
        answer(resp, &format!("GET {path}")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The baseline of `exe` as `GET /api/baselines/{exe}` shows it (None: not in the model).
    fn baseline(&self, exe: &Path) -> Option<Value> {
        let key: String = exe
            .as_os_str()
            .as_bytes()
            .iter()
            .map(|&b| {
                if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let (status, v) = self.get(&format!("/api/baselines{key}"));
        match status {
            200 => Some(v),
            404 => None,
            _ => panic!("GET /api/baselines{key}: {status} {v}"),
        }
    }
}

/// A process this test started, in a process group of its own, killed with its group on drop
/// (also when an assertion fails halfway).
struct Running(Child);

impl Running {
    fn id(&self) -> u32 {
        self.0.id()
    }

    /// True once the process has ended (and is reaped).
    fn ended(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.0.id()) {
            // SAFETY: signals the process group this test created for its own child.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

/// Writes into `dir` a copy of `src` named `name` and runs it with `args`.
fn run_copy(
    dir: &TempDir,
    src: &str,
    name: &std::ffi::OsStr,
    args: &[&std::ffi::OsStr],
) -> (PathBuf, Running) {
    let exe = dir.0.join(name);
    procwatch_tests::install_exe(Path::new(src), &exe);
    let child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
    (exe, Running(child))
}

/// The JSONL file's length now: where to start looking for alerts that come after.
fn jsonl_len(jsonl: &Path) -> u64 {
    std::fs::metadata(jsonl).map_or(0, |m| m.len())
}

/// When the first alert about `pid` written after byte `from` appeared in the JSONL file (unix
/// ms; the file is polled every 5 ms, reading only what is new), and the alert.
fn jsonl_arrival(jsonl: &Path, from: u64, pid: u32) -> Option<(u64, Value)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(jsonl).ok()?;
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut pending = Vec::new();
    let end = Instant::now() + SHOW;
    while Instant::now() < end {
        let mut chunk = Vec::new();
        let _ = file.read_to_end(&mut chunk);
        let seen = now_ms();
        pending.extend_from_slice(&chunk);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            if let Ok(a) = serde_json::from_slice::<Value>(&line)
                && a["pid"] == pid
            {
                return Some((seen, a));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn the_dashboard_works_in_a_real_browser() {
    require_root!();
    let test = "dashboard_browser::the_dashboard_works_in_a_real_browser";
    let browser = match Browser::start() {
        Ok(b) => b,
        Err(why) => return skip(test, &why),
    };
    let out = target_dir().join("test-output/dashboard");
    std::fs::create_dir_all(&out).expect("mkdir target/test-output/dashboard");
    let out = out.canonicalize().unwrap_or(out);

    // A model whose learning has ended: a new executable is then judged at once (an
    // `unknown_executable` anomaly beside the heuristics), which the accept button can take in.
    let dir = TempDir::new_in(&scratch_base(), "dashboard");
    let model = dir.0.join("model.json");
    let model_arg = model.to_str().expect("utf-8 path");
    let base_config = "sweep_interval: 500ms\n";
    let train = Monitor::start_cmd(
        "train",
        base_config,
        &["--model", model_arg, "--duration", "2"],
    );
    let (status, summary, _) = train.wait_exit(SHOW);
    assert!(status.success(), "train failed: {summary:?}");

    let token = format!("pw-dash-{}-{}", std::process::id(), now_ms());
    let config = format!("{base_config}api:\n  token: \"{token}\"\n");
    // Port 0: the kernel picks a free one, which the log names (before "monitoring").
    // Kills (the dashboard's Kill button) are confined to this test's own process tree.
    let scope = std::process::id().to_string();
    let mut m = Monitor::start(
        &config,
        &[
            "--model",
            model_arg,
            "--api",
            "127.0.0.1:0",
            "--enforce-scope-pid",
            &scope,
        ],
    );
    const LISTENING: &str = "api listening on http://";
    let line = match m.log.iter().find(|l| l.contains(LISTENING)) {
        Some(l) => l.clone(),
        None => m.wait_log(SHOW, LISTENING),
    };
    let addr = line
        .split(LISTENING)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    let api = Api {
        base: format!("http://{addr}"),
        token: token.clone(),
        http: http(),
    };
    assert!(
        eventually(SHOW, || api.get("/api/health").0 == 200),
        "the API never answered on {addr}"
    );

    // The suspicious process (an executable in /tmp) and one whose name and arguments are
    // hostile: markup, quotes, an escape sequence, a newline and bytes that are not UTF-8.
    let tmp = TempDir::new_in("/tmp", "dashboard");
    let (suspect_exe, mut suspect) = run_copy(
        &tmp,
        "/bin/sleep",
        "pw-dash-suspect".as_ref(),
        &["300".as_ref()],
    );
    let hostile_name = std::ffi::OsStr::from_bytes(b"<img src=x onerror=pwXss=1>\"'\xff");
    // A shell (it ignores the arguments after its script; `; :` keeps it from exec'ing sleep).
    let (_hostile_exe, hostile) = run_copy(
        &tmp,
        "/bin/sh",
        hostile_name,
        &[
            "-c".as_ref(),
            "sleep 300; :".as_ref(),
            "pw".as_ref(),
            std::ffi::OsStr::from_bytes(b"\x1b[31m<script>pwXss=2</script>\nnext"),
        ],
    );
    let (pid, hpid) = (suspect.id(), hostile.id());
    let first = m.expect_rule(pid, "tmp_exe");
    assert!(
        has_rule(&first, "unknown_executable"),
        "the trained model judges the new executable: {first:#}"
    );
    m.expect_rule(hpid, "tmp_exe");

    // The page asks for the token (reads need it when one is configured).
    browser.viewport(1280, 800, false);
    browser.goto(&format!("http://{addr}/"));
    let input = browser.wait("#token-dialog[open] #token-input", "token prompt");
    browser.type_text(&input, &token);
    let submit = browser.wait("#token-submit", "token submit");
    browser.click(&submit);

    // The table shows the suspicious process, score in red.
    let row_css = format!("#process-rows tr[data-pid=\"{pid}\"]");
    browser.wait(&row_css, "the suspicious process's row");
    let row_text = browser.text_of(&row_css);
    assert!(row_text.contains("pw-dash-suspect"), "row: {row_text}");
    let colour = browser.js(
        "return document.querySelector(arguments[0] + ' .score').className",
        &[json!(row_css)],
    );
    assert!(
        colour.as_str().is_some_and(|c| c.contains("score-red")),
        "a score above min_score is red: {colour}"
    );

    // The hostile process is shown as text: no element made from its name, no script ran.
    let hrow_css = format!("#process-rows tr[data-pid=\"{hpid}\"]");
    browser.wait(&hrow_css, "the hostile process's row");
    let htext = browser.js(
        "const r = document.querySelector(arguments[0]); \
         return {text: r.textContent, imgs: document.querySelectorAll('#process-rows img, #feed-list img, #process-rows script').length, \
                 xss: typeof window.pwXss}",
        &[json!(format!("#process-rows tr[data-pid=\"{hpid}\"]"))],
    );
    assert_eq!(htext["imgs"], 0, "markup from a process name: {htext}");
    assert_eq!(htext["xss"], "undefined", "a process name ran script");
    let shown = htext["text"].as_str().unwrap_or_default();
    assert!(
        shown.contains("<img src=x onerror=pwXss=1>\"'"),
        "the name is shown literally: {htext}"
    );
    assert!(
        shown.contains('\u{fffd}') || shown.contains("\\xff") || shown.contains("\\xFF"),
        "an invalid byte is shown as a replacement or an escape: {htext}"
    );
    browser.click_on(&hrow_css, "the hostile process's row");
    let detail_text = browser.wait(
        "#detail:not([hidden]) [data-testid=detail-fields]",
        "hostile detail",
    );
    let dtext = browser.text(&detail_text);
    assert!(
        !dtext.contains('\u{1b}') && dtext.contains("pwXss=2"),
        "the arguments are text, the escape byte is shown escaped: {dtext:?}"
    );
    assert_eq!(
        browser.js("return typeof window.pwXss", &[]),
        "undefined",
        "the detail view ran script from the arguments"
    );

    // Sorting by any column (here pid: descending first for a number, then ascending), and
    // the minimum-score filter.
    let row_pids = || -> Vec<u64> {
        let v = browser.js(
            "return [...document.querySelectorAll('#process-rows tr')].map(r => Number(r.dataset.pid))",
            &[],
        );
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    browser.click_on("#process-table th[data-sort=pid]", "the pid heading");
    let desc = row_pids();
    assert!(
        desc.len() > 2 && desc.windows(2).all(|w| w[0] > w[1]),
        "pid descending: {desc:?}"
    );
    browser.click_on("#process-table th[data-sort=pid]", "the pid heading");
    let asc = row_pids();
    assert!(
        asc.len() > 2 && asc.windows(2).all(|w| w[0] < w[1]),
        "pid ascending: {asc:?}"
    );
    let min = browser.wait("#min-score", "the minimum score filter");
    browser.clear(&min);
    browser.type_text(&min, "4");
    let scores = browser.js(
        "return [...document.querySelectorAll('#process-rows tr .score')].map(s => Number(s.textContent))",
        &[],
    );
    let scores: Vec<f64> = scores
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    assert!(
        !scores.is_empty() && scores.iter().all(|&x| x >= 4.0),
        "min score 4 shows only scores of 4 or more: {scores:?}"
    );
    assert!(
        row_pids().contains(&u64::from(pid)),
        "the suspicious process (score above 4) stays"
    );
    assert!(scores.len() < desc.len(), "the filter leaves something out");
    browser.clear(&min);
    browser.type_text(&min, "0");

    // Its row opens the detail view: reasons, exec chain.
    browser.click_on(&row_css, "the suspicious process's row");
    let title = browser.wait(
        &format!("#detail:not([hidden])[data-pid=\"{pid}\"] [data-testid=reasons]"),
        "the detail view of the suspicious process",
    );
    let reasons = browser.text(&title);
    assert!(reasons.contains("tmp_exe"), "detail reasons: {reasons}");
    let chain = browser.text(&browser.wait("[data-testid=detail-exec-chain]", "exec chain"));
    assert!(chain.contains("pw-dash-suspect"), "exec chain: {chain}");
    browser.js("document.getElementById('detail').scrollTo(0, 0)", &[]);
    browser.screenshot(&out.join("detail-desktop.png"));

    // Accept into the baseline, with the token, from the process's alerts in the detail view:
    // the baseline API then shows the executable accepted.
    let before = api.baseline(&suspect_exe);
    assert!(
        before.as_ref().is_none_or(|b| b["accepted"] != true),
        "accepted before the button was pressed: {before:#?}"
    );
    let in_detail = format!(
        "[data-testid=detail-alerts] li[data-alert-id=\"{}\"]",
        first["id"]
    );
    let accept = browser.wait(
        &format!("{in_detail} [data-testid=accept-button]"),
        "the accept button of the suspicious process's alert",
    );
    browser.click(&accept);
    let result = browser.wait(
        &format!("{in_detail} [data-testid=accept-result]"),
        "the accept result",
    );
    assert!(
        eventually(SHOW, || browser.text(&result).starts_with("accepted")),
        "accept answered: {}",
        browser.text(&result)
    );
    // The API shows a copy of the model taken every few seconds while clients ask for it.
    let mut after = None;
    assert!(
        eventually(SHOW, || {
            after = api.baseline(&suspect_exe);
            after.as_ref().is_some_and(|b| b["accepted"] == true)
        }),
        "the baseline after accept: {after:#?}"
    );
    browser.click(&browser.wait("#detail-close", "close button"));

    // The live feed: a new alert reaches the page through the stream (the feed filtered to this
    // test's processes by name: other software on the machine may raise alerts meanwhile).
    browser.wait("#feed-status[data-state=\"live\"]", "the live stream");
    let filter = browser.wait("#feed-text", "the feed's name filter");
    browser.type_text(&filter, "pw-dash");
    let from = jsonl_len(&m.jsonl);
    let (_trigger_exe, trigger) = run_copy(
        &tmp,
        "/bin/sleep",
        "pw-dash-trigger".as_ref(),
        &["300".as_ref()],
    );
    let tpid = trigger.id();
    let (in_jsonl, alert) =
        jsonl_arrival(&m.jsonl, from, tpid).expect("the trigger's alert in JSONL");
    // The feed item of exactly that alert (by the id JSONL gives it), about that process.
    let item_css = format!(
        "#feed-list li[data-alert-id=\"{}\"][data-pid=\"{tpid}\"]",
        alert["id"]
    );
    browser.wait(&item_css, "the new alert in the live feed");
    let received: u64 = browser
        .js(
            "return document.querySelector(arguments[0]).dataset.receivedMs",
            &[json!(item_css)],
        )
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("data-received-ms");
    let latency = i128::from(received) - i128::from(in_jsonl);
    eprintln!(
        "live feed: alert {} of pid {tpid} shown {latency} ms after it was seen in JSONL",
        alert["id"]
    );

    // Desktop, then a phone: the page fits the width (no sideways scrolling of the page).
    // Only this test's processes in the pictures (the machine runs others).
    let names = browser.wait("#name-filter", "the table's name filter");
    browser.type_text(&names, "pw-dash");
    // The charts: alerts by rule at once, events per second once two samples are in.
    browser.wait("#chart-eps-legend i", "the events-per-second chart");
    browser.js("window.scrollTo(0, 0)", &[]);
    browser.screenshot(&out.join("desktop.png"));
    browser.viewport(390, 844, true);
    assert!(
        eventually(SHOW, || {
            browser
            .js(
                "return document.documentElement.scrollWidth <= window.innerWidth && window.innerWidth === 390",
                &[],
            )
            == true
        }),
        "the page scrolls sideways at 390 px: scrollWidth {}",
        browser.js("return document.documentElement.scrollWidth", &[])
    );
    browser.js("window.scrollTo(0, 0)", &[]);
    browser.screenshot(&out.join("phone.png"));
    browser.click_on(&row_css, "the row at phone width");
    browser.wait(
        &format!("#detail:not([hidden])[data-pid=\"{pid}\"] [data-testid=reasons]"),
        "the detail view at phone width",
    );
    assert_eq!(
        browser.js(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            &[]
        ),
        true,
        "the detail view scrolls sideways at 390 px"
    );
    browser.screenshot(&out.join("detail-phone.png"));

    // Kill, with the token (two clicks): the process dies, and the kill is recorded as an
    // alert action.
    let kill = browser.wait(
        &format!("#detail:not([hidden])[data-pid=\"{pid}\"] #kill-button"),
        "the kill button",
    );
    browser.click(&kill);
    assert!(
        browser.text(&kill).starts_with("Confirm kill"),
        "the first click only arms the button: {}",
        browser.text(&kill)
    );
    browser.click(&kill);
    let said = browser.wait("[data-testid=kill-result]:not(:empty)", "the kill's answer");
    assert!(
        eventually(SHOW, || browser.text(&said).starts_with("killed")),
        "the kill answered: {}",
        browser.text(&said)
    );
    assert!(
        eventually(SHOW, || suspect.ended()),
        "the suspicious process {pid} is still alive after the kill"
    );
    let recorded = m.wait_alert(SHOW, |a| a["pid"] == pid && a["action"] == "killed");
    assert!(recorded.is_some(), "no alert records the kill of {pid}");

    // The narrowest common phone (375 px) fits too, and the token outlives a reload of the tab
    // (sessionStorage): the page loads the table without asking again.
    browser.viewport(375, 667, true);
    browser.goto(&format!("http://{addr}/"));
    let hostile_row = format!("#process-rows tr[data-pid=\"{hpid}\"]");
    browser.wait(&hostile_row, "the table after a reload");
    assert_eq!(
        browser.js(
            "return [document.getElementById('token-dialog').open, \
                     document.documentElement.scrollWidth <= window.innerWidth, window.innerWidth]",
            &[]
        ),
        json!([false, true, 375]),
        "after a reload at 375 px: no token prompt, no sideways scrolling"
    );

    drop((suspect, hostile, trigger));
    drop(browser);
    let (status, _, _) = m.stop();
    assert!(status.success(), "procwatch exit: {status}");
}
