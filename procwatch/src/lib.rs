//! procwatch: a Linux runtime-security monitor built on an eBPF sensor.
//!
//! Data flows one way: [`sensor`] → process table → detectors → scorer → actions. [`procfs`]
//! reads /proc for all of them and imports none of them; [`offload`] runs what a monitored
//! process can make slow off the engine's task. The binary
//! (`main.rs`) only parses the command line and calls into [`commands`].
pub mod actions;
pub mod alert;
pub mod api;
pub mod baseline;
pub mod bounds;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod engine;
pub mod history;
pub mod identity;
pub mod learning;
pub mod memory;
pub mod offload;
pub mod output;
pub mod process;
pub mod procfs;
pub mod score;
pub mod sensor;
pub mod text;
pub mod trusted_file;
