//! PocketBase's `fields` projection (`tools/picker`): a comma list of dotted paths, `*` for
//! the remaining keys of a level, and the `:excerpt(max, withEllipsis)` modifier.
//!
//! The edge projects the record JSON it has: `expand.*` paths select from an `expand` key only
//! if the record carries one. PocketBase expands relations from its database per subscriber
//! (`options.query.expand`); the edge does not, so an `expand` PocketBase would have added is
//! absent here.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Why a `fields` value cannot be used. PocketBase then sends the whole record (it logs the
/// pick error and keeps the unpicked record), which is the caller's call to make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    #[error("missing or invalid modifier {0:?}")]
    UnknownModifier(String),
    #[error("excerpt: {0}")]
    Excerpt(&'static str),
    #[error("unbalanced parentheses in {0:?}")]
    Parentheses(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Excerpt {
    max: usize,
    ellipsis: bool,
}

/// A parsed `fields` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// path → modifier, as PocketBase's map (a repeated path keeps the last modifier).
    paths: BTreeMap<String, Option<Excerpt>>,
}

impl Fields {
    pub fn parse(raw: &str) -> Result<Fields, FieldsError> {
        let mut paths = BTreeMap::new();
        for part in split_top_level(raw, ',')? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, modifier) = match part.split_once(':') {
                Some((n, m)) => (n, Some(parse_modifier(m)?)),
                None => (part, None),
            };
            paths.insert(name.to_owned(), modifier);
        }
        Ok(Fields { paths })
    }

    /// The projected record, serialised (keys sorted, as Go marshals the picked maps).
    pub fn project(&self, record: &Value) -> Vec<u8> {
        let mut value = record.clone();
        let fields: Vec<(String, Option<Excerpt>)> =
            self.paths.iter().map(|(k, v)| (k.clone(), *v)).collect();
        pick(&mut value, fields);
        serde_json::to_vec(&sorted(value)).unwrap_or_default()
    }
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// `tokenizer.ScanAll` with one separator: splits outside parentheses and quotes.
fn split_top_level(raw: &str, sep: char) -> Result<Vec<&str>, FieldsError> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0usize);
    let mut prev = '\0';
    for (i, c) in raw.char_indices() {
        match quote {
            Some(q) => {
                if c == q && prev != '\\' {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' => depth += 1,
                ')' => depth -= 1,
                c if c == sep && depth == 0 => {
                    parts.push(&raw[start..i]);
                    start = i + c.len_utf8();
                }
                _ => {}
            },
        }
        prev = c;
    }
    if depth != 0 || quote.is_some() {
        return Err(FieldsError::Parentheses(raw.to_owned()));
    }
    parts.push(&raw[start..]);
    Ok(parts)
}

