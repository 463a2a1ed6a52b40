//! One module per subcommand; each turns parsed arguments into a running pipeline.
pub mod events;
pub mod signals;
