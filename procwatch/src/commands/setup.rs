//! What `monitor` and `scan` set up the same way: the layered config with command-line
//! overrides, and the alert sinks.
use std::io::IsTerminal;

use anyhow::Context;

use crate::{
    cli::DetectArgs,
    config::{self, Config, ConfigSources},
    output::{
        Outputs, Sink, jsonl::JsonlSink, logfile::LogFileSink, syslog::SyslogSink,
        terminal::TerminalSink,
    },
};

/// Loads the config layers and applies the command-line overrides.
pub fn load_config(args: &DetectArgs) -> anyhow::Result<Config> {
    let mut cfg = config::load(&ConfigSources::standard(), args.config.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(min) = args.min_score {
        anyhow::ensure!(
            min.is_finite() && min >= 0.0,
            "--min-score must be a number >= 0, got {min}"
        );
        cfg.min_score = min;
    }
    if let Some(path) = &args.jsonl {
        cfg.outputs.jsonl = (path.as_os_str() != "-").then(|| path.clone());
    }
    if let Some(path) = &args.log_file {
        // Absolute, like the config key, so a reopen never depends on the working directory.
        let path =
            std::path::absolute(path).with_context(|| format!("--log-file {}", path.display()))?;
        cfg.outputs.log_file = Some(path);
    }
    if let Some(target) = &args.syslog {
        cfg.outputs.syslog = Some(target.clone());
    }
    Ok(cfg)
}

/// Builds the sinks: stdout (readable on a terminal, JSONL otherwise; `--jsonl -` forces JSONL),
/// the JSONL file, the readable log file, and syslog (which never blocks the others).
pub fn sinks(cfg: &Config, args: &DetectArgs) -> anyhow::Result<Vec<Box<dyn Sink>>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let jsonl_stdout = args.jsonl.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if jsonl_stdout {
        sinks.push(Box::new(JsonlSink::open(std::path::Path::new("-"))?));
    } else if cfg.outputs.stdout && !args.quiet {
        if std::io::stdout().is_terminal() {
            sinks.push(Box::new(TerminalSink));
        } else {
            sinks.push(Box::new(JsonlSink::open(std::path::Path::new("-"))?));
        }
    }
    if let Some(path) = &cfg.outputs.jsonl {
        sinks.push(Box::new(
            JsonlSink::open(path).with_context(|| "cannot open the JSONL output")?,
        ));
    }
    if let Some(path) = &cfg.outputs.log_file {
        sinks.push(Box::new(
            LogFileSink::open(path, cfg.min_score)
                .with_context(|| "cannot open the alert log file (outputs.log_file)")?,
        ));
    }
    if let Some(target) = &cfg.outputs.syslog {
        // Only the thread is started here: a server that is down now is retried later, and
        // its alerts wait in the queue.
        sinks.push(Box::new(
            SyslogSink::start(target.clone(), cfg.min_score)
                .with_context(|| format!("cannot start the syslog sender for {target}"))?,
        ));
    }
    Ok(sinks)
}

/// Starts the output thread with the configured sinks.
pub fn outputs(cfg: &Config, args: &DetectArgs) -> anyhow::Result<Outputs> {
    Outputs::start(sinks(cfg, args)?).context("cannot start the output thread")
}
