//! `POST /api/realtime`: decoding and validating a subscription request.
//!
//! PocketBase's binder is lenient and we copy it exactly: the body is read by
//! `Content-Type` prefix (JSON, urlencoded form, multipart form, XML), JSON
//! keys match case-insensitively, bytes after the first JSON value are ignored,
//! and an empty body skips decoding (so it fails validation instead). Decode
//! failures answer with empty `data`; validation failures list every failing
//! field. Limits count UTF-8 bytes. Applying the request to a client happens on
//! the client's owner core (`Core::set_subscriptions`).

use super::caller::Caller;
use super::validation::{self, MAX_TOPIC_BYTES};
use crate::auth::VerifyError;
use crate::core::AuthOutcome;
use crate::frame;
use crate::http::error::{ApiError, SOMETHING_WENT_WRONG};
use crate::http::request::Head;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

pub const MAX_CLIENT_ID_BYTES: usize = 255;
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// The largest subscription request body read. The largest valid request as
/// the SDK sends it (JSON: a 255-byte id and 1,000 topics of 2,500 bytes) is
/// about 2.5 MB; PocketBase reads up to 32 MiB whatever the route.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Answers `POST /api/realtime`: decoded and validated here, applied on the
/// client's owner core through the broker.
pub async fn handle(caller: &Caller<'_>, head: &Head, body: Vec<u8>) -> Result<(), ApiError> {
    let content_type = head.content_type.clone();
    let form =
        super::offload::decode(body, move |b| decode_form(content_type.as_deref(), b)).await?;
    let (broker, ip) = (caller.broker, caller.client_ip);
    let asks = head.authorization.is_some() && caller.verifier.asks_pocketbase();
    // The cheap checks first, so that made-up ids cannot make us ask
    // PocketBase, and one address cannot keep many questions in flight.
    let _in_flight = if asks {
        broker.check_realtime_client(&form.client_id, ip).await?;
        let started = caller.token_checks.start(ip);
        if started.is_err() {
            broker.note_auth(AuthOutcome::Busy);
        }
        Some(started?)
    } else {
        None
    };
    let auth = caller.verifier.verify(head.authorization.as_deref()).await;
    broker.note_auth(match &auth {
        Ok(Some(_)) => AuthOutcome::Verified,
        Ok(None) => AuthOutcome::Guest,
        Err(VerifyError::Busy) => AuthOutcome::Busy,
        Err(VerifyError::Unavailable) => AuthOutcome::Unavailable,
    });
    let auth = auth?;
    broker
        .set_subscriptions(
            &form.client_id,
            ip,
            form.subscriptions,
            auth,
            head.last_event_id.clone(),
        )
        .await?;
    Ok(())
}

/// A decoded (not yet validated) request.
#[derive(Debug, Default, PartialEq)]
pub struct SubscribeForm {
    pub client_id: String,
    pub subscriptions: Vec<String>,
}

/// Decodes and validates a request body; on success the subscriptions are
/// de-duplicated (first occurrence kept) with empty strings removed.
pub fn decode_form(content_type: Option<&str>, body: &[u8]) -> Result<SubscribeForm, ApiError> {
    let mut form = if body.is_empty() {
        SubscribeForm::default()
    } else {
        decode(content_type.unwrap_or(""), body).ok_or_else(decode_error)?
    };
    validate(&form)?;
    let mut seen = ahash::AHashSet::with_capacity(form.subscriptions.len());
    form.subscriptions
        .retain(|s| !s.is_empty() && seen.insert(s.clone()));
    Ok(form)
}

fn decode_error() -> ApiError {
    ApiError::bad_request(SOMETHING_WENT_WRONG)
}

