//! The readable view: one line per alert on stdout, control characters escaped.
use std::io::{self, Write};

use super::Sink;
use crate::alert::{Alert, terminal_line};

/// Readable alert lines on stdout.
pub struct TerminalSink;

impl Sink for TerminalSink {
    fn name(&self) -> String {
        "stdout".into()
    }

    fn write(&mut self, alert: &Alert, _json: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", terminal_line(alert))?;
        out.flush()
    }
}
