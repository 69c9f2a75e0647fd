//! ringcast: a PocketBase-compatible realtime (SSE) notification edge with one
//! io_uring event loop per core.
//!
//! The data path, module by module: a core's listener accepts (`worker`,
//! `runtime`) → `conn` reads and parses requests (`http`) → `routes` dispatches:
//! `stream` serves `GET /api/realtime`, `realtime::subscribe` decodes
//! `POST /api/realtime`, `publish` decodes `POST /api/publish` → the `ring`
//! carries publishes and routed commands between cores → each `core` fans out
//! to its own clients → the stream's task writes the queued frames.

pub mod admin;
pub mod auth;
pub mod broker;
pub mod config;
pub mod conn;
pub mod core;
pub mod hooks;
pub mod http;
pub mod publish;
pub mod realtime;
pub mod ring;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod stream;
pub mod worker;

pub use broker::{Broker, BrokerError, ClientInfo};
pub use config::Config;
pub use core::clients::EndReason;
pub use hooks::Hooks;
pub use publish::{Action, Message};
pub use server::{RunningServer, ServeError, Server, ServerBuilder};
