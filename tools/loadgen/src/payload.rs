//! What goes into a published message and how it is read back from an event, plus the clock used for
//! latency.
//!
//! The publish request (path, headers, body) is a template so the same tool can drive ringcast
//! (`POST /api/publish`), the baseline, and PocketBase's `notify.pb.js` hook (`POST /api/notify`). The
//! receiver does **not** JSON-parse event data: it looks for the members `"seq":<int>` and `"ts":<int>`
//! anywhere in the `data:` line, because
//! * parsing 1M JSON documents per run would make the tool a noticeable cost next to the server, and
//! * servers may re-serialise the data (PocketBase's JS hook does `JSON.stringify(body.data)`, which may
//!   reorder keys and turns a nanosecond timestamp into a float64: `ts` then comes back rounded to a
//!   multiple of 256 ns, or even as `1.7639e+18`-style text; both are accepted).

use std::fmt::Write as _;

use anyhow::{Context, bail};

/// Clock whose nanoseconds go into `{ts_ns}`; publisher and receivers are the same process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// CLOCK_MONOTONIC: immune to clock steps; small numbers (exact even through float64 for ~104 days
    /// of uptime).
    Monotonic,
    /// CLOCK_REALTIME: comparable with timestamps taken by other processes on this machine.
    Realtime,
}

impl Clock {
    #[inline]
    pub fn now_ns(self) -> u64 {
        let id = match self {
            Clock::Monotonic => libc::CLOCK_MONOTONIC,
            Clock::Realtime => libc::CLOCK_REALTIME,
        };
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid clock id and a valid pointer to a timespec.
        unsafe { libc::clock_gettime(id, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

/// Monotonic nanoseconds (the run's internal time base, independent of `--clock`).
#[inline]
pub fn mono_ns() -> u64 {
    Clock::Monotonic.now_ns()
}

/// Values substituted into a template for one message.
pub struct Vars<'a> {
    pub topic: &'a str,
    pub seq: u64,
    pub ts_ns: u64,
    pub pad: &'a str,
    /// Global publish index over all topics.
    pub index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Topic,
    Seq,
    Ts,
    Pad,
    Index,
}

/// A pre-split template: placeholders `{topic}`, `{seq}`, `{ts_ns}` (alias `{ts}`), `{pad}`, `{index}`;
/// every other character, braces included, is literal (so JSON needs no escaping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(src: &str) -> Template {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        while !rest.is_empty() {
            let placeholder = [
                ("{topic}", Part::Topic),
                ("{seq}", Part::Seq),
                ("{ts_ns}", Part::Ts),
                ("{ts}", Part::Ts),
                ("{pad}", Part::Pad),
                ("{index}", Part::Index),
            ]
            .into_iter()
            .find(|(p, _)| rest.starts_with(p));
            match placeholder {
                Some((p, part)) => {
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(part);
                    rest = &rest[p.len()..];
                }
                None => {
                    let c = rest.chars().next().expect("non-empty");
                    lit.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Template { parts }
    }

    pub fn uses_seq(&self) -> bool {
        self.parts.contains(&Part::Seq)
    }

    pub fn uses_ts(&self) -> bool {
        self.parts.contains(&Part::Ts)
    }

    pub fn render_into(&self, out: &mut String, v: &Vars<'_>) {
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Topic => out.push_str(v.topic),
                Part::Seq => {
                    let _ = write!(out, "{}", v.seq);
                }
                Part::Ts => {
                    let _ = write!(out, "{}", v.ts_ns);
                }
                Part::Pad => out.push_str(v.pad),
                Part::Index => {
                    let _ = write!(out, "{}", v.index);
                }
            }
        }
    }
}

/// A header template `Name: value-template`.
#[derive(Debug, Clone)]
pub struct HeaderTemplate {
    pub name: String,
    pub value: Template,
}

impl HeaderTemplate {
    pub fn parse(s: &str) -> anyhow::Result<HeaderTemplate> {
        let (name, value) = s
            .split_once(':')
            .with_context(|| format!("header {s:?} is not `Name: value`"))?;
        let name = name.trim();
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == b':' || b >= 0x7f) {
            bail!("invalid header name in {s:?}");
        }
        if value.contains(['\r', '\n']) {
            bail!("header value in {s:?} contains a line break");
        }
        Ok(HeaderTemplate {
            name: name.to_string(),
            value: Template::parse(value.trim()),
        })
    }
}

