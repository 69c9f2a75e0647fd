//! Evaluation of a compiled filter against one record (and the subscriber's auth record), with
//! the SQL PocketBase would have run: `resolveEqualExpr`'s empty/NULL normalisation, the
//! `json_each` joins of `:each`, and the multi-match `NOT EXISTS` of non-`?` operators.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use super::compile::{Cmp, FieldRef, Node, Opd, Seg, Shape, Source, Var};
use super::macros::Macros;
use super::scan::Sign;
use super::schema::FieldKind;
use super::sql::{self, Aff, Rel, Val};

/// The record cannot be judged as PocketBase would (a field it lacks, a relation to expand):
/// PocketBase would fail the query, so nothing is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stop;

/// How PocketBase classifies an operand when it builds `=`/`!=` (`NullFallback`, params).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A column or expression: compared through `COALESCE(x, '')` or `= ''`/`IS NULL`.
    Column,
    /// A `json_extract`: `NullFallbackDisabled`, compared with `IS`/`IS NOT`.
    Disabled,
    /// A bound parameter; empty when it is `""`.
    Param { empty: bool },
    /// The `NULL` identifier.
    EmptyIdent,
    /// `1`/`0`, known to be non-empty.
    KnownIdent,
}

/// A parameter's Go value, for `cast.ToString` in `~` patterns.
#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    Str(&'a str),
    F64(f64),
    I64(i64),
    Bool(bool),
    Json(&'a Value),
}

struct R<'a> {
    val: Val<'a>,
    aff: Aff,
    class: Class,
    raw: Option<Raw<'a>>,
    /// All the elements of a multi-value `:each` field, for the multi-match.
    multi: Option<&'a [Value]>,
    /// PocketBase's email-visibility guard: `AND emailVisibility = TRUE`.
    guard: Option<Option<bool>>,
}

impl<'a> R<'a> {
    fn new(val: Val<'a>, aff: Aff, class: Class) -> R<'a> {
        R {
            val,
            aff,
            class,
            raw: None,
            multi: None,
            guard: None,
        }
    }

    fn param(val: Val<'a>, raw: Raw<'a>, empty: bool) -> R<'a> {
        R {
            raw: Some(raw),
            ..R::new(val, Aff::None, Class::Param { empty })
        }
    }

    /// The operand as the multi-match subquery copies it: identifier and params only.
    fn for_multi_match(&self) -> R<'a> {
        R {
            val: self.val.clone(),
            aff: self.aff,
            class: if self.class == Class::Disabled {
                Class::Column
            } else {
                self.class
            },
            raw: self.raw,
            multi: None,
            guard: None,
        }
    }
}

pub(crate) struct Ctx<'a> {
    pub(crate) record: &'a Map<String, Value>,
    pub(crate) auth: Option<&'a Map<String, Value>>,
    pub(crate) macros: Option<&'a Macros>,
    pub(crate) binds: &'a [u32],
}

/// The number of join rows a `:each` variable ranges over (a LEFT JOIN of an empty array
/// still yields one row, of NULL).
pub(crate) fn cardinality(
    var: &Var,
    record: &Map<String, Value>,
    auth: Option<&Map<String, Value>>,
) -> u32 {
    let map = match var.source {
        Source::Record => Some(record),
        Source::Auth => auth,
    };
    match map.and_then(|m| m.get(&*var.name)) {
        Some(Value::Array(a)) if !a.is_empty() => a.len() as u32,
        _ => 1,
    }
}

pub(crate) fn eval(node: &Node, ctx: &Ctx) -> Result<Option<bool>, Stop> {
    match node {
        Node::Cmp(c) => cmp(c, ctx),
        Node::And(nodes) => {
            let mut acc = Some(true);
            for n in nodes.iter() {
                acc = sql::and(acc, eval(n, ctx)?);
                if acc == Some(false) {
                    break;
                }
            }
            Ok(acc)
        }
        Node::Or(nodes) => {
            let mut acc = Some(false);
            for n in nodes.iter() {
                acc = sql::or(acc, eval(n, ctx)?);
                if acc == Some(true) {
                    break;
                }
            }
            Ok(acc)
        }
    }
}

fn cmp(c: &Cmp, ctx: &Ctx) -> Result<Option<bool>, Stop> {
    let l = resolve(&c.left, ctx)?;
    let r = resolve(&c.right, ctx)?;
    let sign = c.op.sign;
    let pattern = c.pattern.as_deref();
    let mut result = build(sign, &l, &r, pattern);
    if !c.op.any {
        let extra = match (l.multi, r.multi) {
            (Some(la), Some(ra)) => Some(many_vs_many(sign, la, ra)),
            (Some(la), None) => Some(many_vs_one(sign, la, &r.for_multi_match(), pattern)),
            (None, Some(ra)) => Some(many_vs_one_inverse(sign, ra, &l.for_multi_match())),
            (None, None) => None,
        };
        if let Some(extra) = extra {
            result = sql::and(result, Some(extra));
        }
    }
    if let Some(g) = l.guard {
        result = sql::and(result, g);
    }
    if let Some(g) = r.guard {
        result = sql::and(result, g);
    }
    Ok(result)
}

