//! `procwatch monitor`: the main job. Sensor events drive detection in real time; a periodic
//! /proc sweep (off the engine's task) re-checks state-based rules for live processes. The loop
//! below is the engine's task: it never waits on a read a monitored process can make slow
//! (sweeps and enrichment jobs run on the offload pool and come back as messages; acting on
//! alerts is the action stage's task), and it pings the systemd watchdog, so a stuck loop
//! stops the pings.
//!
//! Signals: SIGINT/SIGTERM finish in-flight alerts, flush every sink, detach the probes and
//! exit 0. SIGHUP reloads the config (an invalid one is reported and the old one stays) and
//! reopens the log files.
use std::{process::ExitCode, sync::Arc, time::Duration};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
    time::Instant,
};
use tracing::{error, info, warn};

use super::{
    model_file::{ModelFile, Start},
    notify::{Watchdog, notify},
    pipeline::{self, ActPolicy, ActionStage},
    serve::{self, ApiSide},
    setup,
};
use crate::{
    actions,
    cli::MonitorArgs,
    config::Config,
    engine::{Engine, Flagged},
    history::{History, HistoryReader, HistoryWriter},
    offload,
    process::enrich::Outcome,
    procfs::{
        Depth,
        sweep::{Sweep, Sweeper},
    },
    sensor::{
        self, EbpfOptions, SensorOptions, SensorStats,
        ebpf::{EbpfSensor, KillPolicy},
    },
};

/// Most events taken off the sensor's queue for one pass of the engine.
const EVENT_BATCH: usize = 256;

/// The in-kernel kill policy for a config and the command line.
fn kill_policy(cfg: &Config, args: &MonitorArgs) -> KillPolicy {
    let kill = args.detect.kill_on_alert;
    let mut allow = cfg.enforce.allow_exe_paths.clone();
    // Whitelisted executables and users are never killed, in the kernel either.
    allow.extend(cfg.whitelist.exe_paths.iter().cloned());
    let mut users = crate::process::users::UserNames::new();
    let allow_uids = cfg
        .whitelist
        .users
        .iter()
        .filter_map(|u| users.uid_of(u))
        .collect();
    KillPolicy {
        ptrace: cfg.enforce.ptrace || kill,
        wx_mem: cfg.enforce.wx_mem || kill,
        allow_exe_paths: allow,
        scope_pid: args.detect.enforce_scope_pid,
        allow_uids,
    }
}

/// Warns when the sensor has lost events since `seen` (at most once per sweep interval, as
/// Falco reports drops) and returns the new total.
fn report_loss(stats: &SensorStats, seen: u64) -> u64 {
    let total = stats.lost_total();
    if total > seen {
        let snap = stats.snapshot();
        warn!(
            lost = total - seen,
            lost_total = total,
            kernel_lost = ?snap.kernel_lost,
            fallback_lost = snap.fallback_lost,
            "events lost: the sensor delivered fewer events than happened (ring buffer full: \
             raise ring_buffer_kib, or the machine outran the reader); alerts carry the \
             running total in sensor.events_lost"
        );
    }
    total
}

/// One line of training progress, rewritten in place.
fn show_progress(engine: &Engine, started: std::time::Instant, total: Duration) {
    let (exes, events) = engine.learning().map_or((0, 0), |l| {
        (l.learner().model().executables.len(), l.events())
    });
    eprint!(
        "\rtraining: {:>5}s of {}s, {exes} executables, {events} events   ",
        started.elapsed().as_secs(),
        total.as_secs()
    );
}

/// The baseline part of the exit summary.
fn baseline_summary(engine: &Engine, file: &ModelFile) -> serde_json::Value {
    let Some(l) = engine.learning() else {
        return serde_json::Value::Null;
    };
    let learner = l.learner();
    let stats = learner.stats();
    let model = learner.model();
    serde_json::json!({
        "model": file.path().display().to_string(),
        "revision": model.revision,
        "executables": model.executables.len(),
        "trained": model.learning.trained,
        "events": l.events(),
        "observations": stats.observations,
        "anomalies": stats.anomalies,
        "tainted": stats.tainted,
    })
}

