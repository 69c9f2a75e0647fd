//! What nodes say to each other through Redis, byte for byte.
//!
//! Every payload starts with a version byte, a kind and the sender's node
//! id, so a node can skip its own publishes when Redis echoes them back and
//! refuse what a node of another version sent. Strings and data are length
//! prefixed (a message's data need not be UTF-8); the few structured values
//! (an auth record, a client snapshot, a store value) travel as JSON. Nothing
//! read from Redis is trusted: decoding checks every length and fails with an
//! error, never a panic.

use crate::auth::Auth;
use crate::core::{ClientInfo, ClientOp, CoreError, NodeId, OpReply, StoreOp};
use crate::hooks::{HookError, Reject};
use crate::message::{
    Action, Audience, CollectionRules, Message, PrivateFields, RecordEvent, RuleTexts, Target,
    UserIds,
};
use smallvec::SmallVec;
use std::net::IpAddr;
use std::sync::Arc;

const VERSION: u8 = 3;
const PUBLISH: u8 = b'P';
const REQUEST: u8 = b'Q';
const ANSWER: u8 = b'A';

/// A payload that is not what a node of this version sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a cluster message could not be read: {0}")]
pub struct Malformed(&'static str);

/// What a payload carries.
#[derive(Debug, PartialEq)]
pub enum Payload {
    Publish(Message),
    Request {
        id: u64,
        client: String,
        op: ClientOp,
    },
    Answer {
        id: u64,
        result: Result<OpReply, CoreError>,
    },
}

/// A decoded payload and the node that sent it.
#[derive(Debug, PartialEq)]
pub struct Envelope {
    pub from: NodeId,
    pub payload: Payload,
}

pub fn publish(from: NodeId, msg: &Message) -> Vec<u8> {
    let mut w = Writer::new(from, PUBLISH, 64 + msg.data.len());
    match &msg.audience {
        Audience::Public => w.u8(0),
        Audience::Superusers => w.u8(1),
        Audience::Users(ids) => {
            w.u8(2);
            let ids: Vec<&str> = ids.iter().collect();
            w.u32(ids.len() as u32);
            for id in ids {
                w.str(id);
            }
        }
    }
    match &msg.target {
        Target::Topics(topics) => {
            w.u8(0);
            w.u32(topics.len() as u32);
            for t in topics {
                w.str(t);
            }
        }
        Target::User {
            id,
            collection_id,
            event,
        } => {
            w.u8(1);
            w.str(id);
            w.opt_str(collection_id.as_deref());
            w.str(event);
        }
        Target::All { event } => {
            w.u8(2);
            w.str(event);
        }
    }
    w.bytes(&msg.data);
    match &msg.record {
        None => w.u8(0),
        Some(ev) => {
            w.u8(1);
            w.str(&ev.collection);
            w.opt_str(ev.collection_id.as_deref());
            w.str(&ev.record_id);
            w.str(ev.action.as_str());
            w.json(&ev.record);
            match &ev.rules {
                None => w.u8(0),
                Some(rules) => {
                    w.u8(1);
                    let texts = rules.texts();
                    w.opt_str(texts.list);
                    w.opt_str(texts.view);
                    w.opt_str(texts.manage);
                    w.json(&rules.schema.as_ref().map(|s| &s.source));
                }
            }
            match &ev.private {
                None => w.u8(0),
                Some(private) => {
                    w.u8(1);
                    w.json(&private.hidden);
                    w.json(&private.email);
                }
            }
        }
    }
    w.0
}

pub fn request(from: NodeId, id: u64, client: &str, op: &ClientOp) -> Vec<u8> {
    let mut w = Writer::new(from, REQUEST, 128);
    w.u64(id);
    w.str(client);
    match op {
        ClientOp::CheckRealtime { ip } => {
            w.u8(0);
            w.str(&ip.to_string());
        }
        ClientOp::SetSubscriptions {
            ip,
            subscriptions,
            auth,
            resume,
        } => {
            w.u8(1);
            w.str(&ip.to_string());
            w.u32(subscriptions.len() as u32);
            for s in subscriptions {
                w.str(s);
            }
            w.json(auth);
            w.json(resume);
        }
        ClientOp::Send { event, data } => {
            w.u8(2);
            w.str(event);
            w.bytes(data);
        }
        ClientOp::Unregister => w.u8(3),
        ClientOp::Info => w.u8(4),
        ClientOp::Store(op) => {
            w.u8(5);
            match op {
                StoreOp::Get(k) => {
                    w.u8(0);
                    w.str(k);
                }
                StoreOp::Set(k, v) => {
                    w.u8(1);
                    w.str(k);
                    w.json(v);
                }
                StoreOp::Unset(k) => {
                    w.u8(2);
                    w.str(k);
                }
            }
        }
    }
    w.0
}

pub fn answer(from: NodeId, id: u64, result: &Result<OpReply, CoreError>) -> Vec<u8> {
    let mut w = Writer::new(from, ANSWER, 64);
    w.u64(id);
    match result {
        Ok(reply) => {
            w.u8(0);
            match reply {
                OpReply::Done => w.u8(0),
                OpReply::Sent(sent) => {
                    w.u8(1);
                    w.u8(u8::from(*sent));
                }
                OpReply::Info(info) => {
                    w.u8(2);
                    w.json(info);
                }
                OpReply::Value(value) => {
                    w.u8(3);
                    w.json(value);
                }
            }
        }
        Err(e) => {
            w.u8(1);
            match e {
                CoreError::NotFound(id) => {
                    w.u8(0);
                    w.str(id);
                }
                CoreError::ForeignAddress => w.u8(1),
                CoreError::AuthChanged => w.u8(2),
                CoreError::Forbidden(topic) => {
                    w.u8(3);
                    w.str(topic);
                }
                CoreError::Hook(HookError::Rejected(r)) => {
                    w.u8(4);
                    w.u32(u32::from(r.status));
                    w.str(&r.message);
                }
                CoreError::Hook(HookError::Panicked(which)) => {
                    w.u8(5);
                    w.str(which);
                }
                CoreError::QueueFull(id) => {
                    w.u8(6);
                    w.str(id);
                }
                CoreError::TooLarge(n) => {
                    w.u8(7);
                    w.u64(*n as u64);
                }
                CoreError::Full => w.u8(8),
                CoreError::TooManyStreams => w.u8(9),
                CoreError::TooManyTopics => w.u8(10),
                CoreError::InvalidSubscription(s) => {
                    w.u8(11);
                    w.str(s);
                }
                CoreError::InvalidCursor(c) => {
                    w.u8(12);
                    w.str(&c.0);
                }
            }
        }
    }
    w.0
}

pub fn decode(bytes: &[u8]) -> Result<Envelope, Malformed> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return Err(Malformed("another version of ringcast sent it"));
    }
    let kind = r.u8()?;
    let from = NodeId::parse(r.take(4)?).ok_or(Malformed("sender"))?;
    let payload = match kind {
        PUBLISH => Payload::Publish(read_message(&mut r)?),
        REQUEST => {
            let id = r.u64()?;
            let client = r.string()?;
            Payload::Request {
                id,
                client,
                op: read_op(&mut r)?,
            }
        }
        ANSWER => Payload::Answer {
            id: r.u64()?,
            result: read_result(&mut r)?,
        },
        _ => return Err(Malformed("kind")),
    };
    if !r.0.is_empty() {
        return Err(Malformed("trailing bytes"));
    }
    Ok(Envelope { from, payload })
}

