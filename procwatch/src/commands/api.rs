//! `procwatch api`: the REST API and dashboard over procwatch's own /proc view, without eBPF.
//! The loop is `scan --interval`'s (a sweep, then the jobs it asked for, then the alerts to
//! the action stage), with the API's requests taken between sweeps and the engine's copies
//! published after each change. The model is used as `monitor` uses it (learning, saving).
use std::{process::ExitCode, sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    model_file::{ModelFile, Start},
    pipeline::{self, ActPolicy, ActionStage},
    serve::{self, ApiSide},
    setup,
};
use crate::{
    cli::ApiArgs,
    engine::{Engine, Flagged},
    offload,
    process::enrich::Outcome,
    procfs::{
        Depth,
        sweep::{Sweep, Sweeper},
    },
    sensor::{SensorKind, SensorStats},
};

/// Starts every job the engine asked for; results come back through `done`.
fn dispatch(engine: &mut Engine, done: &mpsc::UnboundedSender<(u64, Outcome)>) {
    for job in engine.take_jobs() {
        let (tx, hashes) = (done.clone(), engine.hashes());
        tokio::spawn(async move {
            let id = job.id;
            let _ = tx.send((id, job.run_offloaded(offload::pool(), hashes).await));
        });
    }
}

async fn forward(
    flagged: Vec<Flagged>,
    engine: &mut Engine,
    policy: &ActPolicy,
    stage: &ActionStage,
) {
    let prepared = pipeline::prepare(flagged, engine, policy);
    // No kernel here: descendants condemned by a kill verdict are killed by the stage.
    let _ = engine.take_condemned();
    stage.send(prepared).await;
}

