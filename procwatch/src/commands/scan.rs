//! `procwatch scan`: one sweep of /proc (or one every `--interval` seconds), no eBPF needed.
use std::{process::ExitCode, sync::Arc, time::Duration};

use super::setup;
use crate::{
    cli::ScanArgs,
    engine::Engine,
    process::sample,
    sensor::{SensorKind, SensorStats},
};

/// Sweeps, alerts, and repeats when asked to.
pub async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let cfg = setup::load_config(&args.detect)?;
    let outputs = setup::outputs(&cfg, &args.detect)?;
    let mut engine = Engine::new(cfg, SensorKind::Sweep, Arc::new(SensorStats::default()));
    let terminate = super::signals::terminate();
    tokio::pin!(terminate);
    let mut sweeps = 0u64;
    let stopped = loop {
        let samples = tokio::task::spawn_blocking(sample::sweep_all)
            .await
            .unwrap_or_default();
        for alert in engine.on_samples(samples, std::time::Instant::now()) {
            outputs.send(alert).await;
        }
        sweeps += 1;
        let Some(interval) = args.interval else {
            break "single sweep";
        };
        if args.count.is_some_and(|n| sweeps >= n) {
            break "count reached";
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(interval.max(0.1))) => {}
            sig = &mut terminate => break match sig { Ok(name) => name, Err(_) => "signal handler failure" },
        }
    };
    let sinks = outputs.close().await;
    let summary = serde_json::json!({ "stopped": stopped, "sweeps": sweeps, "engine": engine.stats(), "sinks": sinks });
    tracing::info!("{summary}");
    Ok(ExitCode::SUCCESS)
}
