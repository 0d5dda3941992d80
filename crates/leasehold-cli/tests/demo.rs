//! `leasehold demo` as a newcomer runs it: the real binary on a free loopback
//! port, the console answering at the printed URL while simulated workers run,
//! a clean stop after `--duration`, and a database that shows the lifecycle
//! (completed work, and poison tasks the reaper quarantined).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold");

/// A plain HTTP/1.0 GET over loopback: (status line, headers + body).
fn http_get(url: &str, path: &str) -> (String, String) {
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut s = TcpStream::connect(&hostport).expect("connect to the demo server");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.lines().next().unwrap_or("").to_string();
    (status, out)
}

#[test]
fn demo_process_serves_the_console_and_shows_the_whole_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let mut child = Command::new(BIN)
        .args(["--db", db.to_str().unwrap()])
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--duration",
            "12s",
            "--ttl",
            "1s",
            "--workers",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start leasehold demo");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("Leasehold demo: console at http://127.0.0.1:"),
        "{first:?}"
    );
    let url = first.trim().rsplit(' ').next().unwrap().to_string();

    // The console is up while the workers run (no tokens: loopback operator).
    let (status, page) = http_get(&url, "/");
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        page.contains("Overview") && page.contains("HttpOnly"),
        "{page}"
    );
    let (status, _) = http_get(&url, "/v1/counts");
    assert!(status.contains(" 200 "), "the API is served too: {status}");

    let deadline = Instant::now() + Duration::from_secs(90);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "demo did not stop after --duration"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(exit.success(), "{exit:?} {rest}");
    assert!(rest.contains("demo finished:"), "{rest}");
    assert!(
        rest.contains(db.to_str().unwrap()),
        "the database path is printed: {rest}"
    );

    let out = Command::new(BIN)
        .args(["--db", db.to_str().unwrap(), "--json", "counts"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(counts["completed"].as_u64().unwrap() >= 1, "{counts}");
    assert!(
        counts["quarantined"].as_u64().unwrap() >= 1,
        "poison tasks end quarantined: {counts}"
    );
}
