//! One module per subcommand; each turns parsed arguments into a running pipeline.
pub mod config;
pub mod events;
pub mod signals;
