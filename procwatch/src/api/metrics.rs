//! The API's own counters, and `GET /metrics` in the Prometheus text format (0.0.4): names
//! follow Prometheus' rules (`_total` counters, base units), labels never carry a pid or a
//! path (unbounded label values would grow the scraper's storage without bound).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
};

use axum::{
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::server::AppState;

/// Counters of the API itself.
#[derive(Debug, Default)]
pub struct Counters {
    requests: Mutex<BTreeMap<u16, u64>>,
    rate_limited: AtomicU64,
    connections_refused: AtomicU64,
    auth_denied: AtomicU64,
    body_too_large: AtomicU64,
    sse_clients: AtomicI64,
    sse_sent: AtomicU64,
    sse_dropped: AtomicU64,
}

impl Counters {
    /// One request answered with `status`.
    pub fn request(&self, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry(status).or_default() += 1;
        }
    }
    /// One request refused by the rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }
    /// One connection refused by the connection cap.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }
    /// One request refused for its token.
    pub fn auth_denied(&self) {
        self.auth_denied.fetch_add(1, Relaxed);
    }
    /// One request refused for its body size.
    pub fn body_too_large(&self) {
        self.body_too_large.fetch_add(1, Relaxed);
    }
    /// A stream client came (`+1`) or went (`-1`).
    pub fn sse_clients(&self, delta: i64) {
        self.sse_clients.fetch_add(delta, Relaxed);
    }
    /// One alert sent to a stream client.
    pub fn sse_sent(&self) {
        self.sse_sent.fetch_add(1, Relaxed);
    }
    /// One stream client dropped for falling behind.
    pub fn sse_dropped(&self) {
        self.sse_dropped.fetch_add(1, Relaxed);
    }

    /// The counters as JSON (for `/api/stats`).
    pub fn json(&self) -> serde_json::Value {
        let requests: BTreeMap<String, u64> = self
            .requests
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.to_string(), *v)).collect())
            .unwrap_or_default();
        serde_json::json!({
            "requests_by_status": requests,
            "rate_limited": self.rate_limited.load(Relaxed),
            "connections_refused": self.connections_refused.load(Relaxed),
            "auth_denied": self.auth_denied.load(Relaxed),
            "body_too_large": self.body_too_large.load(Relaxed),
            "stream_clients": self.sse_clients.load(Relaxed),
            "stream_sent": self.sse_sent.load(Relaxed),
            "stream_dropped_slow": self.sse_dropped.load(Relaxed),
        })
    }
}

/// Counts each answer by status, as middleware.
pub async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    state.counters.request(r.status().as_u16());
    r
}