fn decode(content_type: &str, body: &[u8]) -> Option<SubscribeForm> {
    // Matched by prefix and case-sensitively, as PocketBase does
    // (`Application/JSON` is refused).
    let ct = content_type;
    if ct.starts_with("application/json") {
        decode_json(body)
    } else if ct.starts_with("application/x-www-form-urlencoded") {
        Some(from_fields(
            form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())),
        ))
    } else if ct.starts_with("multipart/form-data") {
        let boundary = multipart_boundary(content_type)?;
        Some(from_fields(multipart_fields(body, &boundary)?.into_iter()))
    } else if ct.starts_with("application/xml") || ct.starts_with("text/xml") {
        Some(from_fields(xml_fields(body)?.into_iter()))
    } else {
        None
    }
}

/// JSON: the first value must be an object (bytes after it are ignored).
/// Decoded straight into the form, as Go's `encoding/json` binds it into
/// PocketBase's struct: keys match case-insensitively and each occurrence
/// assigns (the last wins), `null` leaves `clientId` as it was and clears
/// `subscriptions`, a value of the wrong type fails the whole decode. No
/// JSON tree is built: other keys are skipped without allocating, and only
/// the first [`MAX_SUBSCRIPTIONS`] + 1 topics are kept (enough to fail
/// validation) while the rest are still type-checked.
fn decode_json(body: &[u8]) -> Option<SubscribeForm> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<SubscribeForm>()
        .next()?
        .ok()
}

impl<'de> Deserialize<'de> for SubscribeForm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FormVisitor)
    }
}

struct FormVisitor;

impl<'de> Visitor<'de> for FormVisitor {
    type Value = SubscribeForm;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SubscribeForm, A::Error> {
        let mut form = SubscribeForm::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::ClientId => {
                    if let Some(id) = map.next_value::<Option<String>>()? {
                        form.client_id = id;
                    }
                }
                Key::Subscriptions => {
                    form.subscriptions = map
                        .next_value::<Option<Topics>>()?
                        .map_or_else(Vec::new, |t| t.0);
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(form)
    }
}

/// A key of the form, matched without allocating.
enum Key {
    ClientId,
    Subscriptions,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(if key.eq_ignore_ascii_case("clientId") {
                    Key::ClientId
                } else if key.eq_ignore_ascii_case("subscriptions") {
                    Key::Subscriptions
                } else {
                    Key::Other
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// The `subscriptions` array: strings (`null` entries count as empty ones).
struct Topics(Vec<String>);

impl<'de> Deserialize<'de> for Topics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TopicsVisitor;
        impl<'de> Visitor<'de> for TopicsVisitor {
            type Value = Topics;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Topics, S::Error> {
                let mut kept = Vec::new();
                while kept.len() <= MAX_SUBSCRIPTIONS {
                    match seq.next_element::<Option<String>>()? {
                        Some(topic) => kept.push(topic.unwrap_or_default()),
                        None => return Ok(Topics(kept)),
                    }
                }
                // Too many already: check the rest's types without keeping them.
                while seq.next_element::<Option<StrOnly>>()?.is_some() {}
                Ok(Topics(kept))
            }
        }
        d.deserialize_seq(TopicsVisitor)
    }
}

/// A string, checked and dropped.
struct StrOnly;

impl<'de> Deserialize<'de> for StrOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl Visitor<'_> for StrVisitor {
            type Value = StrOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<StrOnly, E> {
                Ok(StrOnly)
            }
        }
        d.deserialize_str(StrVisitor)
    }
}

/// Form-like bodies: `clientId` once, `subscriptions` repeated.
/// Like JSON, only the first [`MAX_SUBSCRIPTIONS`] + 1 topics are kept.
fn from_fields(fields: impl Iterator<Item = (String, String)>) -> SubscribeForm {
    let mut form = SubscribeForm::default();
    for (name, value) in fields {
        if name.eq_ignore_ascii_case("clientId") {
            form.client_id = value;
        } else if name.eq_ignore_ascii_case("subscriptions")
            && form.subscriptions.len() <= MAX_SUBSCRIPTIONS
        {
            form.subscriptions.push(value);
        }
    }
    form
}

