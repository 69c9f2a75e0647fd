//! Topic rules (`--rules FILE`): who may subscribe to which topics.
//!
//! PocketBase checks record topics against collection rules; ringcast's topics
//! are free-form, so the operator says in a TOML file who may hold them:
//!
//! ```toml
//! # First matching rule wins; topics matching no rule use `default`
//! # (itself "guest" = anyone, when left out).
//! default = "guest"
//!
//! [[rule]]
//! topic = "private/*"          # `*` matches any run of characters, '/' included
//! allow = "auth"               # guest | auth | superuser | owner
//!
//! [[rule]]
//! topic = "users/{auth.id}/*"  # a placeholder stands for one whole segment
//! allow = "owner"              # ...which must be the client's own value
//!
//! [[rule]]
//! topic = "admin/*"
//! allow = "superuser"
//! ```
//!
//! * `guest`: anyone; `auth`: any authenticated client; `superuser`: only
//!   superusers; `owner`: an authenticated client whose `{auth.id}`,
//!   `{auth.collectionId}` and `{auth.collectionName}` equal the segments the
//!   placeholders matched (guests never match, nor does an empty value, e.g. a
//!   JWT without `collectionName`).
//! * A topic matches a rule by shape (placeholders match any one non-empty
//!   segment); the first such rule decides, allowing or denying. So with the
//!   file above, bob may hold `users/bob/inbox` but not `users/alice/inbox`.
//! * Superusers may subscribe to everything, whatever the rules say.
//! * Rules see the subscription up to its first `?`: PocketBase subscriptions
//!   carry `?options=…` after the topic. (A topic *published* with a `?` in its
//!   name is therefore judged by the part before it.)
//! * `{` only starts a placeholder; patterns cannot match a literal `{`.
//!
//! The file is checked when loaded: an unknown key or `allow` value, an empty
//! topic, a `?` in a topic, an unknown placeholder or one that is not a whole
//! segment, a placeholder outside an `owner` rule, or an `owner` rule without
//! one are refused with the line to fix.

use super::identity::Auth;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Who may hold a topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Allow {
    /// Anyone, authenticated or not.
    #[default]
    Guest,
    /// Any authenticated client.
    Auth,
    /// Superusers only.
    Superuser,
    /// The client whose identity fills the topic's placeholders.
    Owner,
}

/// The loaded rules; [`Rules::default`] allows everything.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    default: Allow,
}

#[derive(Debug, Clone)]
struct Rule {
    parts: Vec<Part>,
    allow: Allow,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Star,
    Field(Field),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Id,
    CollectionId,
    CollectionName,
}

impl Field {
    fn of(auth: &Auth, field: Field) -> &str {
        match field {
            Field::Id => &auth.id,
            Field::CollectionId => &auth.collection_id,
            Field::CollectionName => &auth.collection_name,
        }
    }
}

/// The first subscription a client may not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied<'a> {
    /// Its position in the POSTed list.
    pub index: usize,
    /// The subscription as POSTed (`?options` included).
    pub topic: &'a str,
}

/// A rules file that cannot be used, saying where and why.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read the rules file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rules file {}: {error}", path.display())]
    File {
        path: PathBuf,
        error: Box<RulesError>,
    },
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("line {line}: {message}")]
    Invalid { line: usize, message: String },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    default: Option<Spanned<Allow>>,
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    topic: Spanned<String>,
    allow: Allow,
}