/// `seq` and `ts` read back from an event's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub seq: Option<u64>,
    pub ts: Option<u64>,
}

/// Finds `"seq":N` and `"ts":N` in JSON text without parsing it (see the module docs).
#[inline]
pub fn extract(data: &[u8]) -> Stamp {
    Stamp {
        seq: member_u64(data, b"\"seq\""),
        ts: member_u64(data, b"\"ts\""),
    }
}

/// Value of the first member `key` (quoted, as in the JSON text) whose value is a number or a string of
/// digits. Floats (`1.76e18`) are accepted and truncated.
pub fn member_u64(data: &[u8], key: &[u8]) -> Option<u64> {
    let mut from = 0;
    while let Some(pos) = memchr::memmem::find(&data[from..], key) {
        let mut i = from + pos + key.len();
        from = i;
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        if data.get(i) != Some(&b':') {
            continue; // the key text appeared as a value, keep looking
        }
        i += 1;
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        let quoted = data.get(i) == Some(&b'"');
        if quoted {
            i += 1;
        }
        let start = i;
        let mut v: u64 = 0;
        while i < data.len() && data[i].is_ascii_digit() {
            v = v.checked_mul(10)?.checked_add(u64::from(data[i] - b'0'))?;
            i += 1;
        }
        if i == start {
            return None;
        }
        if matches!(data.get(i), Some(b'.' | b'e' | b'E')) {
            let end = data[i..]
                .iter()
                .position(|b| {
                    !(b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
                })
                .map_or(data.len(), |p| i + p);
            let f: f64 = std::str::from_utf8(&data[start..end]).ok()?.parse().ok()?;
            if !(0.0..1.8e19).contains(&f) {
                return None;
            }
            return Some(f as u64);
        }
        return Some(v);
    }
    None
}

/// Escapes a string for inclusion in a JSON string literal (topic names in request bodies).
pub fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).expect("a string always serialises");
    quoted[1..quoted.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_render() {
        let t = Template::parse(
            r#"{"topic":"{topic}","data":{"seq":{seq},"ts":{ts_ns},"pad":"{pad}","i":{index},"b":"{x}"}}"#,
        );
        let mut s = String::new();
        t.render_into(
            &mut s,
            &Vars {
                topic: "t1",
                seq: 7,
                ts_ns: 99,
                pad: "xx",
                index: 3,
            },
        );
        assert_eq!(
            s,
            r#"{"topic":"t1","data":{"seq":7,"ts":99,"pad":"xx","i":3,"b":"{x}"}}"#
        );
        assert!(t.uses_seq() && t.uses_ts());
        assert!(!Template::parse("{ts}").uses_seq());
    }

    #[test]
    fn extract_members() {
        assert_eq!(
            extract(br#"{"seq":12,"ts":1763900000123456800,"pad":"xx"}"#),
            Stamp {
                seq: Some(12),
                ts: Some(1763900000123456800)
            }
        );
        // other order, spaces, quoted numbers
        assert_eq!(
            extract(br#"{ "pad" : "seq", "ts" : "5", "seq" : 3 }"#),
            Stamp {
                seq: Some(3),
                ts: Some(5)
            }
        );
        // float rendering from a JS number
        assert_eq!(
            extract(br#"{"ts":1.7639e+18,"seq":1}"#).ts,
            Some(1_763_900_000_000_000_000)
        );
        assert_eq!(extract(br#"{"x":1}"#), Stamp::default());
        assert_eq!(extract(br#"{"seq":"abc"}"#).seq, None);
        assert_eq!(extract(br#"{"seq":-1}"#).seq, None);
    }

    #[test]
    fn header_template() {
        let h = HeaderTemplate::parse("Authorization: Bearer abc{seq}").unwrap();
        assert_eq!(h.name, "Authorization");
        let mut s = String::new();
        h.value.render_into(
            &mut s,
            &Vars {
                topic: "",
                seq: 1,
                ts_ns: 0,
                pad: "",
                index: 0,
            },
        );
        assert_eq!(s, "Bearer abc1");
        assert!(HeaderTemplate::parse("nocolon").is_err());
    }

    #[test]
    fn clocks_move() {
        let a = Clock::Monotonic.now_ns();
        let b = Clock::Monotonic.now_ns();
        assert!(b >= a);
        assert!(Clock::Realtime.now_ns() > 1_600_000_000_000_000_000);
    }
}
