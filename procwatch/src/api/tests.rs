//! The server in-process, over a real engine (empty table) and a memory alert bus: what
//! needs many alerts fast, which an end-to-end test cannot make cheaply.
use std::{
    io::{Read, Write},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Publisher, Server, Settings, Wiring, control};
use crate::{
    alert::{SensorInfo, Trigger},
    config::Config,
    engine::Engine,
    history::History,
    process::table::Process,
    score::Verdict,
    sensor::{SensorKind, SensorStats},
};

fn stats_of(addr: std::net::SocketAddr) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /api/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn a_stream_client_that_falls_behind_is_dropped_and_counted() {
    let mut cfg = Config::default();
    // Reads without a token: this test reads /api/stats as a bare client.
    cfg.api.open_reads = true;
    let stats = Arc::new(SensorStats::default());
    let engine = Engine::new(cfg.clone(), SensorKind::Sweep, stats.clone());
    let (_publisher, views) = Publisher::new(&engine);
    let (tx, _rx) = control::channel();
    let (mut writer, reader) = History::memory();
    let listen = "127.0.0.1:0".parse().expect("addr");
    let settings = Settings::resolve(&cfg.api, listen, None).expect("settings");
    let server = Server::start(
        settings,
        Wiring {
            views,
            sensor: stats,
            sinks: None,
            control: tx,
            history: reader,
            command: "test",
        },
    )
    .expect("server");
    let addr = server.addr();
    // A client with a small receive buffer that reads nothing for now.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut client = sock.connect(addr).await.expect("connect");
    client
        .write_all(b"GET /api/alerts/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let end = Instant::now() + Duration::from_secs(30);
    while stats_of(addr)["api"]["stream_clients"] != 1 {
        assert!(Instant::now() < end, "the stream client never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Far more alerts than the bus holds for one subscriber and the sockets can buffer.
    let p = Process::new(4242, SensorKind::Sweep);
    let sensor = SensorInfo {
        name: SensorKind::Sweep,
        events_lost: 0,
        probes_missing: Vec::new(),
    };
    let alert = crate::alert::build(&p, &Verdict::default(), &Trigger::Sweep, None, sensor);
    for _ in 0..20_000 {
        let mut a = alert.clone();
        writer.publish(&mut a).expect("publish");
    }
    // Now it reads: what was buffered, then the notice that it was dropped.
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    let end = Instant::now() + Duration::from_secs(60);
    let tail = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
            .await
            .expect("the stream went quiet without saying it dropped the client")
            .expect("read");
        assert!(
            n > 0,
            "the stream closed without saying it dropped the client"
        );
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen[seen.len().saturating_sub(4096)..]).into_owned();
        if text.contains("event: dropped") {
            break text;
        }
        assert!(Instant::now() < end, "no drop notice within 60 s");
        // Keep only the end: the beginning has been looked at.
        if seen.len() > 1 << 20 {
            seen.drain(..seen.len() - 8192);
        }
    };
    assert!(tail.contains("resume_after"), "{tail}");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let s = stats_of(addr);
        if s["api"]["stream_dropped_slow"] == 1 && s["api"]["stream_clients"] == 0 {
            break;
        }
        assert!(Instant::now() < end, "drop not counted: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop();
}
