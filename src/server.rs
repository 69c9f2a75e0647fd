//! Starting and stopping the whole server: one thread per core, each with its
//! own listener on the same port, and signal handling for a graceful stop.

use crate::auth::{Access, AccessError, AuthArgs};
use crate::broker::Broker;
use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::core::NodeId;
use crate::hooks::Hooks;
use crate::ring::Ring;
use crate::{runtime, worker};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Core threads are named this, then their index.
const CORE_THREAD: &str = "ringcast-core-";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source} (is another server using that port?)")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(io::Error),
    #[error("cannot start worker thread {core}: {source}")]
    Thread { core: usize, source: io::Error },
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A configured server, not yet running.
///
/// ```no_run
/// use ringcast::{Server, hooks::Hooks};
/// let server = Server::builder()
///     .http("127.0.0.1:8090".parse().unwrap())
///     .workers(2)
///     .hooks(Hooks::new().on_connect(|e| {
///         tracing::info!(client = e.client_id(), "connected");
///         Ok(())
///     }))
///     .start()?;
/// let broker = server.broker();
/// # let _ = broker;
/// server.wait();
/// # Ok::<(), ringcast::ServeError>(())
/// ```
pub struct Server {
    config: Config,
    hooks: Hooks,
}

impl Server {
    pub fn new(config: Config) -> Server {
        Server {
            config,
            hooks: Hooks::new(),
        }
    }

    /// A builder starting from the defaults of `ringcast serve`'s flags. The
    /// environment is not read: pass `.config(Config::from_env()?)` to honour
    /// the `RINGCAST_*` variables as the binary does.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            server: Server::new(Config::default()),
        }
    }

    /// What `ringcast serve` does: starts, then serves until SIGINT or
    /// SIGTERM and shuts down gracefully: every stream gets its zero-length
    /// chunk and the process returns within a few seconds. A second signal
    /// exits at once.
    pub fn serve(self) -> Result<(), ServeError> {
        let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])
            .map_err(ServeError::Signals)?;
        let running = self.start()?;
        let stopper = running.ring.clone();
        std::thread::spawn(move || {
            let mut received = signals.forever();
            if received.next().is_some() {
                tracing::info!("shutting down (a second signal exits at once)");
                stopper.shutdown_blocking();
            }
            if received.next().is_some() {
                std::process::exit(130);
            }
        });
        running.wait();
        Ok(())
    }

    /// Binds every core's listener and starts the cores; returns at once.
    /// The embedding application keeps the process alive and decides when to
    /// stop ([`RunningServer::shutdown`]); no signal handler is installed.
    pub fn start(self) -> Result<RunningServer, ServeError> {
        raise_fd_limit();
        abort_when_a_core_panics();
        let access = Arc::new(Access::new(&self.config.auth)?);
        let config = Arc::new(self.config);
        let workers = config.workers();
        let listeners = bind_all(config.http, workers)?;
        let addr = listeners[0].local_addr().unwrap_or(config.http);
        let (mut ring, inboxes) = Ring::new(workers, config.ring_capacity);
        if !config.history.is_empty() {
            // Each core numbers the history's messages itself: alike only
            // if every core sees every publish in the same order.
            ring = ring.in_total_order();
        }
        let node = NodeId::random();
        let cluster = Cluster::start(&config.cluster, node, addr.to_string(), ring.clone())?;
        let broker = Broker::new(ring.clone(), config.max_queue_bytes, node, cluster);
        let mut threads = Vec::with_capacity(workers);
        for (core, (listener, inbox)) in listeners.into_iter().zip(inboxes).enumerate() {
            let shared = worker::Shared {
                config: config.clone(),
                hooks: self.hooks.clone(),
                access: access.clone(),
                ring: ring.clone(),
                broker: broker.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("{CORE_THREAD}{core}"))
                .spawn(move || worker::run(core, shared, listener, inbox));
            match thread {
                Ok(thread) => threads.push(thread),
                Err(source) => {
                    // Stop the cores already running rather than leak them.
                    let started = RunningServer {
                        addr,
                        ring,
                        broker,
                        threads,
                    };
                    started.shutdown();
                    return Err(ServeError::Thread { core, source });
                }
            }
        }
        tracing::info!(auth = access.verifier.mode(), "subscriber tokens");
        if let Some(url) = &config.cluster.redis {
            tracing::info!(%node, redis = %url, "joining a cluster");
        }
        tracing::info!(%addr, workers, "ringcast listening: GET/POST http://{addr}/api/realtime, POST http://{addr}/api/publish");
        Ok(RunningServer {
            addr,
            ring,
            broker,
            threads,
        })
    }
}

/// Sets up a [`Server`]; every setting defaults as in `ringcast serve`.
pub struct ServerBuilder {
    server: Server,
}

