//! Test support for ringcast's workspace (dev-only, never published).
//!
//! The end-to-end tests talk to a real server over loopback TCP and read the raw bytes, so a test
//! can see header order, chunk sizes and the zero chunk. Nothing here imports the `ringcast`
//! library. One module per concern:
//! * [`server`] — start/stop the binary under test on a free port, attach, external mode;
//! * [`http`] — a raw HTTP/1.1 connection, responses, the requests tests send;
//! * [`sse`] — the SSE stream decoder, strict event parsing, the stream client;
//! * [`wire`] — response head and chunk parsing without I/O, shared with `ringcast-loadgen`;
//! * [`pocketbase`] — PocketBase 0.40.6's exact heads and bodies, date/id normalisation;
//! * [`redis`] — a real `redis-server` for the cluster tests, stopped and restarted at will;
//! * [`pocketbase_process`] — a real PocketBase with a superuser, for the tests that check against it;
//! * [`procfs`] — the server process's memory, CPU time and open files, and TCP socket states,
//!   from `/proc`;
//! * [`baseline`] — looser checks for the tokio+axum baseline, whose headers differ in order;
//! * [`bytes`] — escaped rendering and comparison of bytes in assertion messages;
//! * [`wait`] — polling with a deadline.

pub mod baseline;
pub mod bytes;
pub mod http;
pub mod pocketbase;
pub mod pocketbase_process;
pub mod procfs;
pub mod redis;
pub mod server;
pub mod sse;
pub mod wait;
pub mod wire;
