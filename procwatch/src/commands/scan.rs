//! `procwatch scan`: one sweep of /proc (or one every `--interval` seconds), no eBPF needed.
use std::{process::ExitCode, sync::Arc};

use tokio::sync::mpsc;

use super::{
    pipeline::{self, ActPolicy, Tally},
    setup,
};
use crate::{
    cli::ScanArgs,
    engine::{Engine, Flagged},
    offload,
    procfs::{Depth, sweep::Sweeper},
    sensor::{SensorKind, SensorStats},
};

/// Runs every job the engine asks for until none is left, and returns the alerts released.
/// Each job ends within its deadline, so this does too.
async fn settle(engine: &mut Engine) -> Vec<Flagged> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut out = Vec::new();
    loop {
        for job in engine.take_jobs() {
            let (tx, hashes) = (tx.clone(), engine.hashes());
            tokio::spawn(async move {
                let id = job.id;
                let _ = tx.send((id, job.run_offloaded(offload::pool(), hashes).await));
            });
        }
        if engine.jobs_in_flight() == 0 {
            break;
        }
        match rx.recv().await {
            Some((id, outcome)) => {
                out.extend(engine.on_job_done(id, outcome, std::time::Instant::now()));
            }
            None => break,
        }
    }
    out.extend(engine.flush());
    out
}

/// Sweeps, alerts (and acts), and repeats when asked to.
pub async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let cfg = setup::load_config(&args.detect)?;
    let outputs = setup::outputs(&cfg, &args.detect)?;
    let policy = ActPolicy::new(&args.detect, &cfg);
    let mut engine = Engine::new(cfg, SensorKind::Sweep, Arc::new(SensorStats::default()));
    let mut tally = Tally::default();
    // Ids from 1 for each run; `scan` keeps no history (a monitor may be writing it).
    let (mut history, _) = crate::history::History::memory();
    let mut terminate = super::signals::Terminate::install()?;
    let mut sweeps = 0u64;
    let sweeper = Sweeper::new(offload::pool().clone(), offload::READ_TIMEOUT);
    let stopped = loop {
        let started = std::time::Instant::now();
        let swept = sweeper.sweep_or_warn(Depth::Full, &engine.interest()).await;
        let mut flagged = engine.on_samples(swept, started, std::time::Instant::now());
        flagged.extend(settle(&mut engine).await);
        sweeps += 1;
        if pipeline::deliver(
            flagged,
            &mut engine,
            &policy,
            &outputs,
            &mut history,
            &mut tally,
        )
        .await
        {
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
        "stopped": stopped, "sweeps": sweeps, "alerts_written": tally.alerts, "engine": engine.stats(),
        "offload": offload::pool().stats(), "sinks": sinks,
    });
    tracing::info!("{summary}");
    Ok(if tally.stop {
        ExitCode::from(pipeline::EXIT_STOPPED_ON_ALERT)
    } else {
        ExitCode::SUCCESS
    })
}
