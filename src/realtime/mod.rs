//! The PocketBase realtime protocol: SSE framing and subscription requests.

pub mod frame;
pub mod subscribe;