/// Serves until SIGINT/SIGTERM.
pub async fn run(args: ApiArgs) -> anyhow::Result<ExitCode> {
    let cfg = setup::load_config(&args.detect)?;
    let listen = serve::api_listen(&cfg, args.host, args.port);
    let (mut model_file, learning) =
        // Read only unless asked: a second procwatch must not rewrite the model a monitor
        // on this host owns.
        ModelFile::open(
            &cfg,
            args.model.as_deref(),
            !args.save_model,
            Start::LoadOrMemory,
        )?;
    let outputs = Arc::new(setup::outputs(&cfg, &args.detect)?);
    let policy = ActPolicy::new(&args.detect, &cfg);
    let stats = Arc::new(SensorStats::default());
    let mut engine = Engine::new(cfg.clone(), SensorKind::Sweep, stats.clone());
    engine.set_learning(learning);
    // No database: a monitor on this host may be writing it (one writer per file). The API
    // still has the live stream and the most recent alerts, with ids from 1.
    let (history, history_reader) = crate::history::History::memory();
    let stage = ActionStage::start(policy.clone(), outputs.clone(), history);
    let mut stopped_on_alert = stage.stopped();
    let sweeper = Sweeper::new(offload::pool().clone(), offload::READ_TIMEOUT);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut terminate = super::signals::Terminate::install()?;
    let interval = args.interval.unwrap_or(cfg.sweep_interval);

    // The first sweep before serving, so the first answer lists every process.
    let started = std::time::Instant::now();
    let swept = sweeper.sweep_or_warn(Depth::Full, &engine.interest()).await;
    let flagged = engine.on_samples(swept, started, std::time::Instant::now());
    dispatch(&mut engine, &done_tx);
    forward(flagged, &mut engine, &policy, &stage).await;
    let scope = args.detect.enforce_scope_pid;
    let mut side = ApiSide::start(
        &cfg,
        listen,
        scope,
        &engine,
        serve::Feeds {
            sensor: stats.clone(),
            sinks: Some(outputs.live_stats()),
            history: history_reader,
            command: "api",
        },
    )?;
    info!(
        addr = %side.addr(),
        sensor = "sweep",
        processes = engine.table().len(),
        every_ms = interval.as_millis() as u64,
        "monitoring /proc for the API; SIGINT/SIGTERM stops"
    );
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut save_tick = tokio::time::interval(cfg.baseline.save_interval);
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    save_tick.tick().await;
    let mut publish_tick = tokio::time::interval(crate::api::snapshot::PUBLISH_EVERY);
    publish_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep: Option<(
        std::time::Instant,
        tokio::task::JoinHandle<std::io::Result<Sweep>>,
    )> = None;
    let stopped = loop {
        if *stopped_on_alert.borrow() {
            break "stopped on alert";
        }
        side.publish(&engine);
        tokio::select! {
            _ = tick.tick() => {
                outputs.retry();
                engine.refresh_allowlist();
                if sweep.is_none() {
                    let (sw, interest) = (sweeper.clone(), engine.interest());
                    sweep = Some((
                        std::time::Instant::now(),
                        tokio::spawn(async move { sw.sweep(Depth::Full, &interest).await }),
                    ));
                }
            }
            done = async {
                match sweep.as_mut() {
                    Some((_, handle)) => handle.await,
                    None => std::future::pending().await,
                }
            }, if sweep.is_some() => {
                let at = sweep.take().map_or_else(std::time::Instant::now, |(at, _)| at);
                match done {
                    Ok(Ok(swept)) => {
                        let flagged = engine.on_samples(swept, at, std::time::Instant::now());
                        dispatch(&mut engine, &done_tx);
                        forward(flagged, &mut engine, &policy, &stage).await;
                    }
                    Ok(Err(e)) => warn!(error = %e, "/proc sweep failed"),
                    Err(e) => warn!(error = %e, "/proc sweep task failed"),
                }
            }
            Some((id, outcome)) = done_rx.recv() => {
                let flagged = engine.on_job_done(id, outcome, std::time::Instant::now());
                dispatch(&mut engine, &done_tx);
                forward(flagged, &mut engine, &policy, &stage).await;
            }
            Some(req) = side.next() => side.handle(req, &mut engine, &stage, scope).await,
            _ = publish_tick.tick() => {}
            _ = save_tick.tick() => model_file.start_save(&mut engine),
            done = model_file.done() => model_file.on_done(&mut engine, done),
            _ = stopped_on_alert.changed() => {}
            sig = terminate.recv() => break sig,
        }
    };
    // The join waits for the API's thread (up to its runtime's shutdown timeout): off this
    // async thread, which the engine's timers and channels run on.
    let _ = tokio::task::spawn_blocking(move || side.stop()).await;
    // Jobs in flight end within their deadline; their alerts go out after.
    let settle = tokio::time::Instant::now() + offload::READ_TIMEOUT + Duration::from_secs(1);
    while engine.jobs_in_flight() > 0 {
        match tokio::time::timeout_at(settle, done_rx.recv()).await {
            Ok(Some((id, outcome))) => {
                let flagged = engine.on_job_done(id, outcome, std::time::Instant::now());
                forward(flagged, &mut engine, &policy, &stage).await;
            }
            Ok(None) | Err(_) => break,
        }
    }
    let model_saved = model_file.finish(&mut engine, false).await;
    if let Err(e) = &model_saved {
        tracing::error!("{e:#}");
    }
    let rest = engine.flush();
    stage
        .send(pipeline::prepare(rest, &mut engine, &policy))
        .await;
    let (tally, _history) = stage.finish().await;
    let sinks = match Arc::try_unwrap(outputs) {
        Ok(outputs) => outputs.close().await,
        Err(_) => Default::default(),
    };
    let summary = serde_json::json!({
        "stopped": stopped,
        "alerts_written": tally.alerts,
        "engine": engine.stats(),
        "offload": offload::pool().stats(),
        "sinks": sinks,
    });
    eprintln!("procwatch api: {summary}");
    Ok(if tally.stop {
        ExitCode::from(pipeline::EXIT_STOPPED_ON_ALERT)
    } else {
        ExitCode::SUCCESS
    })
}
