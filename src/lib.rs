//! ringcast: a PocketBase-compatible realtime (SSE) notification edge with one
//! io_uring event loop per core.
//!
//! The data path, module by module: a core's listener accepts (`worker`,
//! `runtime`) → `conn` reads and parses requests (`http`) → `routes` dispatches:
//! `stream` serves `GET /api/realtime`, `realtime::subscribe` decodes
//! `POST /api/realtime`, `publish` decodes `POST /api/publish` → the `ring`
//! carries publishes and routed commands between cores → each `core` fans out
//! to its own clients → the stream's task writes the queued frames. `admin`
//! serves the client API, `auth` says who a subscriber is.
//!
//! # Embedding
//!
//! The API for applications is [`Server`] (with [`ServerBuilder`] and
//! [`RunningServer`]), [`Broker`], [`hooks`], [`Config`] and the message types
//! of [`publish`]. The other modules are public for the benchmarks and
//! black-box tests and hidden from the docs: they may change at any time.

pub mod auth;
pub mod broker;
pub mod config;
pub mod hooks;
pub mod publish;
pub mod server;

#[doc(hidden)]
pub mod admin;
#[doc(hidden)]
pub mod conn;
#[doc(hidden)]
pub mod core;
#[doc(hidden)]
pub mod http;
#[doc(hidden)]
pub mod realtime;
#[doc(hidden)]
pub mod ring;
#[doc(hidden)]
pub mod routes;
#[doc(hidden)]
pub mod runtime;
#[doc(hidden)]
pub mod stream;
#[doc(hidden)]
pub mod worker;

pub use broker::{Broker, BrokerError, ClientInfo};
pub use config::Config;
pub use core::clients::EndReason;
pub use hooks::Hooks;
pub use publish::{Action, Message};
pub use server::{RunningServer, ServeError, Server, ServerBuilder, ShutdownHandle};
