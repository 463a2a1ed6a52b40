//! `procwatch monitor`: the main job. Sensor events drive detection in real time; a periodic
//! /proc sweep (off the engine's task) re-checks state-based rules for live processes.
use std::{process::ExitCode, sync::Arc, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tracing::{info, warn};

use super::setup;
use crate::{
    cli::MonitorArgs,
    engine::Engine,
    process::sample::{self, Sample},
    sensor::{self, EbpfOptions, SensorOptions, SensorStats, ebpf::KillPolicy},
};

/// Runs until SIGINT/SIGTERM (or `--duration`), then drains the sensor and flushes every sink.
pub async fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let cfg = setup::load_config(&args.detect)?;
    let stats = Arc::new(SensorStats::default());
    let (tx, mut events) = mpsc::channel(8192);
    let kill = KillPolicy {
        ptrace: cfg.enforce.ptrace,
        wx_mem: cfg.enforce.wx_mem,
        allow_exe_paths: cfg.enforce.allow_exe_paths.clone(),
        scope_pid: args.enforce_scope_pid,
    };
    let opts = SensorOptions {
        mode: args.sensor,
        ebpf: EbpfOptions {
            kill,
            ..EbpfOptions::default()
        },
        sweep_interval: cfg.sweep_interval,
    };
    let outputs = setup::outputs(&cfg, &args.detect)?;
    let running = sensor::start(&opts, tx, stats.clone())?;
    let mut engine = Engine::new(cfg.clone(), running.kind, stats.clone());

    let seed = tokio::task::spawn_blocking(sample::sweep_all)
        .await
        .unwrap_or_default();
    for alert in engine.on_samples(seed, std::time::Instant::now()) {
        outputs.send(alert).await;
    }
    info!(
        sensor = running.kind.as_str(),
        processes = engine.table().len(),
        min_score = cfg.min_score,
        "monitoring; SIGINT/SIGTERM stops"
    );

    let mut tick = tokio::time::interval(cfg.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut sweep: Option<JoinHandle<Vec<Sample>>> = None;
    let deadline = async {
        match args.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let terminate = super::signals::terminate();
    tokio::pin!(terminate);
    let far = Instant::now() + Duration::from_secs(86_400 * 365);

    let stopped = loop {
        let recheck_at = engine.next_recheck().map(Instant::from_std).unwrap_or(far);
        tokio::select! {
            maybe = events.recv() => {
                let Some(event) = maybe else { break "sensor ended" };
                for alert in engine.on_event(&event, std::time::Instant::now()) {
                    outputs.send(alert).await;
                }
            }
            _ = tick.tick() => {
                if sweep.is_none() {
                    sweep = Some(tokio::task::spawn_blocking(sample::sweep_all));
                }
            }
            done = async {
                match sweep.as_mut() {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            }, if sweep.is_some() => {
                sweep = None;
                match done {
                    Ok(samples) => {
                        for alert in engine.on_samples(samples, std::time::Instant::now()) {
                            outputs.send(alert).await;
                        }
                    }
                    Err(e) => warn!(error = %e, "/proc sweep failed"),
                }
            }
            _ = tokio::time::sleep_until(recheck_at) => {
                let now = std::time::Instant::now();
                for pid in engine.due_rechecks(now) {
                    if let Ok(s) = sample::take(pid, &sample::Depth::Full)
                        && let Some(alert) = engine.on_sample(s, now)
                    {
                        outputs.send(alert).await;
                    }
                }
            }
            sig = &mut terminate => break match sig { Ok(name) => name, Err(_) => "signal handler failure" },
            _ = &mut deadline => break "duration elapsed",
        }
    };

    // Stop the sensor, then evaluate every event it had already produced.
    let stopper = tokio::spawn(running.stop());
    while let Some(event) = events.recv().await {
        for alert in engine.on_event(&event, std::time::Instant::now()) {
            outputs.send(alert).await;
        }
    }
    let _ = stopper.await;
    let sinks = outputs.close().await;
    let summary = serde_json::json!({
        "stopped": stopped,
        "sensor": stats.snapshot(),
        "engine": engine.stats(),
        "sinks": sinks,
    });
    eprintln!("procwatch monitor: {summary}");
    Ok(ExitCode::SUCCESS)
}
