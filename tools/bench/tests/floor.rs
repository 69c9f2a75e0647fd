//! The floor server speaks enough of the protocol for the load tool: a stream opens with
//! `PB_CONNECT`, a subscription is accepted, a publish reaches the subscriber as one chunk.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Floor(Child, u16);

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> Floor {
    // The benchmark's loopback range, from the top (the benchmark itself starts at 37000).
    let port = (37900..38000)
        .rev()
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 37900-37999");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast-floor"))
        .args(["--http", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ringcast-floor listening on"), "{line}");
    Floor(child, port)
}

fn request(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn connect_subscribe_publish() {
    let f = start();
    let mut stream = TcpStream::connect(("127.0.0.1", f.1)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /api/realtime HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Transfer-Encoding: chunked\r\n"));
    let id = head
        .split("\"clientId\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 40);
    assert!(head.contains("\r\n7b\r\nid:"));

    let sub = request(
        f.1,
        "POST",
        "/api/realtime",
        &format!(r#"{{"clientId":"{id}","subscriptions":["news"]}}"#),
    );
    assert!(sub.starts_with("HTTP/1.1 204"), "{sub}");
    let unknown = request(
        f.1,
        "POST",
        "/api/realtime",
        r#"{"clientId":"nope","subscriptions":["news"]}"#,
    );
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");

    let publ = request(
        f.1,
        "POST",
        "/api/publish",
        r#"{"topic":"news","data":{"seq":1}}"#,
    );
    assert!(publ.ends_with(r#"{"recipients":1}"#), "{publ}");
    let n = stream.read(&mut buf).unwrap();
    let event = String::from_utf8_lossy(&buf[..n]).into_owned();
    let expected = format!("id:{id}\nevent:news\ndata:{{\"seq\":1}}\n\n");
    assert_eq!(event, format!("{:x}\r\n{expected}\r\n", expected.len()));

    let other = request(f.1, "POST", "/api/publish", r#"{"topic":"other","data":1}"#);
    assert!(other.ends_with(r#"{"recipients":0}"#), "{other}");
}