/// `NOT EXISTS (SELECT … FROM <elements> WHERE NOT (<elem> op <other>))`.
fn many_vs_one(sign: Sign, elems: &[Value], other: &R, pattern: Option<&str>) -> bool {
    let check = |e: Val| {
        let elem = R::new(e, Aff::None, Class::Column);
        build(sign, &elem, other, pattern) != Some(false)
    };
    if elems.is_empty() {
        return check(Val::Null);
    }
    elems.iter().all(|e| check(json_value(e)))
}

/// The same with the multi-value operand on the right.
fn many_vs_one_inverse(sign: Sign, elems: &[Value], other: &R) -> bool {
    let check = |e: Val| {
        let elem = R::new(e, Aff::None, Class::Column);
        build(sign, other, &elem, None) != Some(false)
    };
    if elems.is_empty() {
        return check(Val::Null);
    }
    elems.iter().all(|e| check(json_value(e)))
}

/// `NOT EXISTS (SELECT … FROM <left elements> LEFT JOIN <right elements> WHERE NOT (l op r))`.
fn many_vs_many(sign: Sign, left: &[Value], right: &[Value]) -> bool {
    const NULL: &[Value] = &[Value::Null];
    let left = if left.is_empty() { NULL } else { left };
    let right = if right.is_empty() { NULL } else { right };
    left.iter().all(|l| {
        right.iter().all(|r| {
            let (l, r) = (
                R::new(json_value(l), Aff::None, Class::Column),
                R::new(json_value(r), Aff::None, Class::Column),
            );
            build(sign, &l, &r, None) != Some(false)
        })
    })
}

/// `pattern` is the precomputed `LIKE` pattern of a literal right operand.
fn build(sign: Sign, l: &R, r: &R, pattern: Option<&str>) -> Option<bool> {
    match sign {
        Sign::Eq => equal(true, l, r),
        Sign::Neq => equal(false, l, r),
        Sign::Like => like(l, r, pattern),
        Sign::NotLike => like(l, r, pattern).map(|m| !m),
        Sign::Lt => sql::compare(l.val.clone(), l.aff, Rel::Lt, r.val.clone(), r.aff),
        Sign::Lte => sql::compare(l.val.clone(), l.aff, Rel::Lte, r.val.clone(), r.aff),
        Sign::Gt => sql::compare(l.val.clone(), l.aff, Rel::Gt, r.val.clone(), r.aff),
        Sign::Gte => sql::compare(l.val.clone(), l.aff, Rel::Gte, r.val.clone(), r.aff),
    }
}

const EMPTY: Val<'static> = Val::Text(Cow::Borrowed(""));

/// `search.resolveEqualExpr`.
fn equal(eq: bool, l: &R, r: &R) -> Option<bool> {
    let (rel, null_rel) = if eq {
        (Rel::Eq, Rel::Is)
    } else {
        (Rel::IsNot, Rel::IsNot)
    };
    if l.class == Class::Disabled || r.class == Class::Disabled {
        return sql::compare(l.val.clone(), l.aff, null_rel, r.val.clone(), r.aff);
    }
    let empty = |x: &R| matches!(x.class, Class::EmptyIdent | Class::Param { empty: true });
    let known = |x: &R| matches!(x.class, Class::KnownIdent | Class::Param { empty: false });
    let (le, re) = (empty(l), empty(r));
    if le && re {
        return Some(eq);
    }
    if known(l) || known(r) {
        let lv = if le {
            (EMPTY, Aff::None)
        } else {
            (l.val.clone(), l.aff)
        };
        let rv = if re {
            (EMPTY, Aff::None)
        } else {
            (r.val.clone(), r.aff)
        };
        return sql::compare(lv.0, lv.1, rel, rv.0, rv.1);
    }
    let against_empty = |x: &R| {
        let cmp = sql::compare(EMPTY, Aff::None, rel, x.val.clone(), x.aff);
        if eq {
            sql::or(cmp, Some(x.val.is_null()))
        } else {
            sql::and(cmp, Some(!x.val.is_null()))
        }
    };
    if le {
        return against_empty(r);
    }
    if re {
        return against_empty(l);
    }
    sql::compare(coalesce(l), Aff::None, rel, coalesce(r), Aff::None)
}