fn read_message(r: &mut Reader<'_>) -> Result<Message, Malformed> {
    let audience = match r.u8()? {
        0 => Audience::Public,
        1 => Audience::Superusers,
        2 => {
            let n = r.count()?;
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(r.string()?);
            }
            Audience::Users(UserIds::new(ids))
        }
        _ => return Err(Malformed("audience")),
    };
    let target = match r.u8()? {
        0 => {
            let n = r.count()?;
            let mut topics = SmallVec::new();
            for _ in 0..n {
                topics.push(r.string()?.into_boxed_str());
            }
            Target::Topics(topics)
        }
        1 => Target::User {
            id: r.string()?.into(),
            collection_id: r.opt_string()?.map(Into::into),
            event: r.string()?.into(),
        },
        2 => Target::All {
            event: r.string()?.into(),
        },
        _ => return Err(Malformed("target")),
    };
    let data = r.bytes()?.into();
    let record = match r.u8()? {
        0 => None,
        1 => {
            let collection = r.string()?.into();
            let collection_id = r.opt_string()?.map(Into::into);
            let record_id = r.string()?.into();
            let action = Action::from_name(&r.string()?).ok_or(Malformed("action"))?;
            let record = r.json()?;
            let rules = match r.u8()? {
                0 => None,
                1 => {
                    let (list, view, manage) = (r.opt_string()?, r.opt_string()?, r.opt_string()?);
                    let schema: Option<serde_json::Value> = r.json()?;
                    let texts = RuleTexts {
                        list: list.as_deref(),
                        view: view.as_deref(),
                        manage: manage.as_deref(),
                    };
                    Some(CollectionRules::new(texts, schema))
                }
                _ => return Err(Malformed("rules")),
            };
            let private = match r.u8()? {
                0 => None,
                1 => Some(PrivateFields {
                    hidden: r.json()?,
                    email: r.json()?,
                }),
                _ => return Err(Malformed("private")),
            };
            Some(Arc::new(RecordEvent {
                collection,
                collection_id,
                record_id,
                action,
                record,
                rules,
                private,
            }))
        }
        _ => return Err(Malformed("record")),
    };
    Ok(Message {
        target,
        data,
        audience,
        record,
    })
}

