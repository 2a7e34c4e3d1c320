//! Connection limits of the HTTP listeners, against the real binary over
//! real sockets: a client that dribbles its headers is cut off, shutdown
//! does not wait for such clients, and a flood of idle connections past a
//! low open-file limit neither runs the process out of descriptors nor
//! keeps `/healthz` from answering.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::EnspaceProcess;
use crate::support::process::binary;

fn addr_of(process: &EnspaceProcess) -> SocketAddr {
    process
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("address")
}

/// Reads until the server closes the connection or `limit` passes; how long
/// the server took to close it, or `None` if it did not.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// `GET /healthz` on a new connection; the time to a full 200 answer.
fn healthz(addr: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "healthz answered {answer:?}"
    );
    start.elapsed()
}

#[test]
fn a_client_dribbling_header_lines_is_cut_off_at_the_header_read_timeout() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("utf-8");
    let process = EnspaceProcess::start(
        &["serve", "--data", dir, "--header-read-timeout", "1s"],
        &[],
    );
    let addr = addr_of(&process);
    let mut dribbler = TcpStream::connect(addr).expect("connect");
    dribbler
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .expect("write");
    let start = Instant::now();
    let mut cut_off = None;
    for n in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        if dribbler
            .write_all(format!("X-Line-{n}: a\r\n").as_bytes())
            .is_err()
        {
            cut_off = Some(start.elapsed());
            break;
        }
        if let Some(after) = closed_within(&mut dribbler, Duration::from_millis(10)) {
            cut_off = Some(start.elapsed().max(after));
            break;
        }
    }
    let cut_off = cut_off.expect("the dribbling connection was never closed");
    assert!(cut_off < Duration::from_secs(4), "closed after {cut_off:?}");
    // A connection that sends nothing at all goes the same way.
    let mut silent = TcpStream::connect(addr).expect("connect");
    let closed =
        closed_within(&mut silent, Duration::from_secs(5)).expect("silent connection closed");
    assert!(
        closed >= Duration::from_millis(900),
        "not before the timeout: {closed:?}"
    );
    healthz(addr);
}

#[test]
fn sigterm_exits_at_once_despite_connections_dribbling_their_headers() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut process = EnspaceProcess::serve(data.path());
    let addr = addr_of(&process);
    let mut dribblers: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: 1\r\n")
                .expect("write");
            s
        })
        .collect();
    healthz(addr);
    let start = Instant::now();
    process.terminate();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    for s in &mut dribblers {
        assert!(closed_within(s, Duration::from_secs(1)).is_some());
    }
    assert!(process.logs().contains("shutting down"));
}

/// `enspace serve` under `ulimit -n <files>`, with its address and logs.
struct Limited {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<String>>,
}

impl Limited {
    fn start(files: u32, data: &std::path::Path) -> Self {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n {files} && exec \"$0\" serve --data \"$1\" --listen 127.0.0.1:0"
            ))
            .arg(binary())
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start enspace under ulimit");
        let logs = Arc::new(Mutex::new(String::new()));
        let (err, sink) = (child.stderr.take().expect("stderr"), logs.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut logs = sink.lock().expect("lock");
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(url) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("enspace started")
            .parse()
            .expect("address");
        Limited { child, addr, logs }
    }

    fn logs(&self) -> String {
        self.logs.lock().expect("lock").clone()
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's own soft limit on open files (from /proc).
fn own_open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

#[test]
fn an_idle_flood_past_a_low_open_file_limit_leaves_healthz_answering() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = Limited::start(256, data.path());
    healthz(server.addr);
    // Up to four times what the process may open (as many as this process
    // may open itself, with room to spare), held open and silent.
    let size = 1024.min(own_open_file_limit().saturating_sub(256));
    assert!(size >= 512, "this test needs `ulimit -n` of at least 768");
    let flood: Vec<TcpStream> = (0..size)
        .filter_map(|_| TcpStream::connect_timeout(&server.addr, Duration::from_secs(5)).ok())
        .collect();
    assert!(
        flood.len() >= 512,
        "the flood opened {} connections",
        flood.len()
    );
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        slowest = slowest.max(healthz(server.addr));
    }
    assert!(
        slowest < Duration::from_secs(2),
        "slowest /healthz {slowest:?} during the flood"
    );
    let logs = server.logs();
    assert!(!logs.contains("out of file descriptors"), "{logs}");
    assert!(
        logs.contains("leaves room for"),
        "the smaller cap is logged: {logs}"
    );
    drop(flood);
}

#[test]
fn sigterm_cuts_off_a_request_whose_body_never_comes_and_exits_within_15_s() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut process = EnspaceProcess::serve(data.path());
    let addr = addr_of(&process);
    // Headers complete, body promised and never sent: a request in flight.
    let mut stalled = TcpStream::connect(addr).expect("connect");
    stalled
        .write_all(b"POST /v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .expect("write");
    healthz(addr);
    let start = Instant::now();
    process.terminate();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(15), "exit took {took:?}");
    assert!(closed_within(&mut stalled, Duration::from_secs(1)).is_some());
    assert!(
        process.logs().contains("cutting off 1 connections"),
        "{}",
        process.logs()
    );
}
