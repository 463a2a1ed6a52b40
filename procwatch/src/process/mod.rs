//! The process table ([`table`]), filled by sensor events and by /proc samples merged into it
//! ([`merge`]); reads it asks for and does not wait on ([`enrich`]); executable hashes
//! ([`hash`]) and user names ([`users`]). Reading /proc itself
//! is [`crate::procfs`]'s job.
pub mod enrich;
pub mod hash;
pub mod merge;
pub mod program;
pub mod shells;
pub mod table;
pub mod users;