fn parse_modifier(raw: &str) -> Result<Excerpt, FieldsError> {
    let tokens: Vec<&str> = raw
        .split(['(', ')', ',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let Some((&name, args)) = tokens.split_first() else {
        return Err(FieldsError::UnknownModifier(raw.to_owned()));
    };
    if name != "excerpt" {
        return Err(FieldsError::UnknownModifier(name.to_owned()));
    }
    match args.len() {
        0 => return Err(FieldsError::Excerpt("max argument is required")),
        1 | 2 => {}
        _ => return Err(FieldsError::Excerpt("too many arguments")),
    }
    // cast.ToInt: a base-prefixed or plain integer, anything else 0
    let max = args[0]
        .trim_matches(|c| c == '"' || c == '\'')
        .parse::<i64>()
        .unwrap_or(0);
    if max <= 0 {
        return Err(FieldsError::Excerpt("max argument must be > 0"));
    }
    // cast.ToBool: strconv.ParseBool
    let ellipsis = args.get(1).is_some_and(|a| {
        matches!(
            a.trim_matches(|c| c == '"' || c == '\''),
            "1" | "t" | "T" | "TRUE" | "true" | "True"
        )
    });
    Ok(Excerpt {
        max: max as usize,
        ellipsis,
    })
}

fn pick(data: &mut Value, fields: Vec<(String, Option<Excerpt>)>) {
    match data {
        Value::Object(m) => pick_map(m, fields),
        // only arrays of objects are picked into
        Value::Array(items) if items.first().is_some_and(Value::is_object) => {
            for item in items.iter_mut() {
                if let Value::Object(m) = item {
                    pick_map(m, fields.clone());
                }
            }
        }
        _ => {}
    }
}

fn pick_map(data: &mut Map<String, Value>, mut fields: Vec<(String, Option<Excerpt>)>) {
    if fields.is_empty() {
        return;
    }
    if let Some(star) = fields.iter().find(|(f, _)| f == "*").map(|(_, m)| *m) {
        for k in data.keys() {
            let prefix = format!("{k}.");
            if !fields
                .iter()
                .any(|(f, _)| format!("{f}.").starts_with(&prefix))
            {
                fields.push((k.clone(), star));
            }
        }
    }
    let keys: Vec<String> = data.keys().cloned().collect();
    for k in keys {
        let prefix = format!("{k}.");
        let matching: Vec<(String, Option<Excerpt>)> = fields
            .iter()
            .filter(|(f, _)| format!("{f}.").starts_with(&prefix))
            .cloned()
            .collect();
        if matching.is_empty() {
            data.remove(&k);
            continue;
        }
        let mut nested = Vec::new();
        let mut done = false;
        for (f, m) in matching {
            let with_dot = format!("{f}.");
            let remains = with_dot
                .strip_prefix(&prefix)
                .unwrap_or("")
                .trim_end_matches('.');
            if remains.is_empty() {
                if let (Some(m), Some(Value::String(s))) = (m, data.get_mut(&k)) {
                    *s = excerpt(s, m.max, m.ellipsis);
                }
                done = true;
                break;
            }
            nested.push((remains.to_owned(), m));
        }
        if !done && let Some(v) = data.get_mut(&k) {
            pick(v, nested);
        }
    }
}

const EXCLUDED: &[&str] = &[
    "head", "style", "script", "iframe", "embed", "applet", "object", "svg", "img", "picture",
    "dialog", "template", "button", "form", "textarea", "input", "select", "option",
];
const INLINE: &[&str] = &[
    "a", "abbr", "acronym", "b", "bdo", "big", "br", "button", "cite", "code", "em", "i", "label",
    "q", "small", "span", "strong", "strike", "sub", "sup", "time",
];
/// Elements without content (no end tag).
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];
/// Elements whose content is raw text.
const RAW_TEXT: &[&str] = &[
    "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
];

struct Excerpter {
    out: String,
    prev_space: bool,
    limit: usize,
}

impl Excerpter {
    fn text(&mut self, raw: &str) {
        // regexp `\s+` → " ": Go's \s is [\t\n\f\r ]
        let mut txt = String::with_capacity(raw.len());
        let mut in_ws = false;
        for c in raw.chars() {
            if matches!(c, '\t' | '\n' | '\u{0c}' | '\r' | ' ') {
                if !in_ws {
                    txt.push(' ');
                }
                in_ws = true;
            } else {
                txt.push(c);
                in_ws = false;
            }
        }
        let txt = if self.prev_space {
            txt.trim_start_matches(' ')
        } else {
            txt.as_str()
        };
        if !txt.is_empty() {
            self.prev_space = txt.ends_with(' ');
            self.out.push_str(txt);
        }
    }

    fn block_space(&mut self) {
        if !self.prev_space {
            self.out.push(' ');
            self.prev_space = true;
        }
    }

    fn over(&self) -> bool {
        self.out.len() > self.limit
    }
}

/// The `excerpt` modifier: the HTML's text (tags stripped, excluded elements dropped, block
/// elements spaced, whitespace collapsed), cut to `max` characters, `...` added if cut.
pub(crate) fn excerpt(html: &str, max: usize, with_ellipsis: bool) -> String {
    let mut ex = Excerpter {
        out: String::new(),
        prev_space: false,
        limit: max + 2,
    };
    // html and body are block elements around everything
    ex.block_space();
    walk_html(html, &mut ex);
    let result = ex.out.trim();
    if result.len() <= max {
        return result.to_owned();
    }
    let mut chars = result.char_indices();
    match chars.nth(max) {
        None => result.to_owned(),
        Some((cut, _)) => {
            let mut s = result[..cut].trim().to_owned();
            if with_ellipsis {
                s.push_str("...");
            }
            s
        }
    }
}

