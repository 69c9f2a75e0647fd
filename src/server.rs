//! Starting and stopping the whole server: one thread per core, each with its
//! own listener on the same port, and signal handling for a graceful stop.

use crate::config::Config;
use crate::ring::Ring;
use crate::{runtime, worker};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source} (is another server using that port?)")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(io::Error),
    #[error("cannot start worker thread {core}: {source}")]
    Thread { core: usize, source: io::Error },
}

pub struct Server {
    config: Arc<Config>,
}

impl Server {
    pub fn new(config: Config) -> Server {
        Server {
            config: Arc::new(config),
        }
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully: every
    /// stream gets its zero-length chunk and the process returns within a few
    /// seconds. A second signal exits at once.
    pub fn serve(self) -> Result<(), ServeError> {
        raise_fd_limit();
        let workers = self.config.workers();
        let listeners = bind_all(self.config.http, workers)?;
        let addr = listeners[0].local_addr().unwrap_or(self.config.http);
        let (ring, inboxes) = Ring::new(workers, self.config.ring_capacity);

        let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])
            .map_err(ServeError::Signals)?;
        let stopper = ring.clone();
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

        let mut threads = Vec::with_capacity(workers);
        for (core, (listener, inbox)) in listeners.into_iter().zip(inboxes).enumerate() {
            let (config, ring) = (self.config.clone(), ring.clone());
            let thread = std::thread::Builder::new()
                .name(format!("ringcast-core-{core}"))
                .spawn(move || worker::run(core, config, listener, ring, inbox))
                .map_err(|source| ServeError::Thread { core, source })?;
            threads.push(thread);
        }
        drop(ring);
        tracing::info!(%addr, workers, "ringcast listening: GET/POST http://{addr}/api/realtime, POST http://{addr}/api/publish");
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
        Ok(())
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
