//! Operations on named clients, for the broker API and the admin routes: a
//! message to one client, a broadcast, an unregister, the per-client store
//! and snapshots. Each runs on the client's owner core; `crate::broker`
//! routes it there through the ring.

use super::clients::{Client, EndReason};
use super::{Core, OverCap, Refused, end};
use crate::broker::{BrokerError, ClientInfo, StoreOp};
use crate::realtime::frame::Frame;
use serde_json::Value;
use std::rc::Rc;
use std::time::Duration;

impl Core {
    /// The registered client `id` at slab `key`, whose stream is still open.
    pub(super) fn live(&mut self, id: &[u8], key: usize) -> Result<&mut Client, BrokerError> {
        self.clients
            .get_mut(key)
            .filter(|c| c.id[..] == *id && c.end.is_none())
            .ok_or_else(|| BrokerError::NotFound(String::from_utf8_lossy(id).into_owned()))
    }

    /// Queues one event for one client, whatever it subscribed. `Ok(false)`:
    /// the message hook skipped it. A full queue refuses the send (the client
    /// stays connected) rather than dropping it unseen.
    pub fn send(
        &mut self,
        id: &[u8],
        key: usize,
        name: &str,
        data: &[u8],
    ) -> Result<bool, BrokerError> {
        self.live(id, key)?;
        let frame = Rc::new(Frame::new(name.as_bytes(), data));
        let (mut fanout, _, _, clients) = self.fanout();
        let client = &mut clients[key];
        fanout.stats.messages += 1;
        let delivered = fanout
            .deliver(key as u32, client, &frame, name, data, OverCap::Refuse)
            .map_err(|refused| match refused {
                Refused::Full => BrokerError::QueueFull(client.id_str().to_owned()),
                Refused::TooLarge => BrokerError::TooLarge(frame.wire_len(client.mode)),
            })?;
        self.finish_fanout(u64::from(delivered));
        Ok(delivered)
    }

    /// Queues one event for every client of this core; returns how many got it.
    pub fn broadcast(&mut self, name: &str, data: &[u8]) -> u64 {
        let frame = Rc::new(Frame::new(name.as_bytes(), data));
        let (mut fanout, _, _, clients) = self.fanout();
        fanout.stats.messages += 1;
        let mut recipients = 0;
        for (key, client) in clients.iter_mut() {
            if fanout.deliver(key as u32, client, &frame, name, data, OverCap::Disconnect)
                == Ok(true)
            {
                recipients += 1;
            }
        }
        self.finish_fanout(recipients);
        recipients
    }

    /// Ends a client's stream politely (what is queued is written first, then
    /// the zero chunk); the disconnect hook sees [`EndReason::Unregistered`].
    pub fn end_client(&mut self, id: &[u8], key: usize) -> Result<(), BrokerError> {
        let client = self.live(id, key)?;
        end(client, EndReason::Unregistered);
        Ok(())
    }

    /// Reads or changes a client's store; returns the value read or replaced.
    pub fn store(
        &mut self,
        id: &[u8],
        key: usize,
        op: StoreOp,
    ) -> Result<Option<Value>, BrokerError> {
        let client = self.live(id, key)?;
        Ok(match op {
            StoreOp::Get(k) => client.extra.as_ref().and_then(|e| e.store.get(&k).cloned()),
            StoreOp::Set(k, v) => client.extra_mut().store.insert(k, v),
            StoreOp::Unset(k) => client.extra.as_mut().and_then(|e| e.store.remove(&k)),
        })
    }

    /// A snapshot of one client.
    pub fn client_info(&mut self, id: &[u8], key: usize) -> Result<ClientInfo, BrokerError> {
        self.live(id, key)?;
        Ok(self.info(&self.clients[key]))
    }

    /// This core's open streams in slab order: how many there are, and
    /// snapshots of `limit` of them after skipping `skip`. Walking the slab
    /// costs no allocation, so a page is cheap however many clients there are.
    pub fn client_page(&self, skip: usize, limit: usize) -> (usize, Vec<ClientInfo>) {
        let live = || self.clients.iter().filter(|(_, c)| c.end.is_none());
        let total = live().count();
        let page = live()
            .skip(skip)
            .take(limit)
            .map(|(_, c)| self.info(c))
            .collect();
        (total, page)
    }