impl Rules {
    /// Reads and checks a rules file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_owned(),
            source,
        })?;
        Rules::parse(&text).map_err(|error| RulesError::File {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// Checks rules given as TOML text.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        let spec: FileSpec = toml::from_str(text)?;
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let default = match spec.default {
            Some(default) if *default.get_ref() == Allow::Owner => {
                return Err(RulesError::Invalid {
                    line: line_of(default.span().start),
                    message: "default cannot be \"owner\" (a default has no placeholders); use \"guest\", \"auth\" or \"superuser\"".into(),
                });
            }
            Some(default) => default.into_inner(),
            None => Allow::Guest,
        };
        let rules = spec
            .rule
            .into_iter()
            .map(|rule| {
                let line = line_of(rule.topic.span().start);
                compile(rule.topic.get_ref(), rule.allow)
                    .map_err(|message| RulesError::Invalid { line, message })
            })
            .collect::<Result<_, _>>()?;
        Ok(Rules { rules, default })
    }

    /// Whether `auth` may hold every subscription in the list, else the first
    /// it may not. Called once per subscribe POST, never on the fan-out path.
    pub fn check<'a>(
        &self,
        subscriptions: &'a [String],
        auth: Option<&Auth>,
    ) -> Result<(), Denied<'a>> {
        if auth.is_some_and(|a| a.superuser)
            || (self.rules.is_empty() && self.default == Allow::Guest)
        {
            return Ok(());
        }
        for (index, subscription) in subscriptions.iter().enumerate() {
            // PocketBase skips empty entries; so do we.
            if !subscription.is_empty() && !self.allows(topic_of(subscription), auth) {
                return Err(Denied {
                    index,
                    topic: subscription,
                });
            }
        }
        Ok(())
    }

    fn allows(&self, topic: &str, auth: Option<&Auth>) -> bool {
        let rule = self
            .rules
            .iter()
            .find(|rule| matches(&rule.parts, topic.as_bytes(), |_| None));
        match rule.map_or(self.default, |rule| rule.allow) {
            Allow::Guest => true,
            Allow::Auth => auth.is_some(),
            Allow::Superuser => auth.is_some_and(|a| a.superuser),
            Allow::Owner => match (rule, auth) {
                (Some(rule), Some(auth)) => owns(&rule.parts, topic, auth),
                _ => false,
            },
        }
    }
}

/// The topic of a subscription: what precedes its `?options=…`, if any.
fn topic_of(subscription: &str) -> &str {
    subscription
        .split_once('?')
        .map_or(subscription, |(topic, _)| topic)
}

/// Whether the topic matches the owner rule with the client's own values in
/// its placeholders. A value that is empty or holds a `/` cannot fill one
/// segment, so it matches nothing.
fn owns(parts: &[Part], topic: &str, auth: &Auth) -> bool {
    let usable = parts.iter().all(|part| match part {
        Part::Field(field) => {
            let value = Field::of(auth, *field);
            !value.is_empty() && !value.contains('/')
        }
        _ => true,
    });
    usable
        && matches(parts, topic.as_bytes(), |field| {
            Some(Field::of(auth, field))
        })
}

/// Whether `topic` matches the pattern. `value` fills a placeholder with a
/// literal, or leaves it (`None`) to match any one non-empty segment.
///
/// It tracks the set of topic positions reachable after each part, so it is
/// O(parts × topic length) however many `*` there are: no backtracking blowup
/// on long topics (up to 2500 bytes) and adversarial patterns.
fn matches<'v>(parts: &[Part], topic: &[u8], value: impl Fn(Field) -> Option<&'v str>) -> bool {
    let n = topic.len();
    let mut reach = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    reach[0] = true;
    for part in parts {
        next.fill(false);
        let literal = match part {
            Part::Literal(text) => Some(text.as_str()),
            Part::Field(field) => value(*field),
            Part::Star => None,
        };
        match (part, literal) {
            (_, Some(literal)) => {
                let literal = literal.as_bytes();
                for start in (0..=n).filter(|&p| reach[p]) {
                    if topic[start..].starts_with(literal) {
                        next[start + literal.len()] = true;
                    }
                }
            }
            (Part::Star, None) => {
                if let Some(first) = reach.iter().position(|&r| r) {
                    next[first..].fill(true);
                }
            }
            (_, None) => {
                // One segment: at least one byte, no '/'.
                let mut open = false;
                for end in 1..=n {
                    if topic[end - 1] == b'/' {
                        open = false;
                    } else {
                        open |= reach[end - 1];
                        next[end] = open;
                    }
                }
            }
        }
        std::mem::swap(&mut reach, &mut next);
        if !reach.contains(&true) {
            return false;
        }
    }
    reach[n]
}