/// The alert history the config and command line ask for: none for `train` or with
/// `--no-history` (ids from 1, recent alerts in memory), else the database (a bad one stops
/// the run with a message naming it).
fn open_history(
    cfg: &Config,
    args: &MonitorArgs,
) -> anyhow::Result<(HistoryWriter, HistoryReader)> {
    if args.train || args.no_history {
        return Ok(History::memory());
    }
    let mut hc = cfg.history.clone();
    if let Some(path) = &args.history {
        hc.enabled = true;
        hc.path = Some(std::path::absolute(path).unwrap_or_else(|_| path.clone()));
    }
    Ok(History::open(&hc)?)
}

/// Results of enrichment jobs on their way back to the engine.
type Done = mpsc::UnboundedSender<(u64, Outcome)>;

/// Starts every job the engine asked for on the offload pool; each result (or why there is
/// none) comes back through `done`.
fn dispatch(engine: &mut Engine, done: &Done) {
    for job in engine.take_jobs() {
        let (tx, hashes) = (done.clone(), engine.hashes());
        tokio::spawn(async move {
            let id = job.id;
            let outcome = job.run_offloaded(offload::pool(), hashes).await;
            let _ = tx.send((id, outcome));
        });
    }
}

/// Hands alerts to the action stage and starts the jobs the engine asked for meanwhile.
/// Processes condemned meanwhile (a kill verdict's process and descendants, children a
/// condemned process forked) go to the kernel, which kills their future children before they
/// run; those only a late fork condemned are killed here, off the engine's task.
async fn forward(
    flagged: Vec<Flagged>,
    engine: &mut Engine,
    policy: &ActPolicy,
    stage: &ActionStage,
    done: &Done,
    ebpf: Option<&mut EbpfSensor>,
) {
    dispatch(engine, done);
    let prepared = pipeline::prepare(flagged, engine, policy);
    let (condemned, late) = engine.take_condemned();
    if let Some(ebpf) = ebpf {
        for c in &condemned {
            if let Err(e) = ebpf.condemn(c.pid, c.start_ticks) {
                warn!(pid = c.pid, error = %e, "the kernel cannot kill this process's future children");
            }
        }
    }
    if !late.is_empty() {
        tokio::spawn(async move {
            let job = offload::pool().run("kill", offload::READ_TIMEOUT, move || {
                actions::kill::kill_descendants(&late)
            });
            match job.await {
                Ok(killed) => info!(?killed, "killed children forked by condemned processes"),
                Err(e) => warn!(error = %e, "children of condemned processes not killed"),
            }
        });
    }
    stage.send(prepared).await;
}

/// A sweep of every process on its own task.
fn start_sweep(sweeper: &Sweeper, engine: &Engine) -> JoinHandle<std::io::Result<Sweep>> {
    let (sweeper, interest) = (sweeper.clone(), engine.interest());
    tokio::spawn(async move { sweeper.sweep(Depth::Full, &interest).await })
}

