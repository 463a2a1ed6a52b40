//! The REST API and dashboard (`procwatch api`, `procwatch monitor --api ADDR`).
//!
//! The API owns no state. The engine publishes copies of what it owns ([`snapshot`]): the
//! live processes with their scores, its counters and learning state every 250 ms at most,
//! the baselines while a client asks for them; the sensor's and sinks' counters are read
//! where they are kept (atomics, a mutex the output thread updates). Requests that change
//! something go to the engine over a bounded channel with a one-shot reply ([`control`]):
//! a full channel is a 503, never a wait on the engine. The server runs on its own thread
//! and runtime ([`server`]), so a burst of requests never takes turns with event handling.
//!
//! Auth ([`auth`]), limits ([`limits`]), errors ([`error`]), `/metrics` ([`metrics`]), the
//! OpenAPI document ([`openapi`]) and the dashboard's files ([`assets`]) each have a module.
pub mod assets;
pub mod auth;
pub mod control;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod snapshot;
pub mod token;

#[cfg(test)]
mod tests;

pub use server::{Server, Settings, Wiring};
pub use snapshot::Publisher;
