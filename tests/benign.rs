//! A benign mix — ls, tar, sha256sum, a local web server on port 80 and its clients — makes
//! no alert at the default config. Its own test binary, so no other test's offending
//! processes run at the same time.
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use procwatch_tests::{Monitor, NEEDS_ROOT, OwnTree, TempDir, require_root};

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn benign_mix_makes_no_alert_at_default_config() {
    require_root!();
    let _ = NEEDS_ROOT;
    // Only what this test started is judged: other software on the machine may well run a
    // binary from /tmp meanwhile.
    let tree = OwnTree::start();
    let m = Monitor::start("", &[]);
    let dir = TempDir::new_in(&procwatch_tests::scratch_base(), "benign");
    let sh = |script: &str| {
        let status = Command::new("/bin/sh")
            .args(["-c", script])
            .current_dir(&dir.0)
            .stdout(Stdio::null())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "{script}");
    };
    sh("ls -la /usr/bin > listing.txt");
    sh("tar -cf etc.tar /etc/hostname /etc/passwd 2>/dev/null; tar -tf etc.tar > /dev/null");
    sh("sha256sum /usr/bin/ls listing.txt etc.tar > sums.txt");

    // A web server on port 80 (loopback) answering a few clients.
    let server = TcpListener::bind("127.0.0.1:80").expect("port 80 is free on a test machine");
    let serve = std::thread::spawn(move || {
        for _ in 0..10 {
            let Ok((mut s, _)) = server.accept() else {
                break;
            };
            // A real server's manners: read the whole request, answer, half-close, and wait for
            // the client to close — closing with unread bytes would reset the client's read.
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    for _ in 0..5 {
        // bash with the socket on fd 3 (not stdio): a near miss for reverse_shell.
        let status = Command::new("bash")
            .args(["-c", "exec 3<>/dev/tcp/127.0.0.1/80; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3 >/dev/null"])
            .status();
        assert!(status.is_ok_and(|s| s.success()));
        // Also a client from this process.
        if let Ok(mut c) = TcpStream::connect("127.0.0.1:80") {
            let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n");
        }
    }
    let _ = serve.join();
    // Positive controls that also bound the wait: the barrier's tmp_exe alert means every event
    // of the mix was judged; the sweep barrier's deleted_exe means a /proc sweep ran after the
    // mix, so state-based rules had their chance too.
    let controls = [m.sync_events(), m.sync_sweep()];
    tree.sync();
    assert!(
        controls.iter().all(|&c| tree.contains(c)),
        "the tree follows this test's processes (its controls {controls:?} are in it)"
    );
    let alerts: Vec<_> = tree
        .own(m.alerts())
        .into_iter()
        .filter(|a| {
            !a["pid"]
                .as_u64()
                .is_some_and(|p| controls.iter().any(|&c| u64::from(c) == p))
        })
        .collect();
    assert!(alerts.is_empty(), "benign processes alerted: {alerts:#?}");
}