fn coalesce<'a>(x: &R<'a>) -> Val<'a> {
    if x.val.is_null() {
        EMPTY
    } else {
        x.val.clone()
    }
}

/// `l LIKE <pattern> ESCAPE '\'`: a parameter is wrapped in `%` unless it has its own
/// wildcard; anything else becomes `'%' || r || '%'`.
fn like(l: &R, r: &R, pattern: Option<&str>) -> Option<bool> {
    let text = l.val.to_text()?;
    if let Some(p) = pattern {
        return Some(sql::like(&text, p));
    }
    match r.raw {
        Some(raw) => {
            let raw = go_to_string(raw);
            let pattern = sql::wrap_like(&raw);
            Some(sql::like(&text, &pattern))
        }
        None => {
            let inner = r.val.to_text()?;
            let mut pattern = String::with_capacity(inner.len() + 2);
            pattern.push('%');
            pattern.push_str(&inner);
            pattern.push('%');
            Some(sql::like(&text, &pattern))
        }
    }
}

/// `cast.ToString` of a parameter.
fn go_to_string(raw: Raw<'_>) -> Cow<'_, str> {
    match raw {
        Raw::Str(s) => Cow::Borrowed(s),
        // strconv.FormatFloat(f, 'f', -1, 64): never an exponent, like Rust's Display
        Raw::F64(f) => Cow::Owned(format!("{f}")),
        Raw::I64(i) => Cow::Owned(i.to_string()),
        Raw::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Raw::Json(v) => Cow::Owned(compact(v)),
    }
}

fn resolve<'a>(opd: &'a Opd, ctx: &Ctx<'a>) -> Result<R<'a>, Stop> {
    Ok(match opd {
        Opd::Null => R::new(Val::Null, Aff::None, Class::EmptyIdent),
        Opd::Known(i) => R::new(Val::Int(*i), Aff::None, Class::KnownIdent),
        Opd::Text(t) => R::param(Val::Text(Cow::Borrowed(t)), Raw::Str(t), t.is_empty()),
        Opd::Num(f) => R::param(Val::Real(*f), Raw::F64(*f), false),
        Opd::Macro(m) => match ctx.macros.map(|ms| ms.value(*m)) {
            Some(Ok(text)) => R::param(Val::Text(Cow::Borrowed(text)), Raw::Str(text), false),
            Some(Err(i)) => R::param(Val::Int(i), Raw::I64(i), false),
            None => return Err(Stop),
        },
        Opd::AuthStatic(name) => match ctx.auth.and_then(|a| a.get(&**name)) {
            None | Some(Value::Null) => R::new(Val::Null, Aff::None, Class::EmptyIdent),
            Some(Value::String(s)) => {
                R::param(Val::Text(Cow::Borrowed(s)), Raw::Str(s), s.is_empty())
            }
            Some(Value::Bool(b)) => R::param(Val::Int(i64::from(*b)), Raw::Bool(*b), false),
            Some(Value::Number(n)) => {
                let v = number(n);
                let raw = match v {
                    Val::Int(i) => Raw::I64(i),
                    Val::Real(f) => Raw::F64(f),
                    _ => Raw::I64(0),
                };
                R::param(v, raw, false)
            }
            Some(v) => R::param(Val::Text(Cow::Owned(compact(v))), Raw::Json(v), false),
        },
        Opd::Field(f) => field(f, ctx)?,
    })
}

fn field<'a>(f: &'a FieldRef, ctx: &Ctx<'a>) -> Result<R<'a>, Stop> {
    let map = match f.source {
        Source::Record => ctx.record,
        Source::Auth => match ctx.auth {
            Some(a) => a,
            // PocketBase resolves every @request.auth.* to NULL for guests
            None => return Ok(R::new(Val::Null, Aff::None, Class::EmptyIdent)),
        },
    };
    // the export's `collectionId`/`collectionName` (and `expand`) are not fields to filter on
    let value = match &*f.name {
        "collectionId" | "collectionName" | "expand" => None,
        name => map.get(name),
    };
    let Some(value) = value else {
        return match f.source {
            // an unknown field: PocketBase rejects the filter
            Source::Record => Err(Stop),
            // @request.auth.* fields the auth collection lacks are NULL
            Source::Auth => Ok(R::new(Val::Null, Aff::None, Class::EmptyIdent)),
        };
    };
    Ok(match &f.shape {
        Shape::Plain { lower } => {
            let mut r = column_of(value, f.kind);
            if &*f.name == "email" && f.source == Source::Record && matches!(r.class, Class::Column)
            {
                // auth collections only show emails marked visible to filters
                if let Some(vis) = map.get("emailVisibility") {
                    r.guard = Some(Some(vis.as_bool() == Some(true)));
                }
            }
            if *lower {
                r.val = sql::lower(r.val);
                r.aff = Aff::None;
            }
            r
        }
        Shape::Path(segs) => match value {
            // a text or relation field: PocketBase would reject the path or join a collection
            Value::String(_) if f.kind != Some(FieldKind::Json) => return Err(Stop),
            _ => R::new(
                json_value_opt(walk(value, segs)),
                Aff::None,
                Class::Disabled,
            ),
        },
        Shape::RelId => match value {
            Value::String(s) => R::new(Val::Text(Cow::Borrowed(s)), Aff::Text, Class::Column),
            Value::Null | Value::Object(_) => R::new(
                json_value_opt(walk(value, &[Seg::Key("id".into())])),
                Aff::None,
                Class::Disabled,
            ),
            _ => return Err(Stop),
        },
        Shape::Each(var) => match value {
            Value::Array(items) => {
                let i = ctx.binds.get(*var as usize).copied().unwrap_or(0) as usize;
                R {
                    multi: Some(items.as_slice()),
                    ..R::new(
                        items.get(i).map(json_value).unwrap_or(Val::Null),
                        Aff::None,
                        Class::Column,
                    )
                }
            }
            // a single-value field: json_each(json_array(col)) has one row, the column
            Value::String(s) => R::new(Val::Text(Cow::Borrowed(s)), Aff::None, Class::Column),
            // not a multi-value field: the modifier is ignored
            other => column_of(other, f.kind),
        },
        Shape::Length => match value {
            Value::Array(items) => R::new(Val::Int(items.len() as i64), Aff::None, Class::Column),
            Value::String(s) => {
                R::new(Val::Int(i64::from(!s.is_empty())), Aff::None, Class::Column)
            }
            other => column(other),
        },
    })
}

fn column_of(value: &Value, kind: Option<FieldKind>) -> R<'_> {
    match kind {
        // json_extract(col, '$'): no affinity, NullFallbackDisabled
        Some(FieldKind::Json) => R::new(json_value(value), Aff::None, Class::Disabled),
        _ => column(value),
    }
}

