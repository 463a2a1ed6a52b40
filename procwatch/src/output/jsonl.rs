//! JSONL: one alert per line, appended and flushed per alert — what Filebeat, Vector or
//! Fluent Bit tail into a SIEM. `-` writes to stdout.
use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::PathBuf,
};

use super::Sink;
use crate::alert::Alert;

/// A JSONL file (reopened on SIGHUP) or stdout.
pub struct JsonlSink {
    path: Option<PathBuf>,
    out: Box<dyn Write + Send>,
}

impl JsonlSink {
    /// Opens `path` for appending (created 0600), or stdout for `-`.
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        if path.as_os_str() == "-" {
            return Ok(Self {
                path: None,
                out: Box::new(io::stdout()),
            });
        }
        Ok(Self {
            path: Some(path.to_path_buf()),
            out: Box::new(open_append(path)?),
        })
    }
}

fn open_append(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl Sink for JsonlSink {
    fn name(&self) -> String {
        match &self.path {
            Some(p) => format!("jsonl:{}", p.display()),
            None => "jsonl:stdout".into(),
        }
    }

    fn write(&mut self, _alert: &Alert, json: &str) -> io::Result<()> {
        // One write call per record, so a reader never sees half a line from us.
        let mut line = Vec::with_capacity(json.len() + 1);
        line.extend_from_slice(json.as_bytes());
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Some(path) = &self.path {
            self.out = Box::new(open_append(path)?);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
