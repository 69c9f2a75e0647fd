//! The `options` query parameter of a subscription, as PocketBase's
//! `subscriptions.DefaultClient.Subscribe` reads it: `topic?options=<url-encoded JSON>` with
//! `{"query": {...}, "headers": {...}}`, values converted to strings.

use std::collections::BTreeMap;

use serde_json::Value;

/// Why a subscription's options cannot be read. PocketBase itself ignores broken options (the
/// subscription then has none); the caller decides whether to do the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("the options parameter is not valid JSON: {0}")]
    Json(String),
    #[error("the options are not a JSON object")]
    NotAnObject,
    #[error("options.{0} is not a JSON object")]
    NotAMap(&'static str),
}

/// A subscription's topic and options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// The subscription without its query string, e.g. `posts/*`.
    pub topic: String,
    /// `query.filter`, if set and not empty.
    pub filter: Option<String>,
    /// `query.fields`, if set and not empty.
    pub fields: Option<String>,
    /// Every `query` entry, values as PocketBase's `cast.ToString` renders them.
    pub query: BTreeMap<String, String>,
    /// Every `headers` entry, names snake_cased as PocketBase does (`X-Token` → `x_token`).
    pub headers: BTreeMap<String, String>,
}

impl SubscriptionOptions {
    /// Reads `topic?options=…`; a subscription without `options` has empty options.
    pub fn parse(subscription: &str) -> Result<SubscriptionOptions, OptionsError> {
        let (topic, query) = match subscription.split_once('?') {
            Some((t, q)) => (t, q),
            None => (subscription, ""),
        };
        let mut out = SubscriptionOptions {
            topic: topic.to_owned(),
            ..Default::default()
        };
        // url.Values.Get: the first `options` parameter
        let Some(raw) = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "options")
            .map(|(_, v)| v.into_owned())
        else {
            return Ok(out);
        };
        if raw.is_empty() {
            return Ok(out);
        }
        let parsed: Value =
            serde_json::from_str(&raw).map_err(|e| OptionsError::Json(e.to_string()))?;
        let Value::Object(obj) = parsed else {
            return Err(OptionsError::NotAnObject);
        };
        for (key, name) in [("query", "query"), ("headers", "headers")] {
            match obj.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    for (k, v) in m {
                        let v = go_to_string(v);
                        if key == "query" {
                            out.query.insert(k.clone(), v);
                        } else {
                            out.headers.insert(snake_case(k), v);
                        }
                    }
                }
                Some(_) => return Err(OptionsError::NotAMap(name)),
            }
        }
        out.filter = out.query.get("filter").filter(|f| !f.is_empty()).cloned();
        out.fields = out.query.get("fields").filter(|f| !f.is_empty()).cloned();
        Ok(out)
    }
}

/// `cast.ToString` of a decoded JSON value: strings as they are, numbers and booleans
/// printed, anything else empty.
fn go_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => n.as_f64().map(|f| format!("{f}")).unwrap_or_default(),
        },
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// `inflector.Snakecase`: non-word runs become `_`, camelCase splits, all lower case.
fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut prev_lower_or_digit = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower_or_digit && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower_or_digit = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_lowercase());
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower_or_digit = false;
        }
    }
    out.trim_matches('_').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_form() {
        let sub = "posts/*?options=%7B%22query%22%3A%7B%22filter%22%3A%22status%20%3D%20%5C%22published%5C%22%22%2C%22fields%22%3A%22id%2Ctitle%22%2C%22page%22%3A2%7D%2C%22headers%22%3A%7B%22X-Token%22%3A%22abc%22%7D%7D";
        let o = match SubscriptionOptions::parse(sub) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(o.topic, "posts/*");
        assert_eq!(o.filter.as_deref(), Some("status = \"published\""));
        assert_eq!(o.fields.as_deref(), Some("id,title"));
        assert_eq!(o.query.get("page").map(String::as_str), Some("2"));
        assert_eq!(o.headers.get("x_token").map(String::as_str), Some("abc"));
    }

    #[test]
    fn without_options_and_broken_options() {
        let o = SubscriptionOptions::parse("posts/abc").ok();
        assert_eq!(
            o.map(|o| (o.topic, o.filter)),
            Some(("posts/abc".into(), None))
        );
        assert!(matches!(
            SubscriptionOptions::parse("posts?options=%7Bx"),
            Err(OptionsError::Json(_))
        ));
        assert_eq!(
            SubscriptionOptions::parse("posts?options=%5B%5D"),
            Err(OptionsError::NotAnObject)
        );
        assert_eq!(
            SubscriptionOptions::parse("posts?options=%7B%22query%22%3A1%7D"),
            Err(OptionsError::NotAMap("query"))
        );
    }

    #[test]
    fn snake_case_like_pocketbase() {
        assert_eq!(snake_case("X-Token"), "x_token");
        assert_eq!(snake_case("someHeader"), "some_header");
        assert_eq!(snake_case("a b"), "a_b");
    }
}
