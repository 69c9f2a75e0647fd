//! End-to-end: runs the `ringcast-loadgen` binary against a tiny PocketBase-style SSE server written here
//! with std threads, once clean (`--check` must pass) and with deliberate faults (`--check` must fail and
//! the report must name the fault).
//!
//! The server implements just enough of the protocol: `GET /api/realtime` (chunked SSE, PB_CONNECT with a
//! 40-character id), `POST /api/realtime` (replace subscriptions, 204), `POST /api/publish`
//! (`{"topic","data"}` → one chunk per subscribed client, 200 `{"recipients":N}`). A global lock is held
//! while subscribing and while fanning out, so publishes are delivered in order.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the test server does wrong on purpose.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    /// The first subscriber of each message with seq 3 does not get it.
    Drop,
    /// The first subscriber gets seq 3 twice.
    Duplicate,
    /// Events carry another client's id.
    WrongId,
}

struct Client {
    id: String,
    writer: Arc<Mutex<TcpStream>>,
    subs: Vec<String>,
}

struct Server {
    port: u16,
}

/// Binds in the port range this workplace allows (39000–39999).
fn bind() -> TcpListener {
    let base = 39000 + (std::process::id() % 800) as u16;
    for p in (base..40000).chain(39000..base) {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", p)) {
            return l;
        }
    }
    panic!("no free port in 39000-39999");
}

fn start(fault: Fault) -> Server {
    let listener = bind();
    let port = listener.local_addr().unwrap().port();
    let clients: Arc<Mutex<Vec<Client>>> = Arc::default();
    let next_id = Arc::new(AtomicU64::new(0));
    let cl = clients.clone();
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            let clients = cl.clone();
            let next_id = next_id.clone();
            thread::spawn(move || handle(s, clients, next_id, fault));
        }
    });
    Server { port }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { method, path, body })
}

fn chunk(payload: &str) -> String {
    format!("{:x}\r\n{payload}\r\n", payload.len())
}

fn handle(s: TcpStream, clients: Arc<Mutex<Vec<Client>>>, next_id: Arc<AtomicU64>, fault: Fault) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    while let Some(req) = read_request(&mut r) {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/api/realtime") => {
                let id = format!("{:0>40}", next_id.fetch_add(1, Ordering::Relaxed));
                let head = "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
                let connect = chunk(&format!(
                    "id:{id}\nevent:PB_CONNECT\ndata:{{\"clientId\":\"{id}\"}}\n\n"
                ));
                let writer = Arc::new(Mutex::new(w.try_clone().unwrap()));
                {
                    let mut list = clients.lock().unwrap();
                    writer
                        .lock()
                        .unwrap()
                        .write_all(format!("{head}{connect}").as_bytes())
                        .unwrap();
                    list.push(Client {
                        id: id.clone(),
                        writer,
                        subs: Vec::new(),
                    });
                }
                // Hold the stream until the client goes away, then unregister it.
                let mut sink = [0u8; 64];
                while matches!(r.get_mut().read(&mut sink), Ok(n) if n > 0) {}
                clients.lock().unwrap().retain(|c| c.id != id);
                return;
            }
            ("POST", "/api/realtime") => {
                let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
                let id = v["clientId"].as_str().unwrap().to_string();
                let subs: Vec<String> = v["subscriptions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect();
                let found = {
                    let mut list = clients.lock().unwrap();
                    match list.iter_mut().find(|c| c.id == id) {
                        Some(c) => {
                            c.subs = subs;
                            true
                        }
                        None => false,
                    }
                };
                let resp = if found {
                    "HTTP/1.1 204 No Content\r\n\r\n".to_string()
                } else {
                    let b = r#"{"data":{},"message":"Missing or invalid client id.","status":404}"#;
                    format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{b}",
                        b.len()
                    )
                };
                w.write_all(resp.as_bytes()).unwrap();
            }
            ("POST", "/api/publish") => {
                let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
                let topic = v["topic"].as_str().unwrap().to_string();
                let data = serde_json::to_string(&v["data"]).unwrap();
                let seq = v["data"]["seq"].as_u64();
                let mut n = 0;
                {
                    let list = clients.lock().unwrap();
                    let mut first = true;
                    for c in list.iter().filter(|c| c.subs.contains(&topic)) {
                        let id = if fault == Fault::WrongId {
                            "X".repeat(40)
                        } else {
                            c.id.clone()
                        };
                        let ev = chunk(&format!("id:{id}\nevent:{topic}\ndata:{data}\n\n"));
                        let copies = match (fault, first && seq == Some(3)) {
                            (Fault::Drop, true) => 0,
                            (Fault::Duplicate, true) => 2,
                            _ => 1,
                        };
                        first = false;
                        let mut wr = c.writer.lock().unwrap();
                        for _ in 0..copies {
                            let _ = wr.write_all(ev.as_bytes());
                        }
                        n += 1;
                    }
                }
                let b = format!("{{\"recipients\":{n}}}");
                w.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                        b.len()
                    )
                    .as_bytes(),
                )
                .unwrap();
            }
            _ => {
                w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    .unwrap();
            }
        }
    }
    let _ = w.shutdown(Shutdown::Both);
}

