//! One module per subcommand; each turns parsed arguments into a running pipeline.
pub mod api;
pub mod baseline;
pub mod config;
pub mod events;
pub mod model_file;
pub mod monitor;
pub mod notify;
pub mod pipeline;
pub mod scan;
pub mod serve;
pub mod setup;
pub mod signals;
