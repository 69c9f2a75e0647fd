//! PocketBase's rules and subscription options, applied to record events at
//! the edge.
//!
//! For each subscription string a record event reaches, PocketBase checks,
//! as that subscriber: the collection's view rule (`posts/<id>`) or list rule
//! (`posts/*`, `posts`) — superusers bypass it —, then the subscription's own
//! `filter` (`?options={"query":{"filter":…}}`), and trims the record to the
//! subscription's `fields`. The same here: options are read once per
//! interned subscription string and their filter compiled once per
//! collection schema, a projected record is serialised once per string (not
//! per subscriber), and only the checks run per subscriber. A rule the edge
//! cannot evaluate falls back to the message's audience (the publisher's
//! choice; PocketBase's forwarder sends superusers only for rules it does not
//! recognise); a subscription filter that is invalid — or not evaluable here
//! — makes the subscription receive nothing, as an invalid one does in
//! PocketBase.

use crate::auth::Auth;
use crate::filter::{Fields, Filter, SubscriptionOptions};
use crate::message::{Audience, RecordEvent, Rule, SchemaVersion, View};
use std::cell::RefCell;
use std::time::SystemTime;

/// A subscription string's options, as far as record events go.
#[derive(Debug)]
pub struct Options {
    filter: Option<FilterOption>,
    fields: Option<Fields>,
}

#[derive(Debug)]
struct FilterOption {
    text: String,
    /// PocketBase lets only superusers filter by `@collection.*` or
    /// `@request.*` (a substring of the filter or sort, checked loosely, as
    /// its `checkForSuperuserOnlyRuleFields` does): anyone else gets nothing.
    superusers_only: bool,
    /// Compiled for the schema with this hash (0: none), or refused.
    compiled: RefCell<Option<(u64, Option<Filter>)>>,
}

impl Options {
    /// The options of `subscription`; `None` when it has neither a filter
    /// nor fields (most subscriptions: nothing is kept for them).
    pub fn parse(subscription: &str) -> Option<Box<Options>> {
        if !subscription.contains('?') {
            return None;
        }
        let options = match SubscriptionOptions::parse(subscription) {
            Ok(options) => options,
            // PocketBase ignores options it cannot read.
            Err(_) => return None,
        };
        let superusers_only = ["filter", "sort"].iter().any(|param| {
            options
                .query
                .get(*param)
                .is_some_and(|v| v.contains("@collection.") || v.contains("@request."))
        });
        let filter = options.filter.map(|text| FilterOption {
            text,
            superusers_only,
            compiled: RefCell::new(None),
        });
        // A `fields` PocketBase cannot pick makes it send the whole record.
        let fields = options.fields.and_then(|f| Fields::parse(&f).ok());
        (filter.is_some() || fields.is_some()).then(|| Box::new(Options { filter, fields }))
    }

    pub fn fields(&self) -> Option<&Fields> {
        self.fields.as_ref()
    }

    /// Runs `f` with the subscription's filter compiled for `schema`:
    /// `Some(None)` when it has none, `None` when it has one that cannot be
    /// used (the subscription then receives nothing).
    pub fn with_filter<T>(
        &self,
        schema: Option<&SchemaVersion>,
        f: impl FnOnce(Option<SubscriptionFilter<'_>>) -> T,
    ) -> Option<T> {
        let Some(filter) = &self.filter else {
            return Some(f(None));
        };
        let hash = schema.map_or(0, |s| s.hash);
        let mut compiled = filter.compiled.borrow_mut();
        if compiled.as_ref().is_none_or(|(h, _)| *h != hash) {
            let result = match schema {
                Some(s) => Filter::compile_with(&filter.text, &s.schema),
                None => Filter::compile(&filter.text),
            };
            // PocketBase 0.40.6's realtime never matches a subscription
            // filter that joins the auth collection (`@request.auth.name`;
            // only superusers may send one): seen side by side in
            // tests/js/e2e/rules.test.mjs. Collection rules are not affected.
            *compiled = Some((hash, result.ok().filter(|f| !f.joins_auth())));
        }
        let compiled = compiled.as_ref().and_then(|(_, f)| f.as_ref())?;
        Some(f(Some(SubscriptionFilter {
            filter: compiled,
            superusers_only: filter.superusers_only,
        })))
    }
}

/// A subscription's compiled filter, and whether only superusers may use it.
#[derive(Clone, Copy)]
pub struct SubscriptionFilter<'a> {
    filter: &'a Filter,
    superusers_only: bool,
}

/// Whether a client authenticated as `auth` may receive record event `event` under `rule` (the one
/// for the subscription's topic, if the publisher sent rules) and the
/// subscription's `filter`, as PocketBase decides it.
pub fn admits(
    event: &RecordEvent,
    audience: &Audience,
    rule: Option<&Rule>,
    filter: Option<SubscriptionFilter<'_>>,
    auth: Option<&Auth>,
    now: SystemTime,
) -> bool {
    let superuser = auth.is_some_and(|a| a.superuser);
    let auth_record = auth.and_then(|a| a.record.as_deref());
    let allowed = match rule {
        None | Some(Rule::Fallback { .. }) => audience.admits(auth),
        Some(Rule::Everyone) => true,
        Some(Rule::Superusers) => superuser,
        Some(Rule::Filter(f)) => superuser || f.matches(&event.record, auth_record, now),
    };
    allowed
        && filter.is_none_or(|f| {
            (superuser || !f.superusers_only) && f.filter.matches(&event.record, auth_record, now)
        })
}

/// Which version of `event`'s record a client authenticated as `auth`, who
/// passed the rules, gets: as PocketBase's realtime, superusers see hidden
/// fields, and an auth record's own user and its managers (the manage rule)
/// see its email.
pub fn view_of(event: &RecordEvent, auth: Option<&Auth>, now: SystemTime) -> View {
    let (Some(private), Some(auth)) = (&event.private, auth) else {
        return View::Public;
    };
    if auth.superuser {
        return View::Superuser;
    }
    if private.email.is_none() {
        return View::Public;
    }
    let collection = event.collection_id.as_deref().unwrap_or(&event.collection);
    let own = auth.id == *event.record_id
        && (auth.collection_id == collection || auth.collection_name == collection);
    let manager = || {
        event.rules.as_ref().is_some_and(|r| match &r.manage {
            Rule::Everyone => true,
            Rule::Filter(f) => f.matches(&event.record, auth.record.as_deref(), now),
            Rule::Superusers | Rule::Fallback { .. } => false,
        })
    };
    if own || manager() {
        View::Owner
    } else {
        View::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_kept_only_when_they_matter() {
        assert!(Options::parse("posts/*").is_none());
        assert!(Options::parse("posts/*?options=%7B%7D").is_none());
        let with = |json: &str| {
            let encoded: String = form_urlencoded::byte_serialize(json.as_bytes()).collect();
            Options::parse(&format!("posts/*?options={encoded}")).expect("options")
        };
        let o = with(r#"{"query":{"filter":"status = 'published'","fields":"id,title"}}"#);
        assert!(o.fields().is_some());
        assert_eq!(
            o.with_filter(None, |f| f.map(|f| f.filter.text().to_owned())),
            Some(Some("status = 'published'".into()))
        );
        let broken = with(r#"{"query":{"filter":"status = "}}"#);
        assert_eq!(
            broken.with_filter(None, |_| ()),
            None,
            "an invalid filter receives nothing"
        );
    }
}
