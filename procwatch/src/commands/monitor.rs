//! `procwatch monitor`: the main job. Sensor events drive detection in real time; a periodic
//! /proc sweep (off the engine's task) re-checks state-based rules for live processes.
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
    notify::notify,
    pipeline::{self, ActPolicy, Tally},
    setup,
};
use crate::{
    cli::MonitorArgs,
    config::Config,
    engine::Engine,
    process::sample::{self, Sample},
    sensor::{self, EbpfOptions, SensorOptions, SensorStats, ebpf::KillPolicy},
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

/// Runs until SIGINT/SIGTERM (or `--duration`, or the first alert with `--stop-on-alert`),
/// then drains the sensor and flushes every sink.
pub async fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let cfg = setup::load_config(&args.detect)?;
    let stats = Arc::new(SensorStats::default());
    let (tx, mut events) = mpsc::channel(8192);
    let opts = SensorOptions {
        mode: args.sensor,
        ebpf: EbpfOptions {
            ring_bytes: cfg.ring_buffer_kib.saturating_mul(1024),
            kill: kill_policy(&cfg, &args),
            ..EbpfOptions::default()
        },
        sweep_interval: cfg.sweep_interval,
    };
    let outputs = setup::outputs(&cfg, &args.detect)?;
    let mut running = sensor::start(&opts, tx, stats.clone())?;
    let mut engine = Engine::new(cfg.clone(), running.kind, stats.clone());
    let policy = ActPolicy::new(&args.detect, &cfg);
    let mut tally = Tally::default();
    let mut hup = signal(SignalKind::hangup())?;
    let mut terminate = super::signals::Terminate::install()?;

    let started = std::time::Instant::now();
    let ports = cfg.ports.clone();
    let seed = tokio::task::spawn_blocking(move || sample::sweep_all(&ports))
        .await
        .unwrap_or_default();
    let flagged = engine.on_samples(seed, started, std::time::Instant::now());
    pipeline::deliver(flagged, &engine, &policy, &outputs, &mut tally).await;
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
    notify("READY=1\nSTATUS=monitoring");

    let mut tick = tokio::time::interval(cfg.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut sweep: Option<(std::time::Instant, JoinHandle<Vec<Sample>>)> = None;
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
        if tally.stop {
            break "stopped on alert";
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
                pipeline::deliver(flagged, &engine, &policy, &outputs, &mut tally).await;
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
                    let ports = engine.config().ports.clone();
                    sweep = Some((std::time::Instant::now(), tokio::task::spawn_blocking(move || sample::sweep_all(&ports))));
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
                    Ok(samples) => {
                        let flagged = engine.on_samples(samples, started, std::time::Instant::now());
                        pipeline::deliver(flagged, &engine, &policy, &outputs, &mut tally).await;
                        // The sweep's samples and the entries that expired with it are freed.
                        crate::memory::release_free_heap();
                    }
                    Err(e) => warn!(error = %e, "/proc sweep failed"),
                }
            }
            _ = tokio::time::sleep_until(recheck_at) => {
                let now = std::time::Instant::now();
                for pid in engine.due_rechecks(now) {
                    if let Ok(s) = sample::take(pid, &sample::Depth::Full) {
                        let flagged: Vec<_> = engine.on_sample(s, now).into_iter().collect();
                        pipeline::deliver(flagged, &engine, &policy, &outputs, &mut tally).await;
                    }
                }
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
                            }
                            None if wanted.kills() => error!(
                                "SIGHUP: enforce: asks for in-kernel kills, but the eBPF sensor \
                                 is not running: in-kernel kills stay off"
                            ),
                            None => {}
                        }
                        engine.set_config(new);
                        info!("SIGHUP: config reloaded, log files reopened");
                    }
                    Err(e) => error!("SIGHUP: config reload failed, keeping the config in force: {e:#}"),
                }
                outputs.reopen().await;
            }
            sig = terminate.recv() => break sig,
            _ = &mut deadline => break "duration elapsed",
        }
    };
    notify("STOPPING=1");

    // Stop the sensor, then evaluate every event it had already produced (unless stopping on
    // an alert, where the point is to stop).
    let stopper = tokio::spawn(running.stop());
    while events.recv_many(&mut batch, EVENT_BATCH).await > 0 {
        if !tally.stop {
            let flagged = engine.on_events(&batch, std::time::Instant::now());
            pipeline::deliver(flagged, &engine, &policy, &outputs, &mut tally).await;
        }
        batch.clear();
    }
    let _ = stopper.await;
    let sinks = outputs.close().await;
    let summary = serde_json::json!({
        "stopped": stopped,
        "alerts_written": tally.alerts,
        "sensor": stats.snapshot(),
        "engine": engine.stats(),
        "sinks": sinks,
    });
    eprintln!("procwatch monitor: {summary}");
    Ok(if tally.stop {
        ExitCode::from(pipeline::EXIT_STOPPED_ON_ALERT)
    } else {
        ExitCode::SUCCESS
    })
}
