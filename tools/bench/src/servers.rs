//! The servers under test: how each one is started on its own loopback port, how we know it is
//! ready, and how it is stopped.
//!
//! Every measurement gets a **fresh server process** on a **fresh port**: per-connection memory is
//! "RSS after the hold minus RSS before connecting", which is only meaningful for a process whose
//! heap has not already been grown by an earlier scenario; and a fresh port keeps the previous run's
//! `TIME_WAIT` sockets out of the way.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The four servers, in the order they run within a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Ringcast,
    Baseline,
    Pocketbase,
    Floor,
}

impl ServerKind {
    pub const ALL: [ServerKind; 4] = [
        ServerKind::Ringcast,
        ServerKind::Baseline,
        ServerKind::Pocketbase,
        ServerKind::Floor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Ringcast => "ringcast",
            ServerKind::Baseline => "baseline",
            ServerKind::Pocketbase => "pocketbase",
            ServerKind::Floor => "floor",
        }
    }

    /// How the report names the server.
    pub fn title(self) -> &'static str {
        match self {
            ServerKind::Ringcast => "ringcast",
            ServerKind::Baseline => "baseline",
            ServerKind::Pocketbase => "PocketBase",
            ServerKind::Floor => "floor",
        }
    }

    pub fn parse(s: &str) -> Option<ServerKind> {
        ServerKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
    }

    /// PocketBase has no `/api/publish`; the hook `notify.pb.js` (unguarded copy) adds
    /// `/api/notify` with the same `{"topic","data"}` body.
    pub fn publish_path(self) -> &'static str {
        match self {
            ServerKind::Pocketbase => "/api/notify",
            _ => "/api/publish",
        }
    }

    /// The server's Prometheus endpoint with a publish-side latency histogram, if it has one:
    /// ringcast's `ringcast_node_publish_last_write_seconds` (publish → last write, per core).
    pub fn metrics_path(self) -> Option<&'static str> {
        match self {
            ServerKind::Ringcast => Some("/metrics"),
            _ => None,
        }
    }

    /// PocketBase bootstraps its data directory (migrations) before listening; the Rust servers
    /// listen within milliseconds.
    fn start_timeout(self) -> Duration {
        match self {
            ServerKind::Pocketbase => Duration::from_secs(60),
            _ => Duration::from_secs(15),
        }
    }
}

/// Where the programs are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Programs {
    pub ringcast: PathBuf,
    pub baseline: PathBuf,
    pub floor: PathBuf,
    pub loadgen: PathBuf,
    pub pocketbase: Option<PathBuf>,
    /// Directory with `notify.pb.js` whose superuser guard has been removed.
    pub pb_hooks: Option<PathBuf>,
}

impl Programs {
    /// The command line that starts `kind` on `port`; `data_dir` is PocketBase's fresh `--dir`.
    pub fn command(
        &self,
        kind: ServerKind,
        port: u16,
        data_dir: &Path,
    ) -> anyhow::Result<(PathBuf, Vec<String>)> {
        let http = format!("127.0.0.1:{port}");
        Ok(match kind {
            ServerKind::Ringcast => (
                self.ringcast.clone(),
                vec![
                    "serve".into(),
                    "--http".into(),
                    http,
                    "--workers".into(),
                    "2".into(),
                ],
            ),
            ServerKind::Baseline => (
                self.baseline.clone(),
                vec!["--http".into(), http, "--workers".into(), "2".into()],
            ),
            ServerKind::Floor => (self.floor.clone(), vec!["--http".into(), http]),
            ServerKind::Pocketbase => {
                let bin = self
                    .pocketbase
                    .clone()
                    .context("no PocketBase binary (--pocketbase)")?;
                let hooks = self
                    .pb_hooks
                    .clone()
                    .context("no PocketBase hooks directory (--pb-hooks)")?;
                (
                    bin,
                    vec![
                        "serve".into(),
                        "--http".into(),
                        http,
                        "--dir".into(),
                        data_dir.display().to_string(),
                        "--hooksDir".into(),
                        hooks.display().to_string(),
                    ],
                )
            }
        })
    }
}

/// The loopback ports the benchmark may use (37000–37999), handed out in turn.
///
/// This range lies inside the kernel's ephemeral range (32768–60999), so a port may be held by a
/// client socket — typically one of the load tool's, in `TIME_WAIT` — and a server that binds
/// without `SO_REUSEADDR` (ringcast) would fail. Each port is therefore probed with a strict bind
/// first, and a server that still fails to start is retried on the next port.
pub struct Ports {
    next: u16,
    first: u16,
    last: u16,
}

impl Ports {
    pub fn new(first: u16, last: u16) -> Ports {
        Ports {
            next: first,
            first,
            last,
        }
    }

    pub fn take(&mut self) -> anyhow::Result<u16> {
        let span = (self.last - self.first) as usize + 1;
        for _ in 0..span {
            let p = self.next;
            self.next = if p >= self.last { self.first } else { p + 1 };
            if port_is_free(p) {
                return Ok(p);
            }
        }
        bail!("no free port in {}-{}", self.first, self.last)
    }
}

/// A bind of 127.0.0.1:`port` without `SO_REUSEADDR` (std's `TcpListener` sets it, so libc).
fn port_is_free(port: u16) -> bool {
    // SAFETY: plain syscalls on a socket we create and close here.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let ok = libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) == 0;
        libc::close(fd);
        ok
    }
}

/// A started server; stopped (and reaped) when dropped.
pub struct Server {
    pub port: u16,
    pub child: Child,
    pub command: String,
    /// PocketBase's data directory, removed after the run.
    data_dir: Option<PathBuf>,
}

impl Server {
    /// Starts `kind` on a free port and waits until it accepts TCP connections. `log` receives its
    /// stdout and stderr.
    pub fn start(
        programs: &Programs,
        kind: ServerKind,
        ports: &mut Ports,
        work: &Path,
        log: &Path,
    ) -> anyhow::Result<Server> {
        let mut last_err = None;
        for _attempt in 0..3 {
            let port = ports.take()?;
            let data_dir = work.join(format!("pb_data-{port}"));
            let (bin, args) = programs.command(kind, port, &data_dir)?;
            let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
            let err = out.try_clone()?;
            let child = Command::new(&bin)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let command = format!("{} {}", bin.display(), args.join(" "));
            let mut server = Server {
                port,
                child,
                command,
                data_dir: (kind == ServerKind::Pocketbase).then_some(data_dir),
            };
            match server.wait_ready(kind.start_timeout()) {
                Ok(()) => return Ok(server),
                Err(e) => {
                    let tail = std::fs::read_to_string(log).unwrap_or_default();
                    let tail: String = tail.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                    last_err = Some(e.context(format!("{} on port {port}: {tail}", kind.name())));
                    drop(server);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("cannot start {}", kind.name())))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited during start-up ({status})");
            }
            if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                // ringcast binds one SO_REUSEPORT listener per core; give the second core a moment.
                std::thread::sleep(Duration::from_millis(200));
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not listening after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then SIGKILL after 5 s. Returns whether the process had died before we asked.
    pub fn stop(&mut self) -> bool {
        let died_early = matches!(self.child.try_wait(), Ok(Some(_)));
        if !died_early {
            // SAFETY: kill on the pid of a child we have not reaped yet.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(d) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
        died_early
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
