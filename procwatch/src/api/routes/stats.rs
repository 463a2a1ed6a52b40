//! `GET /api/stats`, and the sampler behind its events-per-second figures (the sensor's
//! counters read once a second on the API's thread).
use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use axum::{Json, extract::State};
use serde_json::{Value, json};

use crate::api::server::AppState;

/// Samples kept (one a second: two minutes of history for the dashboard's chart).
const KEEP: usize = 120;
/// The window the current rate is taken over.
const WINDOW: Duration = Duration::from_secs(5);

/// One sample of the counters.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    time: String,
    received: BTreeMap<&'static str, u64>,
}

/// The last [`KEEP`] samples.
#[derive(Debug, Default)]
pub struct RateSampler {
    samples: VecDeque<Sample>,
}

impl RateSampler {
    fn push(&mut self, s: Sample) {
        if self.samples.len() >= KEEP {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// Events per second by kind over the last [`WINDOW`].
    fn current(&self) -> BTreeMap<&'static str, f64> {
        let Some(last) = self.samples.back() else {
            return BTreeMap::new();
        };
        let first = self
            .samples
            .iter()
            .find(|s| last.at.duration_since(s.at) <= WINDOW)
            .unwrap_or(last);
        let dt = last.at.duration_since(first.at).as_secs_f64();
        last.received
            .iter()
            .map(|(k, n)| {
                let before = first.received.get(k).copied().unwrap_or(0);
                let rate = if dt > 0.0 {
                    n.saturating_sub(before) as f64 / dt
                } else {
                    0.0
                };
                (*k, (rate * 10.0).round() / 10.0)
            })
            .collect()
    }

    /// Events per second (all kinds) between consecutive samples, oldest first.
    fn history(&self) -> Vec<Value> {
        self.samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .map(|(a, b)| {
                let dt = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
                let n: u64 = b.received.values().sum::<u64>()
                    .saturating_sub(a.received.values().sum::<u64>());
                json!({ "time": b.time, "events_per_second": ((n as f64 / dt) * 10.0).round() / 10.0 })
            })
            .collect()
    }
}

/// Samples the sensor's counters once a second, for as long as the API runs.
pub async fn sample_rates(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let received = state.sensor.snapshot().received;
        let s = Sample {
            at: Instant::now(),
            time: crate::clock::rfc3339_ms(chrono::Utc::now()),
            received,
        };
        if let Ok(mut r) = state.rates.lock() {
            r.push(s);
        }
    }
}

/// `GET /api/stats`.
pub async fn stats(State(state): State<AppState>) -> Json<Value> {
    let status = state.views.status.borrow().clone();
    let snap = state.views.processes.borrow().clone();
    let sensor = state.sensor.snapshot();
    let suspicious = snap
        .entries
        .iter()
        .filter(|e| e.row.total_score > 0.0 && e.row.total_score >= snap.min_score)
        .count();
    let (rates, history) = state
        .rates
        .lock()
        .map(|r| (r.current(), r.history()))
        .unwrap_or_default();
    let alerts_total: u64 = status.engine.alerts;
    Json(json!({
        "timestamp": snap.timestamp,
        "processes": snap.entries.len(),
        "processes_tracked": status.engine.tracked,
        "suspicious": suspicious,
        "min_score": status.min_score,
        "alerts_total": alerts_total,
        "alerts_by_rule": status.alerts_by_rule,
        "events_per_second": rates,
        "events_per_second_history": history,
        "events_total": sensor.received_total,
        "events_by_kind": sensor.received,
        "events_lost": {
            "total": sensor.lost_total,
            "by_kind": sensor.kernel_lost,
            "fallback": sensor.fallback_lost,
            "malformed": sensor.malformed,
        },
        "sensor": {
            "name": status.sensor,
            "probes_missing": sensor.probes_missing,
        },
        "mode": status.learning.mode,
        "learning": status.learning,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "command": state.command,
        "engine": status.engine,
        "api": state.counters.json(),
    }))
}
