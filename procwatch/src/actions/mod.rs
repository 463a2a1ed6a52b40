//! What procwatch does about an alert beyond reporting it: kill (pidfd, exact process) and
//! the forensic dump.
pub mod dump;
pub mod kill;
pub mod pidfd;