/// Runs until SIGINT/SIGTERM (or `--duration`, or the first alert with `--stop-on-alert`),
/// then drains the sensor and flushes every sink.
pub async fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = setup::load_config(&args.detect)?;
    if let Some(d) = args.duration.filter(|_| args.train) {
        // Training learns for all of its duration, whatever the config's period.
        cfg.baseline.learning_period = cfg
            .baseline
            .learning_period
            .max(d + Duration::from_secs(3600));
    }
    // The model first: a bad model file stops the run before any probe is loaded.
    let start = if args.train {
        Start::New
    } else {
        Start::LoadOrNew
    };
    let (mut model_file, learning) =
        ModelFile::open(&cfg, args.model.as_deref(), args.model_readonly, start)?;
    // The alert history too: a file that is not one, or is in use, stops the run here.
    let (history, history_reader) = open_history(&cfg, &args)?;
    if let Some(path) = history_reader.path() {
        info!(
            path = %path.display(),
            alerts = history_reader.stats().rows,
            next_id = history_reader.stats().last_id + 1,
            "alert history"
        );
    }
    let stats = Arc::new(SensorStats::default());
    let (tx, mut events) = mpsc::channel(8192);
    let opts = SensorOptions {
        mode: args.sensor,
        ebpf: EbpfOptions {
            ring_bytes: cfg.ring_buffer_kib.saturating_mul(1024),
            kill: kill_policy(&cfg, &args),
            watched: cfg.baseline.watched_prefixes.clone(),
            ia32: cfg.sensor.ia32,
            ..EbpfOptions::default()
        },
        sweep_interval: cfg.sweep_interval,
    };
    let outputs = Arc::new(setup::outputs(&cfg, &args.detect)?);
    let mut running = sensor::start(&opts, tx, stats.clone())?;
    let mut engine = Engine::new(cfg.clone(), running.kind, stats.clone());
    engine.set_learning(learning);
    let policy = ActPolicy::new(&args.detect, &cfg);
    let stage = ActionStage::start(policy.clone(), outputs.clone(), history);
    let mut stopped_on_alert = stage.stopped();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let sweeper = Sweeper::new(offload::pool().clone(), offload::READ_TIMEOUT);
    let mut hup = signal(SignalKind::hangup())?;
    let mut terminate = super::signals::Terminate::install()?;

    let started = std::time::Instant::now();
    let seed = match start_sweep(&sweeper, &engine).await {
        Ok(Ok(sweep)) => sweep,
        Ok(Err(e)) => {
            warn!(error = %e, "cannot read /proc: the table starts empty");
            Sweep::default()
        }
        Err(e) => {
            warn!(error = %e, "the first /proc sweep failed: the table starts empty");
            Sweep::default()
        }
    };
    let flagged = engine.on_samples(seed, started, std::time::Instant::now());
    forward(
        flagged,
        &mut engine,
        &policy,
        &stage,
        &done_tx,
        running.ebpf.as_mut(),
    )
    .await;
    // The API starts once the table is seeded, so its first copy has every process.
    let mut api_side = match serve::monitor_listen(&cfg, args.api).filter(|_| !args.train) {
        Some(addr) => Some(ApiSide::start(
            &cfg,
            addr,
            args.detect.enforce_scope_pid,
            &engine,
            serve::Feeds {
                sensor: stats.clone(),
                sinks: Some(outputs.live_stats()),
                history: history_reader.clone(),
                command: "monitor",
            },
        )?),
        None => None,
    };
    let mut publish_tick = tokio::time::interval(crate::api::snapshot::PUBLISH_EVERY);
    publish_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let probes_missing = stats.probes_missing();
    info!(
        sensor = running.kind.as_str(),
        processes = engine.table().len(),
        min_score = cfg.min_score,
        kill_on_alert = policy.kill,
        in_kernel_kills = running.ebpf.is_some() && opts.ebpf.kill.kills(),
        probes_missing = %if probes_missing.is_empty() { "none".to_string() } else { probes_missing.join(",") },
        "monitoring; SIGINT/SIGTERM stops, SIGHUP reloads"
    );
    if args.train {
        info!(
            model = %model_file.path().display(),
            seconds = args.duration.map_or(0, |d| d.as_secs()),
            "training: learning baselines, then writing the model"
        );
    } else if let Some(l) = engine.learning() {
        let learner = l.learner();
        let now = crate::learning::now_secs();
        info!(
            model = %model_file.path().display(),
            read_only = args.model_readonly,
            learning = learner.is_learning(now),
            learning_until = %crate::baseline::anomaly::rfc3339(learner.learning_end()),
            "baselines"
        );
    }
    notify("READY=1\nSTATUS=monitoring");
    // Training shows its progress on a terminal.
    let progress_on = args.train && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    let mut save_tick = tokio::time::interval(cfg.baseline.save_interval);
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    save_tick.tick().await;
    let watchdog = Watchdog::from_env();
    let mut ping = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |w| w.every));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut tick = tokio::time::interval(cfg.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut sweep: Option<(std::time::Instant, JoinHandle<std::io::Result<Sweep>>)> = None;
    let deadline = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    let mut lost_seen = 0;

    let stopped = loop {
        if *stopped_on_alert.borrow() {
            break "stopped on alert";
        }
        if let Some(side) = api_side.as_mut() {
            side.publish(&engine);
        }
        let recheck_at = engine.next_recheck().map(Instant::from_std).unwrap_or(far);
        tokio::select! {
            // Whatever the sensor has queued is taken at once: one pass of this loop per batch,
            // and the engine sees which of the batch's processes have already exited.
            n = events.recv_many(&mut batch, EVENT_BATCH) => {
                if n == 0 {
                    break "sensor ended";
                }
                let flagged = engine.on_events(&batch, std::time::Instant::now());
                batch.clear();
                forward(
                    flagged,
                    &mut engine,
                    &policy,
                    &stage,
                    &done_tx,
                    running.ebpf.as_mut(),
                )
                .await;
            }
            Some((id, outcome)) = done_rx.recv() => {
                let flagged = engine.on_job_done(id, outcome, std::time::Instant::now());
                forward(
                    flagged,
                    &mut engine,
                    &policy,
                    &stage,
                    &done_tx,
                    running.ebpf.as_mut(),
                )
                .await;
            }
            _ = ping.tick(), if watchdog.is_some() => notify("WATCHDOG=1"),
            _ = publish_tick.tick(), if api_side.is_some() => {}
            Some(req) = serve::pending_request(api_side.as_mut()) => {
                if let Some(side) = api_side.as_mut() {
                    side.handle(req, &mut engine, &stage, args.detect.enforce_scope_pid).await;
                }
            }
            _ = tick.tick() => {
                outputs.retry();
                lost_seen = report_loss(&stats, lost_seen);
                // An allowlisted file replaced at its path (an upgrade) is another file.
                engine.refresh_allowlist();
                if let Some(ebpf) = running.ebpf.as_mut()
                    && let Err(e) = ebpf.refresh_allowlist(&kill_policy(engine.config(), &args))
                {
                    error!(error = %e, "kill allowlist not refreshed");
                }
                if sweep.is_none() {
                    sweep = Some((std::time::Instant::now(), start_sweep(&sweeper, &engine)));
                }
            }
            done = async {
                match sweep.as_mut() {
                    Some((_, handle)) => handle.await,
                    None => std::future::pending().await,
                }
            }, if sweep.is_some() => {
                let started = sweep.take().map_or_else(std::time::Instant::now, |(at, _)| at);
                match done {
                    Ok(Ok(swept)) => {
                        let flagged = engine.on_samples(swept, started, std::time::Instant::now());
                        forward(
                    flagged,
                    &mut engine,
                    &policy,
                    &stage,
                    &done_tx,
                    running.ebpf.as_mut(),
                )
                .await;
                        // The sweep's samples and the entries that expired with it are freed.
                        crate::memory::release_free_heap();
                    }
                    Ok(Err(e)) => warn!(error = %e, "/proc sweep failed"),
                    Err(e) => warn!(error = %e, "/proc sweep task failed"),
                }
            }
            _ = tokio::time::sleep_until(recheck_at) => {
                engine.start_rechecks(std::time::Instant::now());
                dispatch(&mut engine, &done_tx);
            }
            _ = hup.recv() => {
                match setup::load_config(&args.detect) {
                    Ok(new) => {
                        let wanted = kill_policy(&new, &args);
                        match running.ebpf.as_mut() {
                            Some(ebpf) => {
                                if let Err(e) = ebpf.set_kill_policy(&wanted) {
                                    error!(error = %e, "kill policy not updated");
                                }
                                // The file-open probe filters in the kernel: the new
                                // `baseline.watched_prefixes` go there too.
                                if let Err(e) = ebpf.set_watched(&new.baseline.watched_prefixes) {
                                    error!(error = %e, "watched prefixes not updated in the kernel");
                                }
                            }
                            None if wanted.kills() => error!(
                                "SIGHUP: enforce: asks for in-kernel kills, but the eBPF sensor \
                                 is not running: in-kernel kills stay off"
                            ),
                            None => {}
                        }
                        engine.set_config(new);
                        info!("SIGHUP: config reloaded, log files reopened");
                        // `baseline allow/accept` changed the model file: take it in.
                        if !args.train {
                            model_file.start_reload();
                        }
                    }
                    Err(e) => error!("SIGHUP: config reload failed, keeping the config in force: {e:#}"),
                }
                outputs.reopen().await;
            }
            _ = save_tick.tick(), if !args.train => model_file.start_save(&mut engine),
            done = model_file.done() => model_file.on_done(&mut engine, done),
            _ = progress.tick(), if progress_on => {
                show_progress(&engine, started, args.duration.unwrap_or_default());
            }
            _ = stopped_on_alert.changed() => {}
            sig = terminate.recv() => break sig,
            _ = &mut deadline => break "duration elapsed",
        }
    };
    notify("STOPPING=1");
    if let Some(side) = api_side.take() {
        side.stop();
    }

    // Stop the sensor, then evaluate every event it had already produced (unless stopping on
    // an alert, where the point is to stop).
    let stop_on_alert = *stopped_on_alert.borrow();
    let stopper = tokio::spawn(running.stop());
    while events.recv_many(&mut batch, EVENT_BATCH).await > 0 {
        if !stop_on_alert {
            let flagged = engine.on_events(&batch, std::time::Instant::now());
            forward(flagged, &mut engine, &policy, &stage, &done_tx, None).await;
        }
        batch.clear();
    }
    let _ = stopper.await;
    // Jobs in flight end within their deadline; alerts waiting on them go out after.
    let settle = tokio::time::Instant::now() + offload::READ_TIMEOUT + Duration::from_secs(1);
    while engine.jobs_in_flight() > 0 && !stop_on_alert {
        match tokio::time::timeout_at(settle, done_rx.recv()).await {
            Ok(Some((id, outcome))) => {
                let flagged = engine.on_job_done(id, outcome, std::time::Instant::now());
                forward(flagged, &mut engine, &policy, &stage, &done_tx, None).await;
            }
            Ok(None) | Err(_) => break,
        }
    }
    if progress_on {
        eprintln!();
    }
    let model_saved = model_file.finish(&mut engine, args.train).await;
    if let Err(e) = &model_saved {
        error!("{e:#}");
    }
    let rest = engine.flush();
    if !stop_on_alert {
        stage
            .send(pipeline::prepare(rest, &mut engine, &policy))
            .await;
    }
    let (tally, history) = stage.finish().await;
    let sinks = match Arc::try_unwrap(outputs) {
        Ok(outputs) => outputs.close().await,
        Err(_) => Default::default(),
    };
    // After the sinks: what the history writes last never holds up an alert on its way out.
    let history = match history {
        Some(h) => h.close().await,
        None => history_reader.stats(),
    };
    let summary = serde_json::json!({
        "stopped": stopped,
        "alerts_written": tally.alerts,
        "sensor": stats.snapshot(),
        "engine": engine.stats(),
        "offload": offload::pool().stats(),
        "sinks": sinks,
        "history": history,
        "baseline": baseline_summary(&engine, &model_file),
    });
    eprintln!("procwatch monitor: {summary}");
    if args.train {
        // A training that wrote no model failed.
        model_saved?;
    }
    Ok(if tally.stop {
        ExitCode::from(pipeline::EXIT_STOPPED_ON_ALERT)
    } else {
        ExitCode::SUCCESS
    })
}
