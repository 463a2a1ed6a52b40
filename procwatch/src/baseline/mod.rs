//! Learned per-executable baselines: "is this unusual for this program?"
//!
//! The engine feeds [`learn::Learner`] small [`learn::Observation`]s (a process, its
//! executable, one thing it did); the learner learns while an executable is in a learning
//! window and, once a dimension of its baseline is stable, turns deviations into
//! [`anomaly::Anomaly`]s with a severity and a detail that quotes the baseline. The same
//! baseline answers whether a heuristic finding is known-normal for the executable
//! ([`learn::Learner::known`]). Models live in one JSON file ([`store`]), combine across hosts
//! ([`merge`]) and are edited by `procwatch baseline` ([`edit`], [`view`]).
//!
//! Data flows one way: `stats`, `net`, `paths` → `model` → `quote`, `anomaly` → `session` →
//! `learn` → `known`; `store`, `merge`, `reload`, `edit`, `view` work on `model`. See docs/baselines.md.
pub mod anomaly;
pub mod edit;
pub mod known;
pub mod learn;
pub mod merge;
pub mod model;
pub mod net;
pub mod paths;
pub mod quote;
pub mod reload;
mod session;
pub mod stats;
pub mod store;
pub mod view;

pub use anomaly::{Anomaly, AnomalyRule};
pub use known::{Fact, Known};
pub use learn::{Behaviour, Learner, Observation, ProcessId};
pub use model::Model;
