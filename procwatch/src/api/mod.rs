//! The HTTP API and the web dashboard served by the running monitor.
pub mod assets;
