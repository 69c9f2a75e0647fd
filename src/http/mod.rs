//! HTTP/1.1 on the wire: request heads and bodies in, responses out. Nothing
//! here knows about realtime clients or cores.

pub mod error;
pub mod request;
pub mod response;
