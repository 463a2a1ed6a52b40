//! The process table and its enrichment from procfs: sockets and outbound connections
//! ([`sockets`]), executable hashes ([`hash`]), user names ([`users`]), and CPU, RSS, tracer
//! and W+X samples ([`stat`]).
pub mod hash;
pub mod sample;
pub mod sockets;
pub mod stat;
pub mod table;
pub mod users;