    fn info(&self, client: &Client) -> ClientInfo {
        ClientInfo {
            id: client.id_str().to_owned(),
            subscriptions: client
                .subs
                .iter()
                .map(|&t| self.topics.name(t).to_owned())
                .collect(),
            remote_ip: client.ip,
            connected_at: self.started_at + Duration::from_millis(client.connected_ms),
            auth: client.auth().cloned(),
            store: client
                .extra
                .as_ref()
                .map(|e| e.store.clone())
                .unwrap_or_default(),
            core: self.index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::hooks::Hooks;
    use crate::publish::Message;
    use crate::realtime::frame::BodyMode;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn core_with(config: Config, hooks: Hooks) -> Core {
        Core::new(0, Arc::new(config), hooks)
    }

    #[test]
    fn send_reaches_one_client_and_refuses_when_full() {
        let config = Config {
            max_queue_bytes: 300,
            ..Config::default()
        };
        let mut c = core_with(config, Hooks::new());
        let (a, id_a) = c.register(LOCAL, -1, BodyMode::Raw).unwrap();
        let (_b, _) = c.register(LOCAL, -1, BodyMode::Raw).unwrap();
        assert_eq!(c.send(&id_a, a, "hello", b"1"), Ok(true));
        assert_eq!(c.stats().deliveries, 1);
        let big = vec![b'x'; 200];
        assert!(matches!(
            c.send(&id_a, a, "big", &big),
            Err(BrokerError::QueueFull(_))
        ));
        // Refused, not dropped: the client is still there.
        assert_eq!((c.stats().clients, c.stats().dropped_clients), (2, 0));
        let mut wrong = id_a;
        wrong[39] ^= 1;
        assert!(matches!(
            c.send(&wrong, a, "x", b"1"),
            Err(BrokerError::NotFound(_))
        ));
    }

    #[test]
    fn broadcast_store_and_end() {
        let mut c = core_with(Config::default(), Hooks::new());
        let (a, id_a) = c.register(LOCAL, -1, BodyMode::Raw).unwrap();
        let (b, id_b) = c.register(LOCAL, -1, BodyMode::Raw).unwrap();
        c.subscribe(&id_b, b, LOCAL, vec!["t".into()], None)
            .unwrap();
        assert_eq!(c.broadcast("all", b"{}"), 2);
        assert_eq!(
            c.store(&id_a, a, StoreOp::Set("k".into(), Value::from(1))),
            Ok(None)
        );
        assert_eq!(
            c.store(&id_a, a, StoreOp::Get("k".into())),
            Ok(Some(Value::from(1)))
        );
        assert_eq!(
            c.store(&id_a, a, StoreOp::Unset("k".into())),
            Ok(Some(Value::from(1)))
        );
        let info = c.client_info(&id_b, b).unwrap();
        assert_eq!(info.subscriptions, ["t"]);
        assert_eq!(info.id.as_bytes(), id_b);
        let (total, page) = c.client_page(1, 10);
        assert_eq!((total, page.len()), (2, 1));
        c.end_client(&id_a, a).unwrap();
        assert!(matches!(
            c.end_client(&id_a, a),
            Err(BrokerError::NotFound(_))
        ));
        assert_eq!(c.client_page(0, 10).0, 1);
        // Its stream still ends only after its queue is written.
        assert_eq!(c.publish(&[Message::custom("t", *b"1")]), 1);
    }

    #[test]
    fn a_skipped_pb_connect_is_counted() {
        let hooks = Hooks::new().on_message(|e| {
            if e.name() == "PB_CONNECT" {
                e.skip();
            }
        });
        let mut c = core_with(Config::default(), hooks);
        let (k, _) = c.register(LOCAL, -1, BodyMode::Raw).unwrap();
        assert_eq!(
            c.hook_message(k, "PB_CONNECT", b"{}"),
            crate::hooks::Outcome::Skip
        );
        assert_eq!(
            c.hook_message(k, "other", b"{}"),
            crate::hooks::Outcome::Deliver
        );
        assert_eq!(c.stats().hook_skipped, 1);
    }

    #[test]
    fn message_hook_skips_and_rewrites_per_client() {
        let hooks = Hooks::new().on_message(|e| {
            if e.client().get("mute").is_some() {
                e.skip();
            } else if e.name() == "t" {
                e.set_data(format!("{{\"for\":\"{}\"}}", &e.client().id()[..4]));
            }
        });
        let mut c = core_with(Config::default(), hooks);
        let (a, id_a) = c.register(LOCAL, -1, BodyMode::Raw).unwrap();
        let (b, id_b) = c.register(LOCAL, -1, BodyMode::Raw).unwrap();
        for (k, id) in [(a, id_a), (b, id_b)] {
            c.subscribe(&id, k, LOCAL, vec!["t".into()], None).unwrap();
        }
        c.store(&id_b, b, StoreOp::Set("mute".into(), Value::Bool(true)))
            .unwrap();
        assert_eq!(c.publish(&[Message::custom("t", *b"1")]), 1);
        assert_eq!(c.stats().hook_skipped, 1);
        let pieces = c.take_write(a);
        let text: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let text = String::from_utf8(text).unwrap();
        let id = std::str::from_utf8(&id_a).unwrap();
        assert_eq!(
            text,
            format!("id:{id}\nevent:t\ndata:{{\"for\":\"{}\"}}\n\n", &id[..4])
        );
    }
}
