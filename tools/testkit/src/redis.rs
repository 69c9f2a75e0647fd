//! A real `redis-server` for the cluster tests, on a free loopback port, killed on drop; it can
//! be stopped and started again on the same port (a Redis restarted under running nodes).
//! Commands go through `redis-cli` (installed with `redis-server`), so the kit needs no Redis
//! client of its own.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::wait_for;

const SERVER: &str = "redis-server";
const CLI: &str = "redis-cli";

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts a `redis-server` with no persistence on a free port; panics with what to install
    /// when there is none.
    pub fn start() -> Redis {
        let port = free_port();
        let mut redis = Redis { port, child: None };
        redis.restart();
        redis
    }

    /// A port nothing listens on, for a Redis that is not there yet (start it with
    /// [`Redis::restart`]).
    pub fn not_started() -> Redis {
        Redis {
            port: free_port(),
            child: None,
        }
    }

    /// The URL ringcast's `--redis` takes.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on its port and waits until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new(SERVER);
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                // Die with the test that started us, whatever happens to the test process.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run {SERVER} ({e}): install it, e.g. `apt-get install redis-server`")
        });
        self.child = Some(child);
        let up = wait_for(Duration::from_secs(10), || {
            (self.command(&["PING"]).as_deref() == Some("PONG")).then_some(())
        });
        assert!(
            up.is_some(),
            "{SERVER} on port {} did not answer PING",
            self.port
        );
    }

    /// Runs one command with `redis-cli --raw`; its output, or `None` if it failed.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(CLI)
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// How many connections are subscribed to `channel` (`PUBSUB NUMSUB`): one per node that
    /// needs it.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.command(&["PUBSUB", "NUMSUB", channel])
            .and_then(|out| out.lines().nth(1).and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// Waits until exactly `n` connections are subscribed to `channel`.
    #[track_caller]
    pub fn wait_subscribers(&self, channel: &str, n: usize) {
        let got = wait_for(Duration::from_secs(10), || {
            (self.subscribers(channel) == n).then_some(())
        });
        assert!(
            got.is_some(),
            "{channel}: {} subscribed connections, expected {n}",
            self.subscribers(channel)
        );
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
