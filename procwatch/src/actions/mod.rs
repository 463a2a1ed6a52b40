//! What procwatch does about an alert beyond reporting it: forensic dumps ([`dump`]).
pub mod dump;
