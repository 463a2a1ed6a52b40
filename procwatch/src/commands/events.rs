//! `procwatch events`: the sensor's raw event stream as JSONL — the debugging and SIEM view.
use std::{collections::BTreeSet, io::Write, process::ExitCode, sync::Arc};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::info;

use crate::{
    cli::EventsArgs,
    clock,
    sensor::{self, EbpfOptions, Event, EventKind, SensorOptions, SensorStats},
};

/// One output line: the event with a wall-clock timestamp in front.
#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// Runs the command until SIGINT/SIGTERM or `--duration`, then prints the counts to stderr.
pub async fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let kinds: BTreeSet<EventKind> = if args.kinds.is_empty() {
        EventKind::ALL.into_iter().collect()
    } else {
        args.kinds.iter().copied().collect()
    };
    let ring_bytes = args
        .ring_kib
        .checked_mul(1024)
        .filter(|b| b.is_power_of_two() && *b >= 4096)
        .context("--ring-kib must be a power of two of at least 4")?;
    let mut out: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };

    let stats = Arc::new(SensorStats::default());
    let (tx, mut rx) = mpsc::channel::<Event>(4096);
    let sweep_interval = args.sweep_interval;
    let opts = SensorOptions {
        mode: args.sensor,
        ebpf: EbpfOptions {
            ring_bytes,
            kinds: kinds.clone(),
            ..EbpfOptions::default()
        },
        sweep_interval,
    };
    let running = sensor::start(&opts, tx, stats.clone())?;
    info!(
        sensor = running.kind.as_str(),
        "streaming events; Ctrl-C stops"
    );

    let deadline = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut terminate = super::signals::Terminate::install()?;

    let mut output_ok = true;
    let mut stop_reason = "end of input";
    loop {
        tokio::select! {
            maybe = rx.recv() => {
                let Some(event) = maybe else { break };
                output_ok = write_event(&mut out, &event, &kinds);
                // Batch writes: flush once the channel is momentarily empty.
                while output_ok {
                    match rx.try_recv() {
                        Ok(event) => output_ok = write_event(&mut out, &event, &kinds),
                        Err(_) => break,
                    }
                }
                output_ok = output_ok && out.flush().is_ok();
                if !output_ok {
                    stop_reason = "output closed";
                    break;
                }
            }
            sig = terminate.recv() => {
                stop_reason = sig;
                break;
            }
            _ = &mut deadline => {
                stop_reason = "duration elapsed";
                break;
            }
        }
    }
    // Stop the sensor, then write out everything it had already produced.
    let stopper = tokio::spawn(running.stop());
    while output_ok {
        match rx.recv().await {
            Some(event) => output_ok = write_event(&mut out, &event, &kinds),
            None => break,
        }
    }
    let _ = stopper.await;
    let _ = out.flush();

    let snap = stats.snapshot();
    let summary = serde_json::json!({ "stopped": stop_reason, "stats": snap });
    eprintln!("procwatch events: {summary}");
    Ok(ExitCode::SUCCESS)
}

fn write_event(out: &mut dyn Write, event: &Event, kinds: &BTreeSet<EventKind>) -> bool {
    if !kinds.contains(&event.kind()) {
        return true;
    }
    let line = Line {
        timestamp: clock::rfc3339_ms(clock::wall_from_ktime(event.ktime_ns)),
        event,
    };
    serde_json::to_writer(&mut *out, &line).is_ok() && out.write_all(b"\n").is_ok()
}