/// Runs the loadgen; returns (exit code, parsed report).
fn loadgen(port: u16, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringcast-loadgen"))
        .args([
            "--target",
            &format!("127.0.0.1:{port}"),
            "--quiet",
            "--check",
        ])
        .args(args)
        .output()
        .expect("run ringcast-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

const FANOUT: &[&str] = &[
    "--topics",
    "3",
    "--subs-per-client",
    "2",
    "--source-ips",
    "4",
    "fanout",
    "-n",
    "40",
    "--messages",
    "30",
];

#[test]
fn fanout_clean_passes_check() {
    let srv = start(Fault::None);
    let (code, r) = loadgen(srv.port, FANOUT);
    assert_eq!(code, 0, "report: {r:#}");
    assert_eq!(r["ok"], true);
    assert_eq!(r["schema"], "ringcast-loadgen/1");
    let acc = &r["accounting"];
    // 40 clients x 2 of 3 topics; 30 messages, 10 per topic: each client gets 20.
    assert_eq!(acc["required"], 800);
    assert_eq!(acc["delivered"], 800);
    assert_eq!(acc["lost"], 0);
    assert_eq!(r["delivery"]["complete"], true);
    assert_eq!(r["publish"]["recipients_reported"], 800);
    assert_eq!(r["latency_ns"]["count"], 800);
    assert_eq!(r["connect"]["connected"], 40);
}

#[test]
fn fanout_with_serial_publishes_has_no_late_events() {
    let srv = start(Fault::None);
    let mut args = vec!["--in-flight", "1"];
    args.extend_from_slice(FANOUT);
    let (code, r) = loadgen(srv.port, &args);
    assert_eq!(code, 0, "report: {r:#}");
    assert_eq!(r["accounting"]["late"], 0);
    assert_eq!(r["accounting"]["reordered"], 0);
}

#[test]
fn dropped_event_fails_check() {
    let srv = start(Fault::Drop);
    let mut args = vec!["--timeout", "1s"];
    args.extend_from_slice(FANOUT);
    let (code, r) = loadgen(srv.port, &args);
    assert_eq!(code, 1, "report: {r:#}");
    assert_eq!(r["ok"], false);
    // seq 3 exists on each of the 3 topics; the first subscriber of each misses it.
    assert_eq!(r["accounting"]["lost"], 3);
    assert_eq!(r["delivery"]["complete"], false);
    let failures = r["failures"].to_string();
    assert!(failures.contains("lost: 3"), "{failures}");
}

#[test]
fn duplicated_event_fails_check() {
    let srv = start(Fault::Duplicate);
    let (code, r) = loadgen(srv.port, FANOUT);
    assert_eq!(code, 1, "report: {r:#}");
    assert_eq!(r["accounting"]["duplicated"], 3);
    assert_eq!(r["accounting"]["lost"], 0);
    assert!(r["failures"].to_string().contains("duplicated: 3"));
}

#[test]
fn wrong_id_fails_check() {
    let srv = start(Fault::WrongId);
    let (code, r) = loadgen(srv.port, FANOUT);
    assert_eq!(code, 1, "report: {r:#}");
    assert_eq!(r["accounting"]["wrong_id"], 800);
}

#[test]
fn churn_accounting_is_clean() {
    let srv = start(Fault::None);
    let (code, r) = loadgen(
        srv.port,
        &[
            "--topics",
            "2",
            "churn",
            "-n",
            "30",
            "--rate",
            "200",
            "--duration",
            "2s",
            "--churn-rate",
            "20",
        ],
    );
    assert_eq!(code, 0, "report: {r:#}");
    let churn = &r["churn"];
    assert!(churn["joined"].as_u64().unwrap() >= 20, "{churn}");
    assert!(churn["left"].as_u64().unwrap() >= 20, "{churn}");
    assert!(r["accounting"]["required"].as_u64().unwrap() > 1000);
}
