//! The API load generators (`xtask bench-worker http-load|sse`): plain HTTP/1.1 over loopback
//! from a process of their own, so the API is measured as a client on the machine sees it.
//! `http-load` repeats one GET on keep-alive connections (one per thread) and reports
//! requests/s and latency percentiles; `sse` holds N stream clients and reports the alerts
//! each received and the delay from the alert's timestamp to its arrival.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::measure::percentile;
use crate::sh::Result;

/// What to load.
#[derive(Debug, Clone)]
pub struct Load {
    /// The API's port on 127.0.0.1.
    pub port: u16,
    /// The path asked (`http-load`).
    pub path: String,
    /// Bearer token.
    pub token: String,
    /// Connections (`http-load`) or stream clients (`sse`).
    pub clients: usize,
    /// How long.
    pub duration: Duration,
}

/// One GET on `s`; its status and latency.
fn get(s: &mut BufReader<TcpStream>, req: &[u8]) -> std::io::Result<u16> {
    s.get_mut().write_all(req)?;
    let mut status = 0u16;
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if s.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(rest) = l.strip_prefix("HTTP/1.1 ") {
            status = rest.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        } else if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(status)
}

/// `http-load`: requests/s, p50/p99 latency (ms), errors.
pub fn http_load(l: &Load) -> Result<String> {
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
        l.path, l.token
    )
    .into_bytes();
    let lat = Arc::new(Mutex::new(Vec::<f64>::new()));
    let errors = Arc::new(Mutex::new(0u64));
    let start = Instant::now();
    let end = start + l.duration;
    let threads: Vec<_> = (0..l.clients)
        .map(|_| {
            let (lat, errors, req, port) = (lat.clone(), errors.clone(), req.clone(), l.port);
            thread::spawn(move || {
                let mut mine = Vec::new();
                let mut errs = 0u64;
                while Instant::now() < end {
                    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
                        errs += 1;
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let mut s = BufReader::new(stream);
                    while Instant::now() < end {
                        let t = Instant::now();
                        match get(&mut s, &req) {
                            Ok(200) => mine.push(t.elapsed().as_secs_f64() * 1e3),
                            Ok(_) => errs += 1,
                            Err(_) => {
                                errs += 1;
                                break;
                            }
                        }
                    }
                }
                if let Ok(mut v) = lat.lock() {
                    v.extend(mine);
                }
                if let Ok(mut e) = errors.lock() {
                    *e += errs;
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let lat = lat.lock().map(|v| v.clone()).unwrap_or_default();
    let errors = errors.lock().map(|e| *e).unwrap_or(0);
    Ok(format!(
        "requests={} per_s={:.1} p50_ms={:.2} p99_ms={:.2} errors={errors}",
        lat.len(),
        lat.len() as f64 / secs.max(1e-9),
        percentile(&lat, 50.0).unwrap_or(0.0),
        percentile(&lat, 99.0).unwrap_or(0.0),
    ))
}

/// Unix ms of an RFC 3339 UTC time with milliseconds (`2026-12-02T13:53:50.229Z`).
fn unix_ms(t: &str) -> Option<f64> {
    let n = |a: usize, b: usize| t.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (h, mi, s, ms) = (n(11, 13)?, n(14, 16)?, n(17, 19)?, n(20, 23)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + h) * 60 + mi) * 60 + s) as f64 * 1e3 + ms as f64)
}

/// `sse`: clients, alerts received (total, least per client), p50/p99 delay from the alert's
/// timestamp (ms), clients the server dropped as too slow.
pub fn sse(l: &Load) -> Result<String> {
    let req = format!(
        "GET /api/alerts/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {}\r\n\r\n",
        l.token
    );
    let end = Instant::now() + l.duration;
    let results = Arc::new(Mutex::new(Vec::<(u64, Vec<f64>, bool)>::new()));
    let threads: Vec<_> = (0..l.clients)
        .map(|_| {
            let (req, port, results) = (req.clone(), l.port, results.clone());
            thread::spawn(move || {
                let (mut n, mut delays, mut dropped) = (0u64, Vec::new(), false);
                if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                    if stream.write_all(req.as_bytes()).is_ok() {
                        let mut r = BufReader::new(stream);
                        let mut line = String::new();
                        while Instant::now() < end {
                            line.clear();
                            match r.read_line(&mut line) {
                                Ok(0) => break,
                                Ok(_) => {}
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) =>
                                {
                                    continue;
                                }
                                Err(_) => break,
                            }
                            if line.starts_with("event: dropped") {
                                dropped = true;
                            }
                            let Some(data) = line.strip_prefix("data: ") else {
                                continue;
                            };
                            let Some(at) = data.find("\"timestamp\":\"") else {
                                continue;
                            };
                            n += 1;
                            let ts = &data[at + 13..];
                            let now = SystemTime::now()
                                .duration_since(UNIX_EPOCH)
                                .map_or(0.0, |d| d.as_secs_f64() * 1e3);
                            if let Some(t) = unix_ms(ts) {
                                delays.push(now - t);
                            }
                        }
                    }
                }
                if let Ok(mut v) = results.lock() {
                    v.push((n, delays, dropped));
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let v = results.lock().map(|v| v.clone()).unwrap_or_default();
    let total: u64 = v.iter().map(|r| r.0).sum();
    let least = v.iter().map(|r| r.0).min().unwrap_or(0);
    let delays: Vec<f64> = v.iter().flat_map(|r| r.1.iter().copied()).collect();
    let dropped = v.iter().filter(|r| r.2).count();
    Ok(format!(
        "clients={} events={total} least_per_client={least} p50_ms={:.1} p99_ms={:.1} dropped={dropped}",
        v.len(),
        percentile(&delays, 50.0).unwrap_or(0.0),
        percentile(&delays, 99.0).unwrap_or(0.0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_to_unix_ms() {
        assert_eq!(unix_ms("1970-01-01T00:00:00.000Z"), Some(0.0));
        assert_eq!(unix_ms("2000-03-01T00:00:01.250Z"), Some(951_868_801_250.0));
        assert_eq!(unix_ms("garbage"), None);
    }
}