/// A small HTML tokenizer that visits text and elements in document order, skipping
/// excluded elements' content and (like PocketBase's walk) the content of elements that
/// start once the excerpt is long enough.
fn walk_html(html: &str, ex: &mut Excerpter) {
    let b = html.as_bytes();
    let mut i = 0;
    let mut text_start = 0;
    // open elements: (name, block, skipping content)
    let mut stack: Vec<(String, bool, bool)> = Vec::new();
    let mut seen_body_content = false;
    let skipping = |stack: &Vec<(String, bool, bool)>| stack.iter().any(|e| e.2);
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &html[i..];
        let tag = if rest.starts_with("<!--") {
            Some(Tag::Comment(
                rest.find("-->").map(|e| e + 3).unwrap_or(rest.len()),
            ))
        } else if rest.starts_with("<!") || rest.starts_with("<?") {
            Some(Tag::Comment(
                rest.find('>').map(|e| e + 1).unwrap_or(rest.len()),
            ))
        } else {
            parse_tag(rest)
        };
        let Some(tag) = tag else {
            i += 1;
            continue;
        };
        // the text before the tag
        let text = &html[text_start..i];
        if !text.is_empty() && !skipping(&stack) {
            let decoded = decode_entities(text);
            if !decoded.trim().is_empty() {
                seen_body_content = true;
            }
            ex.text(&decoded);
        }
        match tag {
            Tag::Comment(len) => i += len,
            Tag::Start {
                name,
                len,
                self_closing,
            } => {
                i += len;
                // before any body content these go to <head>, which is excluded
                let in_head = !seen_body_content
                    && matches!(
                        name.as_str(),
                        "title" | "meta" | "link" | "base" | "style" | "script" | "noscript"
                    );
                let excluded = EXCLUDED.contains(&name.as_str()) || in_head;
                let block = !INLINE.contains(&name.as_str());
                if !excluded && !skipping(&stack) {
                    if block {
                        ex.block_space();
                    }
                    if name != "html" && name != "body" && name != "head" {
                        seen_body_content =
                            seen_body_content || !matches!(name.as_str(), "meta" | "link");
                    }
                }
                let has_content = !VOID.contains(&name.as_str()) && !self_closing;
                if RAW_TEXT.contains(&name.as_str()) {
                    // raw text to the matching end tag
                    let close = format!("</{name}");
                    let lower = html[i..].to_ascii_lowercase();
                    let end = lower.find(&close).unwrap_or(lower.len());
                    let content = &html[i..i + end];
                    if !excluded && !skipping(&stack) && !ex.over() {
                        ex.text(content);
                    }
                    i += end;
                    if i < b.len()
                        && let Some(Tag::End { len, .. }) = parse_tag(&html[i..])
                    {
                        i += len;
                    }
                    if !excluded && block && !skipping(&stack) {
                        ex.block_space();
                    }
                } else if has_content {
                    let skip = excluded || ex.over();
                    stack.push((name, block && !excluded, skip));
                } else if block && !excluded && !skipping(&stack) {
                    ex.block_space();
                }
            }
            Tag::End { name, len } => {
                i += len;
                if let Some(pos) = stack.iter().rposition(|e| e.0 == name) {
                    while stack.len() > pos {
                        if let Some((_, block, skip)) = stack.pop()
                            && block
                            && !skip
                            && !skipping(&stack)
                        {
                            ex.block_space();
                        }
                    }
                }
            }
        }
        text_start = i;
    }
    let text = &html[text_start.min(html.len())..];
    if !text.is_empty() && !skipping(&stack) {
        ex.text(&decode_entities(text));
    }
    ex.block_space();
}

enum Tag {
    Comment(usize),
    Start {
        name: String,
        len: usize,
        self_closing: bool,
    },
    End {
        name: String,
        len: usize,
    },
}

fn parse_tag(s: &str) -> Option<Tag> {
    let b = s.as_bytes();
    let (end_tag, name_start) = if b.get(1) == Some(&b'/') {
        (true, 2)
    } else {
        (false, 1)
    };
    if !b.get(name_start).is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    let mut j = name_start;
    while j < b.len() && !matches!(b[j], b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'/' | b'>') {
        j += 1;
    }
    let name = s[name_start..j].to_ascii_lowercase();
    // to the closing '>' outside attribute quotes
    let mut quote = None;
    let mut k = j;
    while k < b.len() {
        match (quote, b[k]) {
            (None, b'"' | b'\'') => quote = Some(b[k]),
            (Some(q), c) if c == q => quote = None,
            (None, b'>') => break,
            _ => {}
        }
        k += 1;
    }
    let len = (k + 1).min(s.len());
    let self_closing = k > 0 && b.get(k - 1) == Some(&b'/');
    Some(if end_tag {
        Tag::End { name, len }
    } else {
        Tag::Start {
            name,
            len,
            self_closing,
        }
    })
}

