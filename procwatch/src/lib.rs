//! procwatch: a Linux runtime-security monitor built on an eBPF sensor.
//!
//! Data flows one way: [`sensor`] → process table → detectors → scorer → actions. The binary
//! (`main.rs`) only parses the command line and calls into [`commands`].
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod process;
pub mod sensor;
pub mod text;
