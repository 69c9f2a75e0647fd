//! The server under test: spawn a workspace binary on a free loopback port and kill it on drop,
//! attach to one already running, or (external mode) use another server altogether.
//!
//! External mode: with `RINGCAST_TEST_ADDR=127.0.0.1:PORT`, [`Server::start`] spawns nothing and
//! the tests talk to that address (e.g. the real PocketBase 0.40.6), so the same tests prove the
//! expectations. Publishing then goes to `RINGCAST_TEST_PUBLISH_PATH` (e.g. `/api/notify` with a
//! public copy of `shared/research/pb_hooks/notify.pb.js`). Ringcast-only tests call
//! [`Server::ringcast_only`], which returns `None` (and prints why) in that mode.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bytes::assert_bytes;
use crate::http::{Conn, Response, curl_post_json, curl_request, get_request, js, subs_body};
use crate::pocketbase::{assert_head, pb_connect_event, pb_connect_id, sse_head_no_te};
use crate::sse::{SseClient, stream_request};

/// The address of the external server, if `RINGCAST_TEST_ADDR` names one.
fn external_addr() -> Option<SocketAddr> {
    std::env::var("RINGCAST_TEST_ADDR")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("RINGCAST_TEST_ADDR={s:?} is not an IP:PORT address"))
        })
}

pub(crate) fn is_external() -> bool {
    external_addr().is_some()
}

/// Where publishing goes: ringcast's `/api/publish`, or the external server's hook.
fn publish_path() -> String {
    if is_external() {
        std::env::var("RINGCAST_TEST_PUBLISH_PATH").unwrap_or_else(|_| "/api/notify".to_string())
    } else {
        "/api/publish".to_string()
    }
}

/// In external mode, print why the current test is skipped (straight to fd 2, so the note shows
/// even though libtest captures test output) and return true. `test` is used when the thread has
/// no name (libtest names each test's thread after the test).
pub fn skip_in_external_mode(test: &str, why: &str) -> bool {
    if !is_external() {
        return false;
    }
    let thread = std::thread::current();
    let name = thread.name().unwrap_or(test);
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED {name}: ringcast-only ({why}); RINGCAST_TEST_ADDR is set\n").as_bytes(),
    );
    true
}

/// The path of a binary of the package whose integration test is running. Cargo builds those
/// binaries before the tests and names them in `CARGO_BIN_EXE_<name>`, which a library only sees
/// at run time; without it, the binary sits in the test executable's profile directory
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
fn cargo_bin(name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .filter(|d| d.ends_with("deps"))
        .and_then(|d| d.parent())
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", exe.display()));
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} does not exist: `cargo test` builds it for the tests of its own package",
        bin.display()
    );
    bin
}

pub struct Server {
    pub addr: SocketAddr,
    child: Option<Child>,
    output: Arc<Mutex<Vec<u8>>>,
    exit: Option<ExitStatus>,
}