/// One metric family.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
            return;
        }
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
    }
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(4096);
    let mut f = Family { out: &mut out };
    let sensor = state.sensor.snapshot();
    let status = state.views.status.borrow().clone();
    let processes = state.views.processes.borrow().clone();

    f.head(
        "procwatch_build_info",
        "gauge",
        "procwatch's version and the command serving this endpoint (always 1).",
    );
    f.sample(
        "procwatch_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("command", state.command),
        ],
        1,
    );
    f.head(
        "procwatch_uptime_seconds",
        "gauge",
        "Seconds since the API started.",
    );
    f.sample(
        "procwatch_uptime_seconds",
        &[],
        state.started.elapsed().as_secs(),
    );
    f.head(
        "procwatch_events_total",
        "counter",
        "Sensor events delivered, by kind.",
    );
    for (kind, n) in &sensor.received {
        f.sample("procwatch_events_total", &[("kind", kind)], n);
    }
    f.head(
        "procwatch_events_lost_total",
        "counter",
        "Sensor events lost in the kernel (ring buffer full), by kind.",
    );
    for (kind, n) in &sensor.kernel_lost {
        f.sample("procwatch_events_lost_total", &[("kind", kind)], n);
    }
    f.head(
        "procwatch_events_fallback_lost_total",
        "counter",
        "Events the netlink fallback sensor missed (ENOBUFS overruns).",
    );
    f.sample(
        "procwatch_events_fallback_lost_total",
        &[],
        sensor.fallback_lost,
    );
    f.head(
        "procwatch_events_malformed_total",
        "counter",
        "Sensor records rejected by the decoder.",
    );
    f.sample("procwatch_events_malformed_total", &[], sensor.malformed);
    f.head(
        "procwatch_alerts_total",
        "counter",
        "Alerts emitted, by rule (an alert counts once for each of its rules).",
    );
    for (rule, n) in &status.alerts_by_rule {
        f.sample("procwatch_alerts_total", &[("rule", rule)], n);
    }
    f.head(
        "procwatch_alerts_whitelisted_total",
        "counter",
        "Alerts suppressed by the whitelist.",
    );
    f.sample(
        "procwatch_alerts_whitelisted_total",
        &[],
        status.engine.whitelisted,
    );
    if let Some(sinks) = state
        .sinks
        .as_ref()
        .and_then(|s| s.lock().ok().map(|m| m.clone()))
    {
        f.head(
            "procwatch_sink_writes_total",
            "counter",
            "Alert writes per sink: written, failed (kept and retried) and dropped (lost).",
        );
        // A sink's name may carry its file path: only its kind is a label (two files of one
        // kind add up).
        let mut by_kind: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
        for (sink, st) in &sinks {
            let kind = sink.split(':').next().unwrap_or("sink");
            let n = by_kind.entry(kind).or_default();
            n[0] += st.written;
            n[1] += st.failed;
            n[2] += st.dropped;
        }
        for (kind, n) in &by_kind {
            for (status, v) in ["written", "failed", "dropped"].iter().zip(n) {
                f.sample(
                    "procwatch_sink_writes_total",
                    &[("sink", kind), ("status", status)],
                    v,
                );
            }
        }
    }
    f.head(
        "procwatch_processes_tracked",
        "gauge",
        "Processes in the process table (live and recently exited).",
    );
    f.sample("procwatch_processes_tracked", &[], status.engine.tracked);
    f.head(
        "procwatch_processes_suspicious",
        "gauge",
        "Live processes scoring at least min_score.",
    );
    let suspicious = processes
        .entries
        .iter()
        .filter(|e| e.row.total_score >= processes.min_score && e.row.total_score > 0.0)
        .count();
    f.sample("procwatch_processes_suspicious", &[], suspicious);
    f.head(
        "procwatch_processes_evicted_total",
        "counter",
        "Processes evicted from a full table.",
    );
    f.sample(
        "procwatch_processes_evicted_total",
        &[],
        status.engine.evicted,
    );
    f.head(
        "procwatch_sweeps_total",
        "counter",
        "/proc sweeps merged into the table.",
    );
    f.sample("procwatch_sweeps_total", &[], status.engine.sweeps);
    f.head(
        "procwatch_learning_progress_ratio",
        "gauge",
        "Share of the baseline learning period gone by (1 once monitoring).",
    );
    f.sample(
        "procwatch_learning_progress_ratio",
        &[],
        status.learning.progress,
    );
    super::routes::alerts::history_metrics(&state, &mut |name, kind, help, value| {
        f.head(name, kind, help);
        f.sample(name, &[], value);
    });
    let c = &state.counters;
    f.head(
        "procwatch_api_requests_total",
        "counter",
        "API requests answered, by HTTP status.",
    );
    let requests = c.requests.lock().map(|m| m.clone()).unwrap_or_default();
    for (code, n) in &requests {
        f.sample(
            "procwatch_api_requests_total",
            &[("code", &code.to_string())],
            n,
        );
    }
    for (name, help, v) in [
        (
            "procwatch_api_rate_limited_total",
            "API requests refused by the per-client rate limit.",
            c.rate_limited.load(Relaxed),
        ),
        (
            "procwatch_api_connections_refused_total",
            "API connections refused by the connection cap.",
            c.connections_refused.load(Relaxed),
        ),
        (
            "procwatch_api_auth_denied_total",
            "API requests refused for a missing or wrong token.",
            c.auth_denied.load(Relaxed),
        ),
        (
            "procwatch_api_body_too_large_total",
            "API requests refused for their body size.",
            c.body_too_large.load(Relaxed),
        ),
        (
            "procwatch_api_stream_sent_total",
            "Alerts sent to live stream clients.",
            c.sse_sent.load(Relaxed),
        ),
        (
            "procwatch_api_stream_dropped_total",
            "Live stream clients dropped for falling behind.",
            c.sse_dropped.load(Relaxed),
        ),
    ] {
        f.head(name, "counter", help);
        f.sample(name, &[], v);
    }
    f.head(
        "procwatch_api_stream_clients",
        "gauge",
        "Live stream clients connected.",
    );
    f.sample(
        "procwatch_api_stream_clients",
        &[],
        c.sse_clients.load(Relaxed),
    );
    let mut r = out.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
