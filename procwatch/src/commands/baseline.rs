//! `procwatch baseline list|show|forget|allow|accept|merge`: the model file, for people.
//!
//! Commands that change a model take its lock, check it still has the revision they read,
//! and replace it atomically; a corrupt or newer file is reported and left alone.
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, bail};

use crate::{
    baseline::{
        edit::{self, Allow},
        merge::{self, MergeLimits},
        model::{Model, Secs},
        net::{AddrClass, Direction, Proto},
        store::{self, Expect, ModelLock},
        view,
    },
    cli::{BaselineAction, BaselineArgs},
    config::{self, ConfigSources},
};

/// How long a command waits for another writer (a monitor saving) to finish.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Now, in Unix seconds.
fn now() -> Secs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn out(text: &str) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|()| o.flush())
        .context("cannot write to stdout")
}

fn json(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut s = serde_json::to_string_pretty(v).context("cannot render JSON")?;
    s.push('\n');
    out(&s)
}

/// Loads the model, saying how to get one when there is none.
fn load(path: &Path) -> anyhow::Result<Model> {
    match store::load(path) {
        Ok(m) => Ok(m),
        Err(store::StoreError::NotFound { .. }) => bail!(
            "{}: no model file there (learn one with `procwatch monitor` or `procwatch train`, or give --model FILE)",
            path.display()
        ),
        Err(e) => Err(e.into()),
    }
}

/// Loads, edits under the lock, and saves only if nothing else wrote the file meanwhile.
fn edit_model(
    path: &Path,
    change: impl FnOnce(&mut Model) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<ExitCode> {
    let _lock = ModelLock::acquire(path, LOCK_WAIT)?;
    let mut m = load(path)?;
    let read = m.revision;
    let said = change(&mut m)?;
    let rev = store::save(path, &mut m, Expect::Revision(read), now())?;
    let mut text = String::new();
    for line in said {
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(&format!("saved {} (revision {rev})\n", path.display()));
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `procwatch baseline ...`.
pub fn run(args: BaselineArgs) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&ConfigSources::standard(), args.config.as_deref())?;
    let b = &cfg.baseline;
    let model_path = || -> anyhow::Result<PathBuf> {
        store::resolve_path(args.model.as_deref(), b).map_err(anyhow::Error::msg)
    };
    match args.action {
        BaselineAction::List { json: as_json } => {
            let m = load(&model_path()?)?;
            if as_json {
                json(&view::list_json_all(&m, b, now()))?;
            } else {
                out(&view::list_text(&m, b, now()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        BaselineAction::Show { exe, json: as_json } => {
            let m = load(&model_path()?)?;
            let key = edit::find_exe(&m, &exe)?;
            let Some(base) = m.get(&key) else {
                bail!("{key} is not in the model");
            };
            if as_json {
                json(&view::show_json(&m, &key, base, b, now()))?;
            } else {
                out(&view::show_text(&m, &key, base, b, now()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        BaselineAction::Forget { exe } => edit_model(&model_path()?, |m| {
            let key = edit::find_exe(m, &exe)?;
            let gone = edit::forget(m, Path::new(&key))?;
            Ok(vec![format!(
                "forgot {key} ({} processes, {} entries); it is learned afresh when seen again",
                gone.processes,
                gone.network.entries.len()
                    + gone.children.entries.len()
                    + gone.parents.entries.len()
                    + gone.users.entries.len()
                    + gone.files.entries.len()
                    + gone.flags.entries.len()
            )])
        }),
        BaselineAction::Allow(a) => {
            if a.what.port.is_none()
                && (a.proto.is_some() || a.direction.is_some() || a.class.is_some())
            {
                // A command-line mistake: clap's message and exit status 2.
                use clap::CommandFactory;
                crate::cli::Cli::command()
                    .error(
                        clap::error::ErrorKind::ArgumentConflict,
                        "--proto, --direction and --class only go with --port",
                    )
                    .exit();
            }
            let what = match (a.what.port, a.what.child, a.what.file) {
                (Some(port), None, None) => Allow::Port {
                    port,
                    proto: a.proto.unwrap_or(Proto::Tcp),
                    direction: a.direction.unwrap_or(Direction::Outbound),
                    class: a.class.unwrap_or(AddrClass::Any),
                },
                (None, Some(c), None) => Allow::Child(c),
                (None, None, Some(f)) => Allow::File(f),
                // clap's group makes exactly one present.
                _ => bail!("give exactly one of --port, --child, --file"),
            };
            edit_model(&model_path()?, |m| {
                let key = edit::find_exe(m, &a.exe)?;
                let said = edit::allow(m, Path::new(&key), &what, b, now())?;
                Ok(said.into_iter().map(|s| format!("{key}: {s}")).collect())
            })
        }
        BaselineAction::Accept { alert } => {
            let text = std::fs::read_to_string(&alert)
                .with_context(|| format!("{}: cannot read the alert", alert.display()))?;
            let alerts = edit::parse_alerts(&text)
                .with_context(|| format!("{}: not a procwatch alert", alert.display()))?;
            edit_model(&model_path()?, |m| {
                let mut said = Vec::new();
                for (i, a) in alerts.iter().enumerate() {
                    let done = edit::accept(m, a, b, now())
                        .with_context(|| format!("{}: alert {}", alert.display(), i + 1))?;
                    said.extend(done.added.into_iter().map(|s| format!("added: {s}")));
                    said.extend(done.skipped.into_iter().map(|s| format!("not added: {s}")));
                }
                Ok(said)
            })
        }
        BaselineAction::Merge { inputs, output } => {
            let mut models = Vec::with_capacity(inputs.len());
            for path in &inputs {
                models.push(load(path)?);
            }
            let limits = MergeLimits {
                caps: &b.caps,
                min_processes: b.min_processes,
                generalize_after: b.generalize_after,
            };
            let (mut merged, report) = merge::merge(&models, limits, now());
            let _lock = ModelLock::acquire(&output, LOCK_WAIT)?;
            let rev = store::save(&output, &mut merged, Expect::Any, now())?;
            out(&format!(
                "merged {} models: {} executables ({} in more than one), hosts {}; evicted by the caps: {} executables, {} entries\nsaved {} (revision {rev})\n",
                report.models,
                report.executables,
                report.shared,
                merged.hosts.iter().cloned().collect::<Vec<_>>().join(", "),
                report.evicted_executables,
                report.evicted_entries,
                output.display(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
