//! PocketBase's realtime subscription options at the edge: the filter language (`filter`),
//! the `fields` projection, and the `options` query parameter of a subscription.
//!
//! * [`Filter`]: `Filter::compile(text)` once, `filter.matches(record, auth, now)` per
//!   subscriber per event. The grammar is fexpr's ([`scan`]), the resolution PocketBase's
//!   `RecordFieldResolver` ([`compile`]) and the semantics those of the SQLite query PocketBase
//!   would run ([`eval`], [`sql`]): affinity, NULL/empty normalisation, `LIKE`, `json_each`
//!   joins and multi-match.
//! * [`Fields`]: `Fields::parse("id,title,body:excerpt(200,true)")` and `project(record)`,
//!   PocketBase's `picker.Pick` ([`fields`]).
//! * [`SubscriptionOptions::parse`]: `posts/*?options=…` as the SDK sends it ([`options`]).
//!
//! There is no collection schema at the edge, so a field's type is read off its JSON value:
//! a string is a text-like column (text, date, email, url, editor, single select/relation/file),
//! a number a number field, a boolean a bool field, an array a multi-value field
//! (select/relation/file), `null` or an object a JSON field. Where PocketBase would need its
//! database (another collection, a relation's fields) the filter is `Unsupported` when that
//! shows in the text, and does not match when it only shows in the record (a dotted path into
//! a text or relation value, a field the record lacks): the edge never delivers what
//! PocketBase might not.

mod compile;
mod error;
mod eval;
mod fields;
mod macros;
mod options;
mod scan;
mod schema;
mod sql;

use std::time::SystemTime;

use serde_json::Value;

pub use error::FilterError;
pub use fields::{Fields, FieldsError};
pub use options::{OptionsError, SubscriptionOptions};
pub use schema::{FieldKind, Schema};

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct Filter {
    text: Box<str>,
    root: compile::Node,
    vars: Box<[compile::Var]>,
    uses_macros: bool,
    joins_auth: bool,
}

/// Most filters join fewer `:each` fields than this; more spill to the heap.
const INLINE_VARS: usize = 8;

impl Filter {
    /// Parses and resolves a filter as PocketBase would, without the collection's schema:
    /// each field's type is read off its JSON value at evaluation.
    pub fn compile(text: &str) -> Result<Filter, FilterError> {
        Self::build(text, None)
    }

    /// Parses and resolves a filter for a collection whose field types are known: unknown
    /// fields are `Invalid`, relation expansions `Unsupported`, and values compare with their
    /// field's SQL type (a JSON field's `5` is not a number field's `5`).
    pub fn compile_with(text: &str, schema: &Schema) -> Result<Filter, FilterError> {
        Self::build(text, Some(schema))
    }

    fn build(text: &str, schema: Option<&Schema>) -> Result<Filter, FilterError> {
        let c = compile::compile(text, schema)?;
        Ok(Filter {
            text: text.into(),
            root: c.root,
            vars: c.vars.into_boxed_slice(),
            uses_macros: c.uses_macros,
            joins_auth: c.joins_auth,
        })
    }

    /// Whether it reads an `@request.auth.*` field other than `id`,
    /// `collectionId`, `collectionName`, `email`, `emailVisibility` and
    /// `verified`, which PocketBase resolves by joining the auth collection.
    pub fn joins_auth(&self) -> bool {
        self.joins_auth
    }