impl ServerBuilder {
    /// Replaces every setting at once (including those set before).
    pub fn config(mut self, config: Config) -> Self {
        self.server.config = config;
        self
    }

    /// The address to listen on (port 0: any free port, see
    /// [`RunningServer::local_addr`]).
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.server.config.http = addr;
        self
    }

    /// Worker cores (default: one per available core).
    pub fn workers(mut self, n: usize) -> Self {
        self.server.config.workers = Some(n);
        self
    }

    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.server.config.idle_timeout = d;
        self
    }

    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.server.config.max_lifetime = d;
        self
    }

    /// Allowed CORS origins; `*` allows any.
    pub fn origins<S: Into<String>>(mut self, origins: impl IntoIterator<Item = S>) -> Self {
        self.server.config.origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// The token for the publish and admin APIs.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.server.config.admin_token = Some(token.into());
        self
    }

    /// Bytes that may wait in one client's queue.
    pub fn max_queue_bytes(mut self, n: usize) -> Self {
        self.server.config.max_queue_bytes = n;
        self
    }

    /// Largest request body accepted.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.server.config.max_body_bytes = n;
        self
    }

    /// How subscribers' tokens are verified, the topic rules and the trusted
    /// proxies (the `--auth-*`, `--rules` and `--trusted-proxy` flags).
    pub fn access(mut self, auth: AuthArgs) -> Self {
        self.server.config.auth = auth;
        self
    }

    /// The realtime hooks.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.server.hooks = hooks;
        self
    }

    pub fn build(self) -> Server {
        self.server
    }

    /// See [`Server::start`].
    pub fn start(self) -> Result<RunningServer, ServeError> {
        self.server.start()
    }

    /// See [`Server::serve`].
    pub fn serve(self) -> Result<(), ServeError> {
        self.server.serve()
    }
}

/// Stops a running server; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    ring: Ring,
}

impl ShutdownHandle {
    /// Asks every core to shut down gracefully and returns at once; the
    /// cores finish within a few seconds ([`RunningServer::wait`] returns).
    pub fn shutdown(&self) {
        let ring = self.ring.clone();
        // `blocking_send` refuses to run on a thread that drives a runtime,
        // and a full inbox must not block the caller.
        std::thread::spawn(move || ring.shutdown_blocking());
    }
}

/// A started server: its address, its [`Broker`], and its core threads.
/// Dropping it leaves the server running.
pub struct RunningServer {
    addr: SocketAddr,
    ring: Ring,
    broker: Broker,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to list, message and disconnect clients.
    pub fn broker(&self) -> Broker {
        self.broker.clone()
    }

    /// A handle that stops this server from anywhere (another thread, a
    /// signal handler, an async task) while another thread [`wait`]s.
    ///
    /// [`wait`]: RunningServer::wait
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            ring: self.ring.clone(),
        }
    }

    /// Shuts down gracefully (every stream gets its zero-length chunk) and
    /// waits for the cores to exit, a few seconds at most. It blocks: from
    /// async code use [`RunningServer::shutdown_handle`], or call it through
    /// `spawn_blocking`. Never call it from a hook: a hook runs on a core.
    pub fn shutdown(self) {
        self.shutdown_handle().shutdown();
        self.wait();
    }

    /// Waits until the server stops (after [`RunningServer::shutdown`], or a
    /// signal under [`Server::serve`]).
    pub fn wait(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}

/// One `SO_REUSEPORT` listener per core, all on the same port (the first
/// one's, so `--http 127.0.0.1:0` works too).
fn bind_all(addr: SocketAddr, workers: usize) -> Result<Vec<std::net::TcpListener>, ServeError> {
    let first = runtime::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    let actual = first.local_addr().unwrap_or(addr);
    let mut all = vec![first];
    for _ in 1..workers {
        all.push(runtime::bind(actual).map_err(|source| ServeError::Bind {
            addr: actual,
            source,
        })?);
    }
    Ok(all)
}

/// A panic of the server's own code on a core thread aborts the process.
///
/// A core that unwound would leave its clients' sockets open and unserved,
/// its inbox closed, and the process answering `/api/health` from the other
/// cores as if all were well: better to die at once and be restarted by the
/// supervisor (systemd's `Restart=`). A panic inside an embedder's hook is
/// caught and answered as before ([`crate::hooks`]); other threads of the
/// process are left to the previous panic hook.
fn abort_when_a_core_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let on_core = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with(CORE_THREAD));
            if on_core && !crate::hooks::in_hook() {
                tracing::error!("a core panicked: aborting the process ({info})");
                std::process::abort();
            }
        }));
    });
}

/// Every connection is a file descriptor: use all the process may have.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("could not raise the open-file limit to {}", limit.rlim_max);
            }
        }
    }
}
