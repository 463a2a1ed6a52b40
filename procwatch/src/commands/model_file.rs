//! The model file as `monitor` and `train` use it: opened at start (a corrupt or newer file
//! is an error, never replaced), saved periodically and at exit from a snapshot on the offload
//! pool (the engine never waits on the disk), and reloaded on SIGHUP.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::{
    baseline::{
        Learner, Model,
        learn::Reloaded,
        model::Secs,
        store::{self, Expect, ModelLock},
    },
    config::Config,
    engine::Engine,
    learning::{Learning, now_secs},
    offload,
};

/// How long a save waits for a `baseline` command holding the lock, and may take in all.
const SAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished save or reload hands back.
type Saved = Result<u64, String>;
type Loaded = Result<Model, String>;

/// A save or reload that finished.
#[derive(Debug)]
pub enum Done {
    /// A save started at the time given, with the revision written or why not.
    Saved(Secs, Saved),
    /// A reload, with the model or why not.
    Loaded(Loaded),
}

/// The model file of a running monitor.
pub struct ModelFile {
    path: PathBuf,
    readonly: bool,
    saving: Option<(Secs, JoinHandle<Saved>)>,
    loading: Option<JoinHandle<Loaded>>,
}

/// How the model starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Use the file if there is one, else a new model (monitor).
    LoadOrNew,
    /// A new model; the file (if any) is replaced at the end (train). A file that is not a
    /// model this build may replace is refused now, not after the training.
    New,
}