fn read_op(r: &mut Reader<'_>) -> Result<ClientOp, Malformed> {
    Ok(match r.u8()? {
        0 => ClientOp::CheckRealtime { ip: r.ip()? },
        1 => {
            let ip = r.ip()?;
            let n = r.count()?;
            let mut subscriptions = Vec::with_capacity(n);
            for _ in 0..n {
                subscriptions.push(r.string()?);
            }
            let auth: Option<Auth> = r.json()?;
            ClientOp::SetSubscriptions {
                ip,
                subscriptions,
                auth,
                resume: r.json()?,
            }
        }
        2 => ClientOp::Send {
            event: r.string()?,
            data: r.bytes()?.to_vec(),
        },
        3 => ClientOp::Unregister,
        4 => ClientOp::Info,
        5 => ClientOp::Store(match r.u8()? {
            0 => StoreOp::Get(r.string()?),
            1 => StoreOp::Set(r.string()?, r.json()?),
            2 => StoreOp::Unset(r.string()?),
            _ => return Err(Malformed("store operation")),
        }),
        _ => return Err(Malformed("operation")),
    })
}

fn read_result(r: &mut Reader<'_>) -> Result<Result<OpReply, CoreError>, Malformed> {
    Ok(match r.u8()? {
        0 => Ok(match r.u8()? {
            0 => OpReply::Done,
            1 => OpReply::Sent(r.u8()? != 0),
            2 => OpReply::Info(Box::new(r.json::<ClientInfo>()?)),
            3 => OpReply::Value(r.json()?),
            _ => return Err(Malformed("reply")),
        }),
        1 => Err(match r.u8()? {
            0 => CoreError::NotFound(r.string()?),
            1 => CoreError::ForeignAddress,
            2 => CoreError::AuthChanged,
            3 => CoreError::Forbidden(r.string()?),
            4 => {
                let status = u16::try_from(r.u32()?).map_err(|_| Malformed("status"))?;
                CoreError::Hook(HookError::Rejected(Reject::new(status, r.string()?)))
            }
            5 => CoreError::Hook(HookError::Panicked(match r.string()?.as_str() {
                "connect" => "connect",
                _ => "subscribe",
            })),
            6 => CoreError::QueueFull(r.string()?),
            7 => CoreError::TooLarge(usize::try_from(r.u64()?).map_err(|_| Malformed("size"))?),
            8 => CoreError::Full,
            9 => CoreError::TooManyStreams,
            10 => CoreError::TooManyTopics,
            11 => CoreError::InvalidSubscription(r.string()?),
            12 => CoreError::InvalidCursor(crate::core::history::InvalidCursor(r.string()?)),
            _ => return Err(Malformed("error")),
        }),
        _ => return Err(Malformed("result")),
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(from: NodeId, kind: u8, capacity: usize) -> Writer {
        let mut out = Vec::with_capacity(capacity);
        out.push(VERSION);
        out.push(kind);
        out.extend_from_slice(from.as_str().as_bytes());
        Writer(out)
    }

    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }

    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.str(v);
            }
        }
    }

    fn json(&mut self, v: &impl serde::Serialize) {
        // Values made of JSON, auth records and snapshots always serialise.
        let json = serde_json::to_vec(v).unwrap_or_default();
        self.bytes(&json);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed("cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A count of items, each at least 4 bytes long: no larger than what is
    /// left could hold, so a forged count cannot make us reserve gigabytes.
    fn count(&mut self) -> Result<usize, Malformed> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 4 {
            return Err(Malformed("count"));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, Malformed> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| Malformed("text"))
    }

    fn opt_string(&mut self) -> Result<Option<String>, Malformed> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            _ => Err(Malformed("option")),
        }
    }

    fn ip(&mut self) -> Result<IpAddr, Malformed> {
        self.string()?.parse().map_err(|_| Malformed("address"))
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Malformed> {
        serde_json::from_slice(self.bytes()?).map_err(|_| Malformed("JSON value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(bytes: Vec<u8>) -> Envelope {
        let node = NodeId::parse(&bytes[2..6]).unwrap();
        let env = decode(&bytes).unwrap();
        assert_eq!(env.from, node);
        // Every strict prefix is refused, not misread.
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "prefix {cut} decoded");
        }
        env
    }

    #[test]
    fn messages_round_trip() {
        let node = NodeId::random();
        for msg in [
            Message::custom("chat", *b"\xff not utf-8"),
            Message::record("posts", Some("pbc_1"), Action::Update, "r1", b"{}")
                .for_audience(Audience::Users(UserIds::new(["u2", "u1"]))),
            Message::to_user("u1", Some("users"), "inbox", *b"1")
                .for_audience(Audience::Superusers),
            Message::broadcast("all", *b"{}"),
            {
                let mut m = Message::record("notes", None, Action::Delete, "n1", br#"{"id":"n1"}"#);
                let ev = Arc::get_mut(m.record.as_mut().unwrap()).unwrap();
                let texts = RuleTexts {
                    list: Some("owner = @request.auth.id"),
                    manage: Some(""),
                    ..RuleTexts::default()
                };
                ev.rules = Some(CollectionRules::new(
                    texts,
                    Some(serde_json::json!({"fields": [{"name": "owner", "type": "text"}]})),
                ));
                ev.private = Some(PrivateFields {
                    hidden: serde_json::from_str(r#"{"secret":1}"#).unwrap(),
                    email: Some("a@b.c".into()),
                });
                m
            },
        ] {
            let env = round_trip(publish(node, &msg));
            assert_eq!(env.payload, Payload::Publish(msg));
        }
    }

    #[test]
    fn requests_and_answers_round_trip() {
        let node = NodeId::random();
        let ops = [
            ClientOp::CheckRealtime {
                ip: "127.0.0.1".parse().unwrap(),
            },
            ClientOp::SetSubscriptions {
                ip: "::1".parse().unwrap(),
                subscriptions: vec!["a".into(), "b?x".into()],
                auth: Some(Auth {
                    id: "u".into(),
                    collection_id: "c".into(),
                    collection_name: "users".into(),
                    superuser: false,
                    record: None,
                }),
                resume: Some("1:2".into()),
            },
            ClientOp::Send {
                event: "e".into(),
                data: vec![0, 1, 2],
            },
            ClientOp::Unregister,
            ClientOp::Info,
            ClientOp::Store(StoreOp::Set("k".into(), serde_json::json!({"a": [1]}))),
        ];
        for op in ops {
            let env = round_trip(request(node, 7, "client", &op));
            assert_eq!(
                env.payload,
                Payload::Request {
                    id: 7,
                    client: "client".into(),
                    op
                }
            );
        }
        let results = [
            Ok(OpReply::Sent(true)),
            Ok(OpReply::Value(Some(serde_json::json!(1)))),
            Err(CoreError::NotFound("x".into())),
            Err(CoreError::Hook(HookError::Rejected(Reject::new(403, "no")))),
            Err(CoreError::TooLarge(5)),
        ];
        for result in results {
            let env = round_trip(answer(node, 9, &result));
            assert_eq!(env.payload, Payload::Answer { id: 9, result });
        }
    }

    #[test]
    fn forged_counts_are_refused() {
        let node = NodeId::random();
        let mut bytes = publish(node, &Message::custom("t", *b"1"));
        // The topic count sits after the audience and target kinds.
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&bytes).is_err());
        assert!(decode(b"\x02P1234").is_err(), "another version");
    }
}
