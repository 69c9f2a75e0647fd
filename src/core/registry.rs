//! This core's clients and connections, in slabs.
//!
//! A client's slab key is encoded in its id (`core::id`), so a request naming
//! a client finds it in O(1) — and only if the whole id matches, so ids stay
//! unguessable. Connections are tracked apart from clients because a
//! connection serving plain requests is not a client, and shutdown must
//! reach every connection.

use super::client::Client;
use super::error::CoreError;
use super::id::{self, MAX_CLIENTS_PER_CORE, NodeId};
use crate::frame::{BodyMode, ID_LEN};
use crate::runtime::SocketRef;
use slab::Slab;
use std::net::IpAddr;

#[derive(Debug, Default)]
pub struct Registry {
    clients: Slab<Client>,
    connections: Slab<SocketRef>,
    /// Streams by (non-loopback) client address, for `--max-streams-per-ip`.
    per_ip: ahash::HashMap<IpAddr, u32>,
}

impl Registry {
    pub fn open_connection(&mut self, socket: SocketRef) -> usize {
        self.connections.insert(socket)
    }

    pub fn close_connection(&mut self, key: usize) {
        self.connections.remove(key);
    }

    /// Every open connection's socket.
    pub fn connections(&self) -> impl Iterator<Item = SocketRef> + '_ {
        self.connections.iter().map(|(_, &s)| s)
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Registers a stream of core `core` (of `workers`) of `node` from `ip`, which may
    /// hold `per_ip` streams here (0: any number; loopback is not counted,
    /// as local proxies and tools share it); returns its key and id.
    pub fn register(
        &mut self,
        (node, core, workers): (NodeId, usize, usize),
        ip: IpAddr,
        per_ip: usize,
        socket: SocketRef,
        mode: BodyMode,
        now: u64,
    ) -> Result<(usize, [u8; ID_LEN]), CoreError> {
        let ip = ip.to_canonical();
        let counted = per_ip > 0 && !ip.is_loopback();
        if counted && self.per_ip.get(&ip).is_some_and(|&n| n as usize >= per_ip) {
            return Err(CoreError::TooManyStreams);
        }
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        if key >= MAX_CLIENTS_PER_CORE {
            return Err(CoreError::Full);
        }
        let id = id::new_id(node, core, workers, key);
        entry.insert(Client::new(id, ip, socket, mode, now));
        if counted {
            *self.per_ip.entry(ip).or_default() += 1;
        }
        Ok((key, id))
    }

    pub fn remove(&mut self, key: usize) -> Client {
        let client = self.clients.remove(key);
        let ip = client.ip();
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        client
    }

    /// The client at `key`, which the caller knows is registered (fan-out
    /// keys come from this core's own indexes, stream tasks own theirs).
    #[inline]
    pub fn client_mut(&mut self, key: usize) -> &mut Client {
        &mut self.clients[key]
    }

    /// [`Registry::client_mut`], to read.
    pub fn client(&self, key: usize) -> &Client {
        &self.clients[key]
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut Client> {
        self.clients.get_mut(key)
    }

    /// The registered client `id` at `key`, whose stream is still open.
    pub fn live(&mut self, id: &[u8], key: usize) -> Result<&mut Client, CoreError> {
        self.clients
            .get_mut(key)
            .filter(|c| c.id[..] == *id && c.end.is_none())
            .ok_or_else(|| CoreError::NotFound(String::from_utf8_lossy(id).into_owned()))
    }

    /// Registered clients, ended or not.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Client)> {
        self.clients.iter_mut()
    }

    /// Clients whose stream is open, in slab order.
    pub fn live_clients(&self) -> impl Iterator<Item = &Client> {
        self.clients
            .iter()
            .map(|(_, c)| c)
            .filter(|c| c.end.is_none())
    }
}
