//! ringcast: a PocketBase-compatible realtime (SSE) notification edge with one
//! io_uring event loop per core.
//!
//! The data path, module by module: a core's listener accepts (`worker`,
//! `runtime`) → `conn` reads and bounds each request (`http`) → `serve` asks
//! `routes` where it goes: `stream` serves `GET /api/realtime`, `api` answers
//! everything else (`api::subscribe`, `api::publish`, `api::admin`, …) through
//! the [`Broker`] → the `ring` carries publishes and routed commands between
//! cores → each `core` fans out to its own clients and writes their queues.
//! `message` is what is published, `frame` its SSE wire form, `auth` says who
//! a subscriber is, [`hooks`] let an embedder in on every step.
//!
//! # Embedding
//!
//! The API for applications is [`Server`] (with [`ServerBuilder`] and
//! [`RunningServer`]), [`Broker`], [`hooks`], [`Config`] and the types of
//! [`message`]. The other modules are public for the benchmarks and black-box
//! tests and hidden from the docs: they may change at any time.

pub mod auth;
pub mod broker;
#[doc(hidden)]
pub mod cluster;
pub mod config;
pub mod hooks;
pub mod message;
pub mod server;

#[doc(hidden)]
pub mod api;
#[doc(hidden)]
pub mod conn;
#[doc(hidden)]
pub mod core;
#[doc(hidden)]
pub mod ctx;
#[doc(hidden)]
pub mod filter;
#[doc(hidden)]
pub mod frame;
#[doc(hidden)]
pub mod http;
#[doc(hidden)]
pub mod parked;
#[doc(hidden)]
pub mod ring;
#[doc(hidden)]
pub mod routes;
#[doc(hidden)]
pub mod runtime;
#[doc(hidden)]
pub mod serve;
#[doc(hidden)]
pub mod stream;
#[doc(hidden)]
pub mod worker;

pub use broker::{Broker, BrokerError, ClientInfo};
pub use config::Config;
pub use core::CoreError;
pub use hooks::{EndReason, Hooks};
pub use message::{Action, Message};
pub use server::{RunningServer, ServeError, Server, ServerBuilder, ShutdownHandle};