impl Server {
    /// Start ringcast with the given extra arguments, or use `RINGCAST_TEST_ADDR` (external mode).
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// Like `start`, with extra environment variables for the server (e.g. `RINGCAST_IDLE_TIMEOUT`).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        match external_addr() {
            Some(addr) => Server::attach(addr),
            None => Server::spawn("ringcast", &["serve"], args, env),
        }
    }

    /// Start ringcast for a test that needs ringcast-only features; `None` (and a note on stderr)
    /// in external mode.
    pub fn ringcast_only(test: &str, why: &str, args: &[&str]) -> Option<Server> {
        if skip_in_external_mode(test, why) {
            return None;
        }
        Some(Server::start(args))
    }

    /// Like [`Server::ringcast_only`], with the server's open-file limit (`RLIMIT_NOFILE`, soft
    /// and hard) set to `nofile`: for tests that exhaust the server's descriptors.
    pub fn ringcast_only_with_nofile(
        test: &str,
        why: &str,
        args: &[&str],
        nofile: u64,
    ) -> Option<Server> {
        if skip_in_external_mode(test, why) {
            return None;
        }
        Some(Server::spawn_limited(
            "ringcast",
            &["serve"],
            args,
            &[],
            Some(nofile),
        ))
    }

    /// Start the tokio+axum baseline (two workers, warnings only) with extra arguments. Never
    /// external: its tests are about the baseline itself.
    pub fn baseline(args: &[&str]) -> Server {
        Server::spawn(
            "ringcast-baseline",
            &["--workers", "2"],
            args,
            &[("RUST_LOG", "warn")],
        )
    }

    /// A server already listening at `addr` (e.g. one embedded in the test process).
    pub fn attach(addr: SocketAddr) -> Server {
        Server {
            addr,
            child: None,
            output: Arc::default(),
            exit: None,
        }
    }

    /// `BIN LEAD… --http 127.0.0.1:PORT ARGS…` on a free port, retried when another process took
    /// the port between our probe and the server's bind.
    fn spawn(bin: &str, lead: &[&str], args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn_limited(bin, lead, args, env, None)
    }

    /// [`Server::spawn`], with `RLIMIT_NOFILE` (soft and hard) set to `nofile` in the child.
    fn spawn_limited(
        bin: &str,
        lead: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Server {
        let bin = cargo_bin(bin);
        let mut last_err = String::new();
        for _attempt in 0..5 {
            match Self::try_spawn(&bin, lead, args, env, nofile) {
                Ok(s) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start {}: {last_err}", bin.display());
    }

    fn try_spawn(
        bin: &PathBuf,
        lead: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Result<Server, String> {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            l.local_addr().map_err(|e| e.to_string())?.port()
        };
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let mut cmd = Command::new(bin);
        cmd.args(lead)
            .arg("--http")
            .arg(addr.to_string())
            .args(args);
        // The server reads every flag from RINGCAST_* too: keep the caller's environment out.
        for (k, _) in std::env::vars() {
            if k.starts_with("RINGCAST_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl and setrlimit are async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(move || {
                // Die with the test thread that started us, whatever happens to the test process.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(n) = nofile {
                    let limit = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let output: Arc<Mutex<Vec<u8>>> = Arc::default();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            // Drained all the time, so the server never blocks on (or dies of) a full pipe.
            let out = output.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut b = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .expect("output buffer lock")
                        .extend_from_slice(&b[..n]);
                }
            });
        }
        let mut server = Server {
            addr,
            child: Some(child),
            output,
            exit: None,
        };
        let name = bin.file_name().map_or_else(
            || bin.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = server.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                let out = server.output_text();
                server.child = None;
                let msg = format!("{name} exited during startup ({st}); output:\n{out}");
                if out.contains("in use") {
                    return Err(msg); // lost a race for the port: retry with another one
                }
                panic!("{msg}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                panic!(
                    "{name} did not accept connections on {addr} within 10 s; output so far:\n{}",
                    server.output_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()?
            .try_wait()
            .expect("wait for the server process")
    }

    /// The spawned process's id (`None` in external mode or for an attached server).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Everything the server printed so far (stdout and stderr).
    pub fn output_text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("output buffer lock")).into_owned()
    }

    pub fn sigterm(&self) {
        let pid = self
            .child
            .as_ref()
            .expect("no child process (external mode?)")
            .id();
        // SAFETY: signalling our own child, which is not reaped before `wait_exit`.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Wait for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        self.child.as_ref()?;
        loop {
            if self.exit.is_none() {
                self.exit = self.try_wait();
            }
            if self.exit.is_some() || Instant::now() > deadline {
                return self.exit;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the spawned process is still running (always true in external mode).
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = self.try_wait();
        }
        self.exit.is_none()
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    pub fn connect_from(&self, ip: &str) -> Conn {
        Conn::connect_from(
            ip.parse()
                .unwrap_or_else(|_| panic!("{ip:?} is not an IP address")),
            self.addr,
        )
    }

    /// Send `raw` on a new connection and read one response.
    #[track_caller]
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut c = self.connect();
        c.send(raw);
        c.read_response()
    }

    #[track_caller]
    pub fn get(&self, path: &str) -> Response {
        self.request(&get_request(&self.host(), path))
    }

    /// POST /api/realtime with a JSON body, curl style.
    #[track_caller]
    pub fn post_realtime_json(&self, body: &[u8]) -> Response {
        self.request(&curl_post_json(&self.host(), "/api/realtime", body))
    }

    /// Set the subscriptions of `client`; asserts PocketBase's exact 204 answer.
    #[track_caller]
    pub fn subscribe(&self, client: &SseClient, subs: &[&str]) {
        let r = self.post_realtime_json(subs_body(&client.id, subs).as_bytes());
        r.assert_204(&format!("subscribe {subs:?}"));
    }

    /// Open an SSE stream (HTTP/1.1) and check its exact head and PB_CONNECT chunk.
    #[track_caller]
    pub fn open_stream(&self) -> SseClient {
        let mut c = self.connect();
        c.send(&stream_request(&self.host(), &[]));
        SseClient::from_conn(c)
    }

    /// Open an HTTP/1.0 stream (no chunking: events are written raw) and check its exact head and
    /// PB_CONNECT event; returns the connection and the client id.
    #[track_caller]
    pub fn open_http10_stream(&self) -> (Conn, String) {
        let mut c = self.connect();
        c.send(
            format!(
                "GET /api/realtime HTTP/1.0\r\nHost: {}\r\n\r\n",
                self.host()
            )
            .as_bytes(),
        );
        let head = c.read_head();
        assert_head(&head, &sse_head_no_te("HTTP/1.0"), "HTTP/1.0 stream head");
        let ev = c.read_until(b"\n\n");
        let id = pb_connect_id(&ev);
        assert_bytes(
            &ev,
            &pb_connect_event(&id),
            "raw PB_CONNECT (no chunk framing)",
        );
        (c, id)
    }

    /// Publish a custom message: ringcast `POST /api/publish {"topic","data"}`, or in external mode
    /// `POST $RINGCAST_TEST_PUBLISH_PATH` with the same body (notify.pb.js). `data_json` is raw JSON.
    /// Asserts 200.
    #[track_caller]
    pub fn publish(&self, topic: &str, data_json: &str) -> Response {
        let body = format!(r#"{{"topic":{},"data":{}}}"#, js(topic), data_json);
        let r = self.request(&curl_post_json(
            &self.host(),
            &publish_path(),
            body.as_bytes(),
        ));
        assert_eq!(
            r.status(),
            200,
            "publish {topic} -> {}\n{}",
            r.head.text(),
            r.body_str()
        );
        r
    }

    /// `POST /api/publish` (ringcast only) with this JSON body and extra headers, whatever the
    /// answer.
    #[track_caller]
    pub fn publish_raw(&self, body: &[u8], extra: &[(&str, &str)]) -> Response {
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend_from_slice(extra);
        self.request(&curl_request(
            &self.host(),
            "POST",
            "/api/publish",
            &headers,
            Some(body),
            &[],
        ))
    }

    /// GET /api/stats as JSON (ringcast only).
    pub fn stats(&self) -> serde_json::Value {
        let r = self.get("/api/stats");
        assert_eq!(
            r.status(),
            200,
            "GET /api/stats: {}{}",
            r.head.text(),
            r.body_str()
        );
        r.json()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