impl ModelFile {
    /// Opens the model for `monitor`/`train` and builds the engine's learning state over it.
    pub fn open(
        cfg: &Config,
        cli: Option<&Path>,
        readonly: bool,
        start: Start,
    ) -> anyhow::Result<(Self, Learning)> {
        let path = store::resolve_path(cli, &cfg.baseline).map_err(anyhow::Error::msg)?;
        let now = now_secs();
        let model = match start {
            Start::New => {
                store::inspect(&path)?;
                Model::new(now, crate::alert::hostname())
            }
            Start::LoadOrNew => match store::load_optional(&path)? {
                Some(m) => {
                    info!(
                        model = %path.display(),
                        executables = m.executables.len(),
                        trained = m.learning.trained,
                        learning_ended = m.learning.ended.is_some(),
                        "baseline model loaded"
                    );
                    m
                }
                None if readonly => anyhow::bail!(
                    "{}: no model file there, and --model-readonly cannot start a new one",
                    path.display()
                ),
                None => {
                    info!(model = %path.display(), "no baseline model yet: learning a new one");
                    Model::new(now, crate::alert::hostname())
                }
            },
        };
        let learner = Learner::new(model, &cfg.baseline, cfg.max_processes);
        let file = Self {
            path,
            readonly,
            saving: None,
            loading: None,
        };
        Ok((file, Learning::new(learner)))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts saving what the engine learned, unless nothing changed, the model is read-only
    /// or a save is still running.
    pub fn start_save(&mut self, engine: &mut Engine) {
        if self.readonly || self.saving.is_some() {
            return;
        }
        let Some(learner) = engine.learning_mut().map(Learning::learner_mut) else {
            return;
        };
        if !learner.is_dirty() {
            return;
        }
        let mut model = learner.snapshot();
        let path = self.path.clone();
        let now = now_secs();
        let task = tokio::spawn(async move {
            let expect = Expect::Revision(model.revision);
            let job = offload::pool().run("save model", SAVE_TIMEOUT, move || {
                save(&path, &mut model, expect, now)
            });
            job.await.unwrap_or_else(|e| Err(e.to_string()))
        });
        self.saving = Some((now, task));
    }

    /// Waits for the save or reload in flight to finish (pending while there is none).
    pub async fn done(&mut self) -> Done {
        let saving = async {
            match self.saving.as_mut() {
                Some((at, task)) => (*at, task.await.unwrap_or_else(|e| Err(e.to_string()))),
                None => std::future::pending().await,
            }
        };
        let loading = async {
            match self.loading.as_mut() {
                Some(task) => task.await.unwrap_or_else(|e| Err(e.to_string())),
                None => std::future::pending().await,
            }
        };
        let done = tokio::select! {
            (at, r) = saving => Done::Saved(at, r),
            r = loading => Done::Loaded(r),
        };
        match done {
            Done::Saved(..) => self.saving = None,
            Done::Loaded(_) => self.loading = None,
        }
        done
    }

    /// Takes a finished save or reload into the engine.
    pub fn on_done(&self, engine: &mut Engine, done: Done) {
        match done {
            Done::Saved(at, r) => self.on_saved(engine, at, r),
            Done::Loaded(r) => self.on_loaded(engine, r),
        }
    }

    /// Takes a finished save's result into the engine.
    fn on_saved(&self, engine: &mut Engine, at: Secs, result: Saved) {
        let Some(learner) = engine.learning_mut().map(Learning::learner_mut) else {
            return;
        };
        match result {
            Ok(revision) => learner.snapshot_saved(revision, at),
            Err(e) => {
                learner.save_failed();
                error!("baseline model not saved: {e}");
            }
        }
    }

    /// Starts reading the file again (SIGHUP: `baseline allow/accept` changed it).
    pub fn start_reload(&mut self) {
        if self.loading.is_some() {
            return;
        }
        let path = self.path.clone();
        self.loading = Some(tokio::spawn(async move {
            let job = offload::pool().run("load model", SAVE_TIMEOUT, move || {
                store::load(&path).map_err(|e| e.to_string())
            });
            job.await.unwrap_or_else(|e| Err(e.to_string()))
        }));
    }

    /// Puts a reloaded model in force, keeping what was learned since the last save (see
    /// [`Learner::reload`]), or keeps the old one when the file is bad.
    fn on_loaded(&self, engine: &mut Engine, result: Loaded) {
        let Some(learner) = engine.learning_mut().map(Learning::learner_mut) else {
            return;
        };
        match result {
            Ok(model) => {
                let revision = model.revision;
                match learner.reload(model, now_secs()) {
                    Reloaded::Unchanged => info!(
                        model = %self.path.display(),
                        revision,
                        "SIGHUP: baseline model file unchanged since it was last saved or read: \
                         the model in force (with what was learned since) stays"
                    ),
                    Reloaded::Merged => info!(
                        model = %self.path.display(),
                        revision,
                        executables = learner.model().executables.len(),
                        "SIGHUP: baseline model reloaded; what was learned since the last save \
                         is kept"
                    ),
                }
            }
            Err(e) => warn!("SIGHUP: baseline model not reloaded, keeping the one in force: {e}"),
        }
    }

    /// The final save at exit (waits for one in flight first); `train` ends learning first.
    pub async fn finish(&mut self, engine: &mut Engine, train: bool) -> anyhow::Result<()> {
        if let Some((at, task)) = self.saving.take() {
            let r = task.await.unwrap_or_else(|e| Err(e.to_string()));
            self.on_saved(engine, at, r);
        }
        let Some(learner) = engine.learning_mut().map(Learning::learner_mut) else {
            return Ok(());
        };
        let now = now_secs();
        if train {
            learner.finish_training(now);
        }
        if self.readonly || !learner.is_dirty() {
            return Ok(());
        }
        let mut model = learner.snapshot();
        // `train` replaces whatever model was there (a valid one; anything else is refused).
        let expect = if train {
            Expect::Any
        } else {
            Expect::Revision(model.revision)
        };
        let path = self.path.clone();
        let job = offload::pool().run("save model", SAVE_TIMEOUT, move || {
            save(&path, &mut model, expect, now)
        });
        let revision = job
            .await
            .map_err(anyhow::Error::msg)
            .and_then(|r| r.map_err(anyhow::Error::msg))
            .with_context(|| format!("{}: model not saved", self.path.display()))?;
        learner.snapshot_saved(revision, now);
        info!(model = %self.path.display(), revision, "baseline model saved");
        Ok(())
    }
}

/// Saves under the model's lock (so `baseline` edits and this save do not cross).
fn save(path: &Path, model: &mut Model, expect: Expect, now: Secs) -> Saved {
    let _lock = ModelLock::acquire(path, SAVE_TIMEOUT).map_err(|e| e.to_string())?;
    store::save(path, model, expect, now).map_err(|e| match e {
        store::StoreError::Conflict { .. } => format!(
            "{e}; the file was changed by someone else (baseline allow/accept?): send SIGHUP \
             to take the change in; it is not overwritten"
        ),
        e => e.to_string(),
    })
}
