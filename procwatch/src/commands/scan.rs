//! `procwatch scan`: one sweep of /proc (or one every `--interval` seconds), no eBPF needed.
use std::{process::ExitCode, sync::Arc};

use super::{
    pipeline::{self, ActPolicy, Tally},
    setup,
};
use crate::{
    cli::ScanArgs,
    engine::Engine,
    process::sample,
    sensor::{SensorKind, SensorStats},
};

/// Sweeps, alerts (and acts), and repeats when asked to.
pub async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let cfg = setup::load_config(&args.detect)?;
    let outputs = setup::outputs(&cfg, &args.detect)?;
    let policy = ActPolicy::new(&args.detect, &cfg);
    let mut engine = Engine::new(cfg, SensorKind::Sweep, Arc::new(SensorStats::default()));
    let mut tally = Tally::default();
    let mut terminate = super::signals::Terminate::install()?;
    let mut sweeps = 0u64;
    let stopped = loop {
        let started = std::time::Instant::now();
        let ports = engine.config().ports.clone();
        let samples = tokio::task::spawn_blocking(move || sample::sweep_all(&ports))
            .await
            .unwrap_or_default();
        let flagged = engine.on_samples(samples, started, std::time::Instant::now());
        sweeps += 1;
        if pipeline::deliver(flagged, &engine, &policy, &outputs, &mut tally).await {
            break "stopped on alert";
        }
        let Some(interval) = args.interval else {
            break "single sweep";
        };
        if args.count.is_some_and(|n| sweeps >= n) {
            break "count reached";
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            sig = terminate.recv() => break sig,
        }
    };
    let sinks = outputs.close().await;
    let summary = serde_json::json!({
        "stopped": stopped, "sweeps": sweeps, "alerts_written": tally.alerts, "engine": engine.stats(), "sinks": sinks,
    });
    tracing::info!("{summary}");
    Ok(if tally.stop {
        ExitCode::from(pipeline::EXIT_STOPPED_ON_ALERT)
    } else {
        ExitCode::SUCCESS
    })
}