fn multipart_boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The text fields of a `multipart/form-data` body (RFC 7578).
fn multipart_fields(body: &[u8], boundary: &str) -> Option<Vec<(String, String)>> {
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    let mut parts = split_bytes(body, delimiter.as_bytes()).skip(1);
    for part in parts.by_ref() {
        if part.starts_with(b"--") {
            return Some(fields);
        }
        let part = part.strip_prefix(b"\r\n")?;
        let end = memchr::memmem::find(part, b"\r\n\r\n")?;
        let headers = String::from_utf8_lossy(&part[..end]);
        let value = part[end + 4..].strip_suffix(b"\r\n")?;
        let name = headers.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            v.split(';').find_map(|p| {
                let (pk, pv) = p.trim().split_once('=')?;
                (pk == "name").then(|| pv.trim_matches('"').to_owned())
            })
        })?;
        fields.push((name, String::from_utf8(value.to_vec()).ok()?));
    }
    None
}

fn split_bytes<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(hay);
    std::iter::from_fn(move || {
        let r = rest?;
        // Two-way search: linear whatever the boundary (a boundary of
        // thousands of bytes must not make a body cost their product).
        match memchr::memmem::find(r, needle) {
            Some(i) => {
                rest = Some(&r[i + needle.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// XML as Go's `encoding/xml` binds it into PocketBase's form: `<ClientId>` and
/// repeated `<Subscriptions>` directly under any root element.
/// The deepest XML nesting decoded.
const MAX_XML_DEPTH: usize = 10_000;

fn xml_fields(body: &[u8]) -> Option<Vec<(String, String)>> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<(String, String)> = None;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                depth += 1;
                // Go's encoding/xml refuses documents nested deeper than this.
                if depth > MAX_XML_DEPTH {
                    return None;
                }
                if depth == 2 {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    let key = match name.as_str() {
                        "ClientId" => "clientId",
                        "Subscriptions" => "subscriptions",
                        _ => "",
                    };
                    current = Some((key.to_owned(), String::new()));
                }
            }
            Event::Empty(e) if depth == 1 && e.name().as_ref() == b"Subscriptions" => {
                fields.push(("subscriptions".to_owned(), String::new()));
            }
            Event::Text(t) => {
                if let (2, Some((_, text))) = (depth, current.as_mut()) {
                    text.push_str(&t.unescape().ok()?);
                }
            }
            Event::CData(t) => {
                if let (2, Some((_, text))) = (depth, current.as_mut()) {
                    text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    if let Some((k, v)) = current.take().filter(|(k, _)| !k.is_empty()) {
                        fields.push((k, v));
                    }
                }
                depth = depth.checked_sub(1)?;
            }
            Event::Eof => return (depth == 0).then_some(fields),
            _ => {}
        }
    }
}

fn validate(form: &SubscribeForm) -> Result<(), ApiError> {
    let mut data = Map::new();
    if form.client_id.is_empty() {
        data.insert("clientId".into(), validation::required());
    } else if form.client_id.len() > MAX_CLIENT_ID_BYTES {
        data.insert(
            "clientId".into(),
            validation::out_of_range(1, MAX_CLIENT_ID_BYTES),
        );
    }
    if form.subscriptions.len() > MAX_SUBSCRIPTIONS {
        data.insert(
            "subscriptions".into(),
            validation::too_long(MAX_SUBSCRIPTIONS),
        );
    } else {
        // PocketBase's length check, and one of ours: a subscription names
        // its events (`event:<subscription>`), so a line break in it would
        // forge SSE fields on the client's stream (PocketBase writes it).
        let invalid: Map<String, Value> = form
            .subscriptions
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let error = if s.len() > MAX_TOPIC_BYTES {
                    validation::too_long(MAX_TOPIC_BYTES)
                } else if !frame::is_valid_name(s) {
                    validation::line_breaks()
                } else {
                    return None;
                };
                Some((i.to_string(), error))
            })
            .collect();
        if !invalid.is_empty() {
            data.insert("subscriptions".into(), Value::Object(invalid));
        }
    }
    if data.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(validation::sorted(data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json");
    const FORM: &str = "application/x-www-form-urlencoded";

    fn ok(ct: Option<&str>, body: &str) -> SubscribeForm {
        decode_form(ct, body.as_bytes()).unwrap()
    }

    fn err(ct: Option<&str>, body: &[u8]) -> String {
        String::from_utf8(decode_form(ct, body).unwrap_err().body()).unwrap()
    }

    const GENERIC: &str = r#"{"data":{},"message":"Something went wrong while processing your request.","status":400}"#;
    const BLANK: &str = r#"{"data":{"clientId":{"code":"validation_required","message":"Cannot be blank."}},"message":"Something went wrong while processing your request.","status":400}"#;

    #[test]
    fn lenient_json() {
        let f = ok(
            JSON,
            r#"{"CLIENTID":"abc","Subscriptions":["a","b","a",""],"x":1} trailing"#,
        );
        assert_eq!(f.client_id, "abc");
        assert_eq!(f.subscriptions, ["a", "b"]);
        assert_eq!(
            ok(
                Some("application/json; charset=utf-8"),
                r#"{"clientId":"a","subscriptions":null}"#
            )
            .subscriptions,
            Vec::<String>::new()
        );
    }

    #[test]
    fn decode_errors_have_empty_data() {
        for body in [
            &b"{"[..],
            b"not json",
            b"[1]",
            br#"{"clientId":1}"#,
            br#"{"clientId":"a","subscriptions":"x"}"#,
            br#"{"clientId":"a","subscriptions":[1]}"#,
        ] {
            assert_eq!(
                err(JSON, body),
                GENERIC,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(err(Some("text/plain"), b"{}"), GENERIC);
        assert_eq!(err(None, br#"{"clientId":"a"}"#), GENERIC);
    }

    #[test]
    fn line_breaks_in_a_subscription_are_refused() {
        // Found by fuzz/subscribe_body: it would name the client's events.
        assert_eq!(
            err(
                JSON,
                br#"{"clientId":"a","subscriptions":["ok","chat\r\nevent:forged"]}"#
            ),
            r#"{"data":{"subscriptions":{"1":{"code":"validation_invalid_format","message":"Must not contain line breaks."}}},"message":"Something went wrong while processing your request.","status":400}"#
        );
    }

    #[test]
    fn empty_body_fails_validation_whatever_the_type() {
        assert_eq!(err(None, b""), BLANK);
        assert_eq!(err(JSON, b""), BLANK);
        assert_eq!(err(JSON, b"{}"), BLANK);
        assert_eq!(err(JSON, br#"{"clientId":""}"#), BLANK);
    }

    #[test]
    fn limits_count_bytes() {
        let id = "é".repeat(128);
        let body = format!(r#"{{"clientId":"{id}"}}"#);
        assert!(err(JSON, body.as_bytes()).contains("validation_length_out_of_range"));
        let topic = "é".repeat(1250);
        ok(
            JSON,
            &format!(r#"{{"clientId":"a","subscriptions":["{topic}"]}}"#),
        );
        let body = format!(r#"{{"clientId":"a","subscriptions":["x","{topic}a"]}}"#);
        assert!(
            err(JSON, body.as_bytes())
                .contains(r#""subscriptions":{"1":{"code":"validation_length_too_long""#)
        );
    }

    #[test]
    fn count_error_wins_over_topic_errors_and_both_fields_are_reported() {
        let mut subs: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
        subs[0] = "x".repeat(2501);
        let body = serde_json::json!({"clientId": "a", "subscriptions": subs}).to_string();
        assert_eq!(
            err(JSON, body.as_bytes()),
            r#"{"data":{"subscriptions":{"code":"validation_length_too_long","message":"The length must be no more than 1000.","params":{"max":1000,"min":0}}},"message":"Something went wrong while processing your request.","status":400}"#
        );
        let body = serde_json::json!({"subscriptions": ["x".repeat(2501)]}).to_string();
        let e = err(JSON, body.as_bytes());
        assert!(
            e.starts_with(r#"{"data":{"clientId":{"code":"validation_required""#),
            "{e}"
        );
        assert!(e.contains(r#""subscriptions":{"0":"#));
    }

    #[test]
    fn form_bodies() {
        let f = ok(
            Some("application/x-www-form-urlencoded"),
            "clientId=abc&subscriptions=a&subscriptions=b%3Fx",
        );
        assert_eq!(
            f,
            SubscribeForm {
                client_id: "abc".into(),
                subscriptions: vec!["a".into(), "b?x".into()]
            }
        );
        let body = "--XX\r\nContent-Disposition: form-data; name=\"clientId\"\r\n\r\nabc\r\n--XX\r\nContent-Disposition: form-data; name=\"subscriptions\"\r\n\r\nt1\r\n--XX--\r\n";
        let f = ok(Some("multipart/form-data; boundary=XX"), body);
        assert_eq!(f.subscriptions, ["t1"]);
        assert_eq!(f.client_id, "abc");
        let f = ok(
            Some("application/xml"),
            "<r><ClientId>abc</ClientId><Subscriptions>a</Subscriptions><Subscriptions>b</Subscriptions></r>",
        );
        assert_eq!(f.subscriptions, ["a", "b"]);
    }

    #[test]
    fn json_is_bound_like_go_binds_it() {
        // Each matching key assigns; the last one wins; null leaves clientId be.
        let f = ok(JSON, r#"{"clientId":"a","CLIENTID":"b","clientid":null}"#);
        assert_eq!(f.client_id, "b");
        let f = ok(
            JSON,
            r#"{"clientId":"a","subscriptions":["x"],"SUBSCRIPTIONS":null}"#,
        );
        assert!(f.subscriptions.is_empty());
        // A wrong type anywhere in the list fails the decode, even past the
        // topics that are kept.
        let mut many: Vec<String> = (0..1500).map(|i| format!("\"t{i}\"")).collect();
        many.push("1".into());
        let body = format!(r#"{{"clientId":"a","subscriptions":[{}]}}"#, many.join(","));
        assert_eq!(err(JSON, body.as_bytes()), GENERIC);
    }

    #[test]
    fn hostile_json_costs_little() {
        // A huge array of numbers: a type error at its first element.
        let zeros = format!(r#"{{"subscriptions":[{}0]}}"#, "0,".repeat(1 << 20));
        assert_eq!(err(JSON, zeros.as_bytes()), GENERIC);
        // A huge array of nulls is counted, not kept.
        let nulls = format!(
            r#"{{"clientId":"a","subscriptions":[{}null]}}"#,
            "null,".repeat(1 << 20)
        );
        assert!(err(JSON, nulls.as_bytes()).contains("The length must be no more than 1000."));
        // Deep nesting in an ignored field stops at serde_json's recursion limit.
        let deep = format!(r#"{{"x":{}}}"#, "[".repeat(100_000));
        assert_eq!(err(JSON, deep.as_bytes()), GENERIC);
        // Form bodies keep at most the topics validation needs to see.
        let form = format!("clientId=a{}", "&subscriptions=x".repeat(100_000));
        let decoded = decode(FORM, form.as_bytes()).unwrap();
        assert_eq!(decoded.subscriptions.len(), MAX_SUBSCRIPTIONS + 1);
    }

    #[test]
    fn a_long_multipart_boundary_costs_linear_time() {
        let boundary = "b".repeat(60_000);
        let mut body = Vec::new();
        for _ in 0..60 {
            body.extend_from_slice(b"--");
            body.extend_from_slice(&boundary.as_bytes()[..59_999]);
            body.extend_from_slice(b"x\r\n");
        }
        let ct = format!("multipart/form-data; boundary={boundary}");
        // A search costing body × boundary would not finish here (≈ 2·10¹¹ steps).
        assert_eq!(err(Some(&ct), &body), GENERIC);
    }
}