/// Character references: numeric ones and the common named ones.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.replace("\r\n", "\n").replace('\r', "\n");
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let end = rest[1..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '#')
            .map(|e| e + 1)
            .unwrap_or(rest.len());
        let name = &rest[1..end];
        let has_semi = rest[end..].starts_with(';');
        let decoded = if let Some(num) = name.strip_prefix('#') {
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse::<u32>().ok(),
            };
            code.map(|c| char::from_u32(c).unwrap_or('\u{FFFD}'))
        } else {
            match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" if has_semi => Some('\''),
                "nbsp" => Some('\u{a0}'),
                "copy" => Some('©'),
                "reg" => Some('®'),
                "hellip" if has_semi => Some('…'),
                "mdash" if has_semi => Some('—'),
                "ndash" if has_semi => Some('–'),
                _ => None,
            }
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + usize::from(has_semi)..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.replace("\r\n", "\n").replace('\r', "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn project(spec: &str, v: Value) -> Value {
        let f = match Fields::parse(spec) {
            Ok(f) => f,
            Err(e) => panic!("{spec}: {e}"),
        };
        serde_json::from_slice(&f.project(&v)).unwrap_or(Value::Null)
    }

    #[test]
    fn paths_and_wildcards() {
        let r = json!({"id": "1", "title": "t", "j": {"a": {"b": 1, "c": 2}, "x": 3}, "list": [{"a": 1, "b": 2}]});
        assert_eq!(
            project("id,title", r.clone()),
            json!({"id": "1", "title": "t"})
        );
        assert_eq!(project("id,unknown", r.clone()), json!({"id": "1"}));
        assert_eq!(project("j.a.b", r.clone()), json!({"j": {"a": {"b": 1}}}));
        assert_eq!(project("list.a", r.clone()), json!({"list": [{"a": 1}]}));
        assert_eq!(project("*", r.clone()), r.clone());
        assert_eq!(
            project("j.*", r.clone()),
            json!({"j": {"a": {"b": 1, "c": 2}, "x": 3}})
        );
        assert_eq!(project("title.x", r.clone()), json!({"title": "t"}));
    }

    #[test]
    fn excerpt_like_pocketbase() {
        assert_eq!(
            excerpt("<p>Hello <b>world</b></p><p>Second</p>", 100, false),
            "Hello world Second"
        );
        assert_eq!(excerpt("Hello world", 5, true), "Hello...");
        assert_eq!(excerpt("Hello world", 6, true), "Hello...");
        assert_eq!(excerpt("Hello", 5, true), "Hello");
        assert_eq!(excerpt("a&amp;b <script>x</script> c", 100, false), "a&b c");
        assert_eq!(excerpt("Ünïcödé", 3, false), "Ünï");
        assert_eq!(
            excerpt("<ul><li>one</li><li>two</li></ul>", 100, false),
            "one two"
        );
        assert_eq!(
            project("t:excerpt(5,true)", json!({"t": "<i>abcdefgh</i>", "n": 1})),
            json!({"t": "abcde..."})
        );
        assert_eq!(
            project("n:excerpt(5)", json!({"n": 12345678})),
            json!({"n": 12345678})
        );
    }

    #[test]
    fn modifier_errors() {
        assert!(matches!(
            Fields::parse("a:nope(1)"),
            Err(FieldsError::UnknownModifier(_))
        ));
        assert!(matches!(
            Fields::parse("a:excerpt()"),
            Err(FieldsError::Excerpt(_))
        ));
        assert!(matches!(
            Fields::parse("a:excerpt(0)"),
            Err(FieldsError::Excerpt(_))
        ));
        assert!(matches!(
            Fields::parse("a:excerpt(1,2,3)"),
            Err(FieldsError::Excerpt(_))
        ));
        assert!(Fields::parse("a:excerpt(3, true),b").is_ok());
    }
}