/// A rule's pattern, checked against its `allow`.
fn compile(topic: &str, allow: Allow) -> Result<Rule, String> {
    if topic.is_empty() {
        return Err(
            "a rule's topic is empty; give a topic or a pattern such as \"private/*\"".into(),
        );
    }
    if topic.contains('?') {
        return Err(format!(
            "topic {topic:?} has a '?', but rules only see a subscription up to its '?' (its options); remove the '?' part"
        ));
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = topic;
    while let Some(c) = rest.chars().next() {
        match c {
            '*' => {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                if parts.last() != Some(&Part::Star) {
                    parts.push(Part::Star);
                }
                rest = &rest[1..];
            }
            '{' => {
                let Some(end) = rest.find('}') else {
                    return Err(format!("topic {topic:?} has a '{{' that is never closed"));
                };
                let field = match &rest[1..end] {
                    "auth.id" => Field::Id,
                    "auth.collectionId" => Field::CollectionId,
                    "auth.collectionName" => Field::CollectionName,
                    other => {
                        return Err(format!(
                            "topic {topic:?}: unknown placeholder {{{other}}}; use {{auth.id}}, {{auth.collectionId}} or {{auth.collectionName}}"
                        ));
                    }
                };
                let after = &rest[end + 1..];
                let starts_segment =
                    literal.ends_with('/') || (literal.is_empty() && parts.is_empty());
                let whole_segment = starts_segment && (after.is_empty() || after.starts_with('/'));
                if !whole_segment {
                    return Err(format!(
                        "topic {topic:?}: a placeholder must be a whole segment between '/' (e.g. \"users/{{auth.id}}/*\")"
                    ));
                }
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Field(field));
                rest = after;
            }
            c => {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    let has_placeholder = parts.iter().any(|p| matches!(p, Part::Field(_)));
    match (allow, has_placeholder) {
        (Allow::Owner, false) => Err(format!(
            "topic {topic:?}: allow = \"owner\" needs a placeholder ({{auth.id}}, {{auth.collectionId}} or {{auth.collectionName}}) saying whose topic it is"
        )),
        (Allow::Guest | Allow::Auth | Allow::Superuser, true) => Err(format!(
            "topic {topic:?}: placeholders only mean something with allow = \"owner\""
        )),
        _ => Ok(Rule { parts, allow }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../contrib/rules.example.toml");

    fn user(id: &str) -> Auth {
        Auth {
            id: id.into(),
            collection_id: "_pb_users_auth_".into(),
            collection_name: "users".into(),
            superuser: false,
            record: None,
        }
    }

    fn superuser() -> Auth {
        Auth {
            id: "root".into(),
            collection_id: "pbc_3142635823".into(),
            collection_name: "_superusers".into(),
            superuser: true,
            record: None,
        }
    }

    fn subs(topics: &[&str]) -> Vec<String> {
        topics.iter().map(|t| t.to_string()).collect()
    }

    /// Whether `auth` may hold this one subscription.
    fn may(rules: &Rules, topic: &str, auth: Option<&Auth>) -> bool {
        rules.check(&subs(&[topic]), auth).is_ok()
    }

    fn invalid(text: &str) -> String {
        Rules::parse(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn default_rules_allow_everything() {
        let rules = Rules::default();
        assert!(may(&rules, "anything/at/all", None));
        assert!(may(&rules, "admin/x", None));
        assert_eq!(rules.check(&[], None), Ok(()));
        assert!(may(&Rules::parse("").unwrap(), "x", None));
    }

    #[test]
    fn example_file_is_valid_and_means_what_it_says() {
        let rules = Rules::parse(EXAMPLE).unwrap();
        let bob = user("bob");
        assert!(may(&rules, "news", None));
        assert!(!may(&rules, "private/x", None));
        assert!(may(&rules, "private/x", Some(&bob)));
        assert!(may(&rules, "users/bob/inbox", Some(&bob)));
        assert!(!may(&rules, "users/alice/inbox", Some(&bob)));
        assert!(!may(&rules, "users/bob/inbox", None));
        assert!(!may(&rules, "admin/stats", Some(&bob)));
        assert!(may(&rules, "admin/stats", Some(&superuser())));
    }

    #[test]
    fn star_matches_any_run_including_slashes() {
        let rules = Rules::parse(
            "[[rule]]\ntopic = \"private/*\"\nallow = \"auth\"\n[[rule]]\ntopic = \"*.secret\"\nallow = \"superuser\"\n[[rule]]\ntopic = \"a*b*c\"\nallow = \"auth\"",
        )
        .unwrap();
        let bob = user("bob");
        assert!(!may(&rules, "private/", None));
        assert!(!may(&rules, "private/a/b/c", None));
        assert!(may(&rules, "private/a/b/c", Some(&bob)));
        assert!(may(&rules, "privatex", None));
        assert!(may(&rules, "public/private/x", None));
        assert!(!may(&rules, "x/y.secret", Some(&bob)));
        assert!(may(&rules, "x/y.secret.not", Some(&bob)));
        assert!(!may(&rules, "abc", None));
        assert!(!may(&rules, "a/x/b/y/c", None));
        assert!(may(&rules, "a/x/b/y/cd", None));
        assert!(may(&rules, "acb", None));
    }

    #[test]
    fn exact_topics_and_unicode() {
        let rules = Rules::parse("[[rule]]\ntopic = \"salon/été\"\nallow = \"auth\"").unwrap();
        assert!(!may(&rules, "salon/été", None));
        assert!(may(&rules, "salon/été/x", None));
        assert!(may(&rules, "salon/ét", None));
    }

    #[test]
    fn owner_rules_need_the_clients_own_values() {
        let rules = Rules::parse(
            "default = \"auth\"\n[[rule]]\ntopic = \"{auth.collectionName}/{auth.id}/*\"\nallow = \"owner\"\n[[rule]]\ntopic = \"c/{auth.collectionId}\"\nallow = \"owner\"",
        )
        .unwrap();
        let bob = user("bob");
        assert!(may(&rules, "users/bob/feed", Some(&bob)));
        assert!(may(&rules, "users/bob/", Some(&bob)));
        assert!(!may(&rules, "users/alice/feed", Some(&bob)));
        assert!(!may(&rules, "staff/bob/feed", Some(&bob)));
        assert!(!may(&rules, "users/bob/feed", None));
        assert!(may(&rules, "c/_pb_users_auth_", Some(&bob)));
        assert!(!may(&rules, "c/_pb_users_auth_/x", Some(&bob)));
        assert!(!may(&rules, "c/other", Some(&bob)));
        // An empty value (a JWT without collectionName) owns nothing.
        let nameless = Auth {
            collection_name: String::new(),
            ..user("bob")
        };
        assert!(!may(&rules, "users/bob/feed", Some(&nameless)));
        // A value with '/' cannot stand for one segment.
        assert!(!may(&rules, "users/a/b/feed", Some(&user("a/b"))));
        // Superusers own everything.
        assert!(may(&rules, "users/alice/feed", Some(&superuser())));
    }

    #[test]
    fn a_placeholder_is_one_non_empty_segment() {
        // Topics not of the rule's shape fall to the default (anyone here).
        let rules =
            Rules::parse("[[rule]]\ntopic = \"users/{auth.id}/*\"\nallow = \"owner\"").unwrap();
        assert!(!may(&rules, "users/x/feed", None));
        assert!(!may(&rules, "users/x/", None));
        assert!(!may(&rules, "users/x/y/z", None));
        assert!(may(&rules, "users//feed", None));
        assert!(may(&rules, "users/x", None));
        assert!(may(&rules, "users", None));
        assert!(may(&rules, "xusers/x/feed", None));
    }

    #[test]
    fn owner_placeholder_after_a_star() {
        let err = invalid("[[rule]]\ntopic = \"*{auth.id}/inbox\"\nallow = \"owner\"");
        assert!(
            err.contains("a placeholder must be a whole segment"),
            "{err}"
        );
        let rules =
            Rules::parse("[[rule]]\ntopic = \"*/{auth.id}/inbox\"\nallow = \"owner\"").unwrap();
        let bob = user("bob");
        assert!(may(&rules, "a/b/bob/inbox", Some(&bob)));
        assert!(!may(&rules, "a/b/alice/inbox", Some(&bob)));
        assert!(may(&rules, "a/b/alice/inbox/x", Some(&bob)));
        let rules = Rules::parse("[[rule]]\ntopic = \"*/x/{auth.id}\"\nallow = \"owner\"").unwrap();
        assert!(may(&rules, "a/b/x/bob", Some(&bob)));
        assert!(!may(&rules, "a/b/x/alice", Some(&bob)));
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = Rules::parse(
            "[[rule]]\ntopic = \"admin/public/*\"\nallow = \"guest\"\n[[rule]]\ntopic = \"admin/*\"\nallow = \"superuser\"",
        )
        .unwrap();
        assert!(may(&rules, "admin/public/news", None));
        assert!(!may(&rules, "admin/private", Some(&user("bob"))));
    }

    #[test]
    fn default_deny() {
        let rules =
            Rules::parse("default = \"auth\"\n[[rule]]\ntopic = \"public/*\"\nallow = \"guest\"")
                .unwrap();
        assert!(may(&rules, "public/x", None));
        assert!(!may(&rules, "other", None));
        assert!(may(&rules, "other", Some(&user("bob"))));
        let closed = Rules::parse("default = \"superuser\"").unwrap();
        assert!(!may(&closed, "x", Some(&user("bob"))));
        assert!(may(&closed, "x", Some(&superuser())));
        // Empty entries are skipped, as PocketBase does.
        assert_eq!(closed.check(&subs(&["", ""]), None), Ok(()));
    }

    #[test]
    fn options_suffix_is_ignored() {
        let rules = Rules::parse("[[rule]]\ntopic = \"private/*\"\nallow = \"auth\"\n[[rule]]\ntopic = \"exact\"\nallow = \"auth\"").unwrap();
        assert!(!may(&rules, "private/x?options=%7B%7D", None));
        assert!(!may(
            &rules,
            "exact?options=%7B%22query%22%3A%7B%7D%7D",
            None
        ));
        assert!(!may(&rules, "exact?", None));
        // The part after '?' cannot smuggle a denied topic in or out.
        assert!(may(&rules, "public?private/x", None));
    }

    #[test]
    fn denied_names_the_first_offender() {
        let rules =
            Rules::parse("default = \"auth\"\n[[rule]]\ntopic = \"ok/*\"\nallow = \"guest\"")
                .unwrap();
        let list = subs(&["ok/1", "", "nope?options=x", "also-nope"]);
        let denied = rules.check(&list, None).unwrap_err();
        assert_eq!(
            denied,
            Denied {
                index: 2,
                topic: "nope?options=x"
            }
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let err = invalid("[[rule]]\ntopic = \"a\"\nallow = \"everyone\"\n");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("unknown variant `everyone`"), "{err}");

        assert_eq!(
            invalid("\n[[rule]]\ntopic = \"\"\nallow = \"auth\""),
            "line 3: a rule's topic is empty; give a topic or a pattern such as \"private/*\""
        );
        assert_eq!(
            invalid("[[rule]]\ntopic = \"users/{auth.id}\"\nallow = \"auth\""),
            "line 2: topic \"users/{auth.id}\": placeholders only mean something with allow = \"owner\""
        );
        assert_eq!(
            invalid("[[rule]]\ntopic = \"users/*\"\nallow = \"owner\""),
            "line 2: topic \"users/*\": allow = \"owner\" needs a placeholder ({auth.id}, {auth.collectionId} or {auth.collectionName}) saying whose topic it is"
        );
        assert!(
            invalid("[[rule]]\ntopic = \"u/{auth.email}\"\nallow = \"owner\"")
                .contains("unknown placeholder {auth.email}; use {auth.id}")
        );
        assert!(
            invalid("[[rule]]\ntopic = \"u/{auth.id\"\nallow = \"owner\"").contains("never closed")
        );
        assert!(
            invalid("[[rule]]\ntopic = \"u-{auth.id}\"\nallow = \"owner\"")
                .contains("a placeholder must be a whole segment")
        );
        assert!(
            invalid("[[rule]]\ntopic = \"u/{auth.id}x\"\nallow = \"owner\"")
                .contains("a placeholder must be a whole segment")
        );
        assert!(
            invalid("[[rule]]\ntopic = \"x?options=1\"\nallow = \"auth\"").contains("has a '?'")
        );
        assert_eq!(
            invalid("# comment\ndefault = \"owner\""),
            "line 2: default cannot be \"owner\" (a default has no placeholders); use \"guest\", \"auth\" or \"superuser\""
        );
        // Typos in keys are caught, not silently ignored.
        let err = invalid("[[rules]]\ntopic = \"a\"\nallow = \"auth\"");
        assert!(err.contains("unknown field `rules`"), "{err}");
        let err = invalid("[[rule]]\ntopic = \"a\"\nalow = \"auth\"");
        assert!(
            err.contains("line 3") && err.contains("unknown field `alow`"),
            "{err}"
        );
        let err = invalid("[[rule]]\ntopic = \"a\"");
        assert!(err.contains("missing field `allow`"), "{err}");
        assert!(invalid("default = ").contains("line 1"));
    }

    #[test]
    fn load_names_the_file() {
        let missing = Rules::load(Path::new("/nonexistent/rules.toml")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read the rules file /nonexistent/rules.toml: "),
            "{missing}"
        );
        let path = std::env::temp_dir().join(format!("ringcast-rules-{}.toml", std::process::id()));
        std::fs::write(&path, "[[rule]]\ntopic = \"\"\nallow = \"auth\"").unwrap();
        let err = Rules::load(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            err,
            format!(
                "rules file {}: line 2: a rule's topic is empty; give a topic or a pattern such as \"private/*\"",
                path.display()
            )
        );
    }

    #[test]
    fn long_topics_and_many_stars_stay_fast() {
        let rules =
            Rules::parse("[[rule]]\ntopic = \"*a*a*a*a*a*a*a*a*b\"\nallow = \"auth\"").unwrap();
        let long = "a".repeat(2500);
        let list: Vec<String> = (0..1000).map(|_| long.clone()).collect();
        let started = std::time::Instant::now();
        assert_eq!(rules.check(&list, None), Ok(()));
        // Backtracking would take ages; the position-set matcher is linear per part.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
