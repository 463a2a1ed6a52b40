//! JSONL: one alert per line, appended and flushed per alert — what Filebeat, Vector or
//! Fluent Bit tail into a SIEM. `-` writes to stdout.
use std::{
    fs::File,
    io::{self, Write},
    path::PathBuf,
};

use super::{Sink, append_whole, open_append};
use crate::alert::Alert;

enum Out {
    Stdout,
    File(File),
}

/// A JSONL file (reopened on SIGHUP) or stdout.
pub struct JsonlSink {
    path: Option<PathBuf>,
    out: Out,
}

impl JsonlSink {
    /// Opens `path` for appending (created 0600), or stdout for `-`.
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        if path.as_os_str() == "-" {
            return Ok(Self {
                path: None,
                out: Out::Stdout,
            });
        }
        Ok(Self {
            path: Some(path.to_path_buf()),
            out: Out::File(open_append(path)?),
        })
    }
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
        match &mut self.out {
            Out::File(f) => append_whole(f, &line),
            Out::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&line)?;
                out.flush()
            }
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Some(path) = &self.path {
            self.out = Out::File(open_append(path)?);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Out::File(f) => f.flush(),
            Out::Stdout => io::stdout().flush(),
        }
    }
}