    /// The filter's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether PocketBase's query for this filter would select `record` for a subscriber
    /// authenticated as `auth` (its auth record as JSON, `None` for a guest), with the date
    /// macros taken at `now`.
    pub fn matches(&self, record: &Value, auth: Option<&Value>, now: SystemTime) -> bool {
        let Some(record) = record.as_object() else {
            return false;
        };
        let auth = auth.and_then(Value::as_object);
        let macros = self.uses_macros.then(|| macros::Macros::at(now));
        if self.vars.is_empty() {
            let ctx = eval::Ctx {
                record,
                auth,
                macros: macros.as_ref(),
                binds: &[],
            };
            return eval::eval(&self.root, &ctx) == Ok(Some(true));
        }
        // The LEFT JOINs of every `:each` field: the row is selected if any combination of
        // their rows satisfies the WHERE.
        let cards: smallvec::SmallVec<[u32; INLINE_VARS]> = self
            .vars
            .iter()
            .map(|v| eval::cardinality(v, record, auth))
            .collect();
        let mut binds: smallvec::SmallVec<[u32; INLINE_VARS]> =
            smallvec::smallvec![0; self.vars.len()];
        loop {
            let ctx = eval::Ctx {
                record,
                auth,
                macros: macros.as_ref(),
                binds: &binds,
            };
            match eval::eval(&self.root, &ctx) {
                Ok(Some(true)) => return true,
                Err(eval::Stop) => return false,
                Ok(_) => {}
            }
            let mut i = 0;
            loop {
                if i == binds.len() {
                    return false;
                }
                binds[i] += 1;
                if binds[i] < cards[i] {
                    break;
                }
                binds[i] = 0;
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: &str, record: Value) -> bool {
        m_auth(filter, record, None)
    }

    fn m_auth(filter: &str, record: Value, auth: Option<Value>) -> bool {
        match Filter::compile(filter) {
            Ok(f) => f.matches(&record, auth.as_ref(), SystemTime::now()),
            Err(e) => panic!("{filter:?}: {e}"),
        }
    }

    #[test]
    fn operators_on_text_numbers_and_bools() {
        let r = json!({"id": "r1", "title": "Hello", "n": 5, "b": true, "empty": ""});
        assert!(m("title = 'Hello'", r.clone()));
        assert!(m("title != 'hello'", r.clone()));
        assert!(m("title ~ 'ell'", r.clone()));
        assert!(m("title ~ 'h%'", r.clone()));
        assert!(m("title !~ 'xyz'", r.clone()));
        assert!(m("n > 4 && n >= 5 && n < 6 && n <= 5", r.clone()));
        assert!(m("n = '5'", r.clone()), "numeric affinity on the text");
        assert!(
            !m("title = 5", json!({"title": "5"})),
            "5 binds as the REAL 5.0"
        );
        assert!(m("title = 5", json!({"title": "5.0"})));
        assert!(m("b = true && b != false && b = 1", r.clone()));
        assert!(m("empty = null && empty = '' && title != null", r.clone()));
        assert!(!m("n = null || n = ''", r.clone()));
    }

    #[test]
    fn json_fields_compare_with_is() {
        let r = json!({"j": null, "k": "", "o": {"a": {"b": 1}, "x": [1, 2]}});
        assert!(m("j = null", r.clone()));
        assert!(!m("j = ''", r.clone()));
        assert!(m("o.a.b = 1 && o.x.1 = 2 && o.missing = null", r.clone()));
        assert!(m("o ~ '\"b\":1'", r.clone()));
    }

    #[test]
    fn multi_values() {
        let r = json!({"tags": ["a", "b"], "none": [], "one": "a"});
        assert!(m("tags ?~ 'a'", r.clone()), "LIKE on the JSON text");
        assert!(!m("tags = 'a'", r.clone()));
        assert!(m("tags:each ?= 'a'", r.clone()));
        assert!(!m("tags:each = 'a'", r.clone()), "every element");
        assert!(m("tags:each ?= 'a' || tags:each ?= 'z'", r.clone()));
        assert!(
            !m("tags:each ?= 'a' && tags:each ?= 'b'", r.clone()),
            "one join row"
        );
        assert!(m(
            "tags:length = 2 && none:length = 0 && one:length = 1",
            r.clone()
        ));
        assert!(m("none:each != 'a'", r.clone()));
        assert!(m("one:each = 'a'", r.clone()));
    }

    #[test]
    fn auth_fields() {
        let r = json!({"author": "u1", "owner": {"id": "u2"}});
        let auth = json!({"id": "u1", "collectionName": "users", "verified": true, "name": "Al", "roles": ["x"]});
        assert!(m_auth(
            "author = @request.auth.id",
            r.clone(),
            Some(auth.clone())
        ));
        assert!(m_auth(
            "@request.auth.verified = true",
            r.clone(),
            Some(auth.clone())
        ));
        assert!(m_auth(
            "@request.auth.name:lower = 'al'",
            r.clone(),
            Some(auth.clone())
        ));
        assert!(m_auth(
            "@request.auth.roles:each ?= 'x'",
            r.clone(),
            Some(auth.clone())
        ));
        assert!(m_auth(
            "@request.auth.missing = null",
            r.clone(),
            Some(auth.clone())
        ));
        assert!(!m_auth("author = @request.auth.id", r.clone(), None));
        assert!(
            m_auth("@request.auth.id = ''", r.clone(), None),
            "guests: '' = ''"
        );
        assert!(m_auth("author.id = 'u1'", r.clone(), None));
    }

    #[test]
    fn unknown_fields_and_relation_paths_never_match() {
        let r = json!({"author": "u1", "title": "x"});
        assert!(!m("missing = null", r.clone()));
        assert!(!m("missing = null || title = 'x'", r.clone()));
        assert!(!m("author.name = 'x' || title = 'x'", r));
    }

    #[test]
    fn macros_compare_as_text() {
        let r = json!({"d": "2000-01-01 00:00:00.000Z", "e": ""});
        assert!(m("d < @now && d < @todayStart && e < @now", r.clone()));
        assert!(m("@year > 2000 && @month >= 1", r));
    }
}