/// A plain column read: text/number/bool/multi-value columns keep their affinity (TEXT,
/// NUMERIC, NUMERIC, and NUMERIC for `JSON` columns); a JSON field is read via
/// `json_extract(col, '$')` (no affinity, `IS` comparisons).
fn column(value: &Value) -> R<'_> {
    match value {
        Value::String(s) => R::new(Val::Text(Cow::Borrowed(s)), Aff::Text, Class::Column),
        Value::Number(n) => R::new(number(n), Aff::Numeric, Class::Column),
        Value::Bool(b) => R::new(Val::Int(i64::from(*b)), Aff::Numeric, Class::Column),
        Value::Array(_) => R::new(
            Val::Text(Cow::Owned(compact(value))),
            Aff::Numeric,
            Class::Column,
        ),
        Value::Null => R::new(Val::Null, Aff::None, Class::Disabled),
        Value::Object(_) => R::new(
            Val::Text(Cow::Owned(compact(value))),
            Aff::None,
            Class::Disabled,
        ),
    }
}

fn walk<'v>(mut value: &'v Value, segs: &[Seg]) -> Option<&'v Value> {
    for seg in segs {
        value = match (seg, value) {
            (Seg::Key(k), Value::Object(m)) => m.get(&**k)?,
            (Seg::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

fn json_value_opt(v: Option<&Value>) -> Val<'_> {
    v.map(json_value).unwrap_or(Val::Null)
}

/// What `json_extract`/`json_each.value` give for a JSON value.
fn json_value(v: &Value) -> Val<'_> {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Int(i64::from(*b)),
        Value::Number(n) => number(n),
        Value::String(s) => Val::Text(Cow::Borrowed(s)),
        Value::Array(_) | Value::Object(_) => Val::Text(Cow::Owned(compact(v))),
    }
}

fn number(n: &Number) -> Val<'static> {
    match n.as_i64() {
        Some(i) => Val::Int(i),
        None => Val::Real(n.as_f64().unwrap_or(0.0)),
    }
}

/// Minified JSON, as SQLite returns an array or object and PocketBase stores multi-values.
fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::sql::wrap_like;

    #[test]
    fn wrap_like_is_bug_compatible() {
        assert_eq!(wrap_like("abc"), "%abc%");
        assert_eq!(wrap_like("a_c"), "%a\\_c%");
        assert_eq!(wrap_like("__"), "%_\\_%");
        assert_eq!(wrap_like("\\%"), "%\\%%");
        assert_eq!(wrap_like("a%"), "a%");
        assert_eq!(wrap_like("_"), "%\\_%");
    }
}
