//! Resolution of parsed filters into evaluable conditions, as PocketBase's
//! `RecordFieldResolver` and `search.FilterData.BuildExpr` resolve them into SQL.

use super::error::FilterError;
use super::macros::Macro;
use super::scan::{self, Group, Item, Join, Op, Operand, Sign};
use super::schema::{FieldKind, Schema};

/// PocketBase's `DefaultFilterExprLimit`.
const MAX_EXPRESSIONS: usize = 200;
/// PocketBase's `maxNestedRels`: a longer dotted path is rejected.
const MAX_NESTED_RELS: usize = 6;

/// Where a field is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Record,
    Auth,
}

/// A JSON path segment (`meta.a.0` → `$.a[0]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    Key(Box<str>),
    Index(usize),
}

/// How a field reference is read (the SQL PocketBase generates for it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    /// The column (`json_extract(col, '$')` for a JSON value), `LOWER(…)` with `lower`.
    Plain { lower: bool },
    /// `json_extract(col, '$.path')` into a JSON field.
    Path(Box<[Seg]>),
    /// `rel.id` on a single relation: PocketBase reads the column without a join.
    RelId,
    /// `field:each`: one element per join row (the variable), all of them in the multi-match.
    Each(u16),
    /// `field:length`: `json_array_length` of the multi-value column.
    Length,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldRef {
    pub(crate) source: Source,
    pub(crate) name: Box<str>,
    pub(crate) shape: Shape,
    /// The field's type when a schema was given (else read off the value).
    pub(crate) kind: Option<FieldKind>,
}

/// A resolved operand.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Opd {
    /// The `NULL` identifier (`null`, an unset `@request.auth.*` for guests).
    Null,
    /// `1`/`0` (`true`/`false`): identifiers PocketBase knows are not empty.
    Known(i64),
    /// A text parameter.
    Text(Box<str>),
    /// A number parameter (bound as a REAL).
    Num(f64),
    /// A date macro (`@now`, …), a parameter evaluated at event time.
    Macro(Macro),
    /// A plain `@request.auth.<field>` (id, collectionId, collectionName, email,
    /// emailVisibility, verified): a parameter read from the auth record.
    AuthStatic(Box<str>),
    Field(FieldRef),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cmp {
    pub(crate) left: Opd,
    pub(crate) op: Op,
    pub(crate) right: Opd,
    /// For `~`/`!~` with a literal right side: the `LIKE` pattern, wrapped once here.
    pub(crate) pattern: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Cmp(Box<Cmp>),
    And(Box<[Node]>),
    Or(Box<[Node]>),
}

/// A `:each` join variable: PocketBase joins one `json_each` per field (per alias), so every
/// `field:each` in a filter ranges over the same rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Var {
    pub(crate) source: Source,
    pub(crate) name: Box<str>,
}

pub(crate) struct Compiled {
    pub(crate) root: Node,
    pub(crate) vars: Vec<Var>,
    pub(crate) uses_macros: bool,
    pub(crate) joins_auth: bool,
}

fn unsupported(what: impl Into<String>) -> FilterError {
    FilterError::Unsupported { what: what.into() }
}

fn invalid(reason: impl Into<String>) -> FilterError {
    FilterError::Invalid {
        reason: reason.into(),
    }
}

pub(crate) fn compile(text: &str, schema: Option<&Schema>) -> Result<Compiled, FilterError> {
    let groups = scan::parse(text)?;
    let mut c = Compiler {
        schema,
        vars: Vec::new(),
        budget: MAX_EXPRESSIONS,
        uses_macros: false,
        joins_auth: false,
    };
    let root = c.groups(&groups)?;
    Ok(Compiled {
        root,
        vars: c.vars,
        uses_macros: c.uses_macros,
        joins_auth: c.joins_auth,
    })
}

/// `field:lower` as the plain field.
fn unlower(operand: &mut Opd) {
    if let Opd::Field(FieldRef {
        shape: Shape::Plain { lower },
        ..
    }) = operand
    {
        *lower = false;
    }
}

struct Compiler<'s> {
    schema: Option<&'s Schema>,
    vars: Vec<Var>,
    budget: usize,
    uses_macros: bool,
    /// An `@request.auth.*` field other than the plain ones: PocketBase
    /// joins the auth collection for it.
    joins_auth: bool,
}

impl Compiler<'_> {
    /// A flat list joined by && and || as SQL reads it: AND binds tighter than OR.
    fn groups(&mut self, groups: &[Group]) -> Result<Node, FilterError> {
        if groups.is_empty() {
            return Err(invalid("empty filter expression"));
        }
        let mut ors: Vec<Node> = Vec::new();
        let mut ands: Vec<Node> = Vec::new();
        for g in groups {
            let node = match &g.item {
                Item::Expr(e) => {
                    if self.budget == 0 {
                        return Err(invalid("max filter expressions limit reached"));
                    }
                    self.budget -= 1;
                    let mut left = self.operand(&e.left)?;
                    let mut right = self.operand(&e.right)?;
                    if matches!(e.op.sign, Sign::Like | Sign::NotLike) {
                        // LIKE ignores ASCII case and LOWER() lowers ASCII only, so
                        // `LOWER(x) LIKE p` is `x LIKE p`: skip the lowered copy.
                        unlower(&mut left);
                        unlower(&mut right);
                    }
                    let literal = match &right {
                        Opd::Text(t) => Some(t.to_string()),
                        Opd::Num(f) => Some(format!("{f}")),
                        _ => None,
                    };
                    let pattern = match e.op.sign {
                        Sign::Like | Sign::NotLike => {
                            literal.map(|l| super::sql::wrap_like(&l).into())
                        }
                        _ => None,
                    };
                    Node::Cmp(Box::new(Cmp {
                        left,
                        op: e.op,
                        right,
                        pattern,
                    }))
                }
                Item::Group(inner) => self.groups(inner)?,
            };
            if g.join == Join::Or && !ands.is_empty() {
                ors.push(collapse(std::mem::take(&mut ands), Node::And));
            }
            ands.push(node);
        }
        ors.push(collapse(ands, Node::And));
        Ok(collapse(ors, Node::Or))
    }

    fn operand(&mut self, token: &Operand) -> Result<Opd, FilterError> {
        match token {
            Operand::Text(t) => Ok(Opd::Text(t.as_str().into())),
            Operand::Number(n) => Ok(Opd::Num(go_to_float(n))),
            Operand::Function { name, args } => function(name, args),
            Operand::Identifier(id) => {
                if let Some(m) = Macro::from_name(id) {
                    self.uses_macros = true;
                    return Ok(Opd::Macro(m));
                }
                // PocketBase tries these as fields first; collections don't name fields so
                // and the edge has no schema to ask, so they are the literals here
                if id.eq_ignore_ascii_case("null") {
                    return Ok(Opd::Null);
                }
                if id.eq_ignore_ascii_case("true") {
                    return Ok(Opd::Known(1));
                }
                if id.eq_ignore_ascii_case("false") {
                    return Ok(Opd::Known(0));
                }
                self.field(id)
            }
        }
    }

    fn field(&mut self, name: &str) -> Result<Opd, FilterError> {
        if !allowed_field(name) {
            return Err(invalid(format!("failed to resolve field {name:?}")));
        }
        let props: Vec<&str> = name.split('.').collect();
        match props[0] {
            "@collection" => Err(unsupported(format!(
                "{name}: @collection joins need PocketBase's database"
            ))),
            "@request" if name.starts_with("@request.auth.") => {
                if matches!(
                    name,
                    "@request.auth.id"
                        | "@request.auth.collectionId"
                        | "@request.auth.collectionName"
                        | "@request.auth.email"
                        | "@request.auth.emailVisibility"
                        | "@request.auth.verified"
                ) {
                    return Ok(Opd::AuthStatic(props[2].into()));
                }
                self.joins_auth = true;
                self.props(Source::Auth, &props[2..], name)
            }
            "@request" => Err(unsupported(format!(
                "{name}: the edge has no request body, query, headers, method or context for it"
            ))),
            _ => self.props(Source::Record, &props, name),
        }
    }

    /// `runner.processActiveProps` without a schema: the first prop is the field, a longer
    /// path reads into it as JSON (`rel.id` reads a single relation's id).
    fn props(&mut self, source: Source, props: &[&str], full: &str) -> Result<Opd, FilterError> {
        let first = props[0];
        if props.len() == 1 {
            return self.finalize(source, first);
        }
        let kind = self.kind(source, first);
        if let (Some(Err(())), false) = (kind, is_via(first)) {
            return Err(invalid(format!("failed to resolve field {first:?}")));
        }
        match kind {
            Some(Ok(FieldKind::Json)) | None => {}
            Some(Ok(FieldKind::Relation { multiple: false }))
                if props.len() == 2 && props[1] == "id" =>
            {
                return Ok(Opd::Field(FieldRef {
                    source,
                    name: first.into(),
                    shape: Shape::RelId,
                    kind: Some(FieldKind::Relation { multiple: false }),
                }));
            }
            Some(Ok(FieldKind::Relation { .. })) => {
                return Err(unsupported(format!(
                    "{full}: expanding a relation needs PocketBase's database"
                )));
            }
            Some(Ok(_)) => {
                return Err(invalid(format!("field {first:?} is not a valid relation")));
            }
            Some(Err(())) => {}
        }
        if is_via(first) {
            return Err(unsupported(format!(
                "{full}: back-relations need PocketBase's database"
            )));
        }
        if first.contains(':') {
            // a modifier is only split from the last prop: this field does not exist
            return Err(invalid(format!("failed to resolve field {first:?}")));
        }
        if props.len() > MAX_NESTED_RELS + 1 {
            return Err(invalid(format!(
                "max nested relations reached for {full:?}"
            )));
        }
        if props.len() == 2 && props[1] == "id" && kind.is_none() {
            return Ok(Opd::Field(FieldRef {
                source,
                name: first.into(),
                shape: Shape::RelId,
                kind: None,
            }));
        }
        let mut path = Vec::with_capacity(props.len() - 1);
        for p in &props[1..] {
            // PocketBase columnifies each segment (drops `:`), then SQLite parses the path
            let seg: String = p.chars().filter(|c| *c != ':').collect();
            if seg.is_empty() {
                return Err(invalid(format!("malformed JSON path in {full:?}")));
            }
            path.push(if seg.bytes().all(|b| b.is_ascii_digit()) {
                Seg::Index(seg.parse().unwrap_or(usize::MAX))
            } else {
                Seg::Key(seg.into())
            });
        }
        Ok(Opd::Field(FieldRef {
            source,
            name: first.into(),
            shape: Shape::Path(path.into()),
            kind: kind.and_then(Result::ok),
        }))
    }

    /// `runner.finalizeActivePropsProcessing`: the last prop and its modifier.
    fn finalize(&mut self, source: Source, prop: &str) -> Result<Opd, FilterError> {
        let parts: Vec<&str> = prop.split(':').collect();
        let (name, modifier) = if parts.len() == 2 {
            match parts[1] {
                "each" | "length" | "lower" | "isset" | "changed" => (parts[0], parts[1]),
                m => return Err(invalid(format!("unknown modifier {m:?} in {prop:?}"))),
            }
        } else {
            (prop, "")
        };
        if name.contains(':') || name.is_empty() {
            return Err(invalid(format!("unknown field {name:?}")));
        }
        let kind = match self.kind(source, name) {
            Some(Err(())) => return Err(invalid(format!("unknown field {name:?}"))),
            Some(Ok(k)) => Some(k),
            None => None,
        };
        // `:each`/`:length` only apply to multi-value fields (select, relation, file)
        let multi_valuer = kind.is_none_or(FieldKind::is_multi_valuer);
        let shape = match modifier {
            "each" if multi_valuer => Shape::Each(self.var(source, name)),
            "length" if multi_valuer => Shape::Length,
            "lower" => Shape::Plain { lower: true },
            // `:isset` and `:changed` only mean something on @request.body: elsewhere
            // PocketBase ignores them and reads the column
            _ => Shape::Plain { lower: false },
        };
        Ok(Opd::Field(FieldRef {
            source,
            name: name.into(),
            shape,
            kind,
        }))
    }

    /// The schema's type for a record field: `None` without a schema (or for the auth
    /// record, whose collection varies), `Some(Err)` for a field the collection lacks.
    fn kind(&self, source: Source, name: &str) -> Option<Result<FieldKind, ()>> {
        match (source, self.schema) {
            (Source::Record, Some(schema)) => Some(schema.kind(name).ok_or(())),
            _ => None,
        }
    }

    fn var(&mut self, source: Source, name: &str) -> u16 {
        if let Some(i) = self
            .vars
            .iter()
            .position(|v| v.source == source && &*v.name == name)
        {
            return i as u16;
        }
        self.vars.push(Var {
            source,
            name: name.into(),
        });
        (self.vars.len() - 1) as u16
    }
}

fn collapse(mut nodes: Vec<Node>, wrap: fn(Box<[Node]>) -> Node) -> Node {
    if nodes.len() == 1
        && let Some(n) = nodes.pop()
    {
        return n;
    }
    wrap(nodes.into_boxed_slice())
}

/// PocketBase's `TokenFunctions`: both need SQLite (`geoDistance`'s trigonometry could be
/// done here, `strftime` would need SQLite's date functions and modifiers); arguments are
/// checked as PocketBase checks them so an invalid call stays `Invalid`.
fn function(name: &str, args: &[Operand]) -> Result<Opd, FilterError> {
    match name {
        "geoDistance" => {
            if args.len() != 4 {
                return Err(invalid(format!(
                    "[geoDistance] expected 4 arguments, got {}",
                    args.len()
                )));
            }
            if args
                .iter()
                .any(|a| !matches!(a, Operand::Identifier(_) | Operand::Number(_)))
            {
                return Err(invalid(
                    "[geoDistance] arguments must be identifiers or numbers",
                ));
            }
            Err(unsupported("geoDistance(): not evaluated at the edge"))
        }
        "strftime" => {
            if args.is_empty() || args.len() > 10 {
                return Err(invalid("[strftime] expects 1 to 10 arguments"));
            }
            if !matches!(args[0], Operand::Text(_)) {
                return Err(invalid("[strftime] the format must be a string"));
            }
            if args.len() > 1 && matches!(args[1], Operand::Function { .. }) {
                return Err(invalid("[strftime] invalid time-value argument"));
            }
            if args[2.min(args.len())..]
                .iter()
                .any(|a| !matches!(a, Operand::Text(_)))
            {
                return Err(invalid("[strftime] modifiers must be strings"));
            }
            Err(unsupported(
                "strftime(): SQLite's date functions are not evaluated at the edge",
            ))
        }
        _ => Err(invalid(format!("unknown function {name:?}"))),
    }
}

/// `^(\w+)_via_(\w+)$`
fn is_via(prop: &str) -> bool {
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    // the regex is greedy: any split point works if both sides are words
    prop.match_indices("_via_")
        .any(|(i, _)| word(&prop[..i]) && word(&prop[i + 5..]))
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The resolver's `allowedFields` patterns.
fn allowed_field(name: &str) -> bool {
    let b = name.as_bytes();
    let tail_ok = |s: &str| {
        // `[\w\.\:]*\w+$`
        !s.is_empty()
            && s.bytes().all(|c| is_word(c) || c == b'.' || c == b':')
            && s.bytes().last().is_some_and(is_word)
    };
    if b.first().is_some_and(|c| is_word(*c)) {
        return b.iter().all(|c| is_word(*c) || *c == b'.' || *c == b':');
    }
    if name == "@request.context" || name == "@request.method" {
        return true;
    }
    for prefix in [
        "@request.auth.",
        "@request.body.",
        "@request.query.",
        "@request.headers.",
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return tail_ok(rest);
        }
    }
    if let Some(rest) = name.strip_prefix("@collection.") {
        // `\w+(\:\w+)?\.[\w\.\:]*\w+$`
        let Some(dot) = rest.find('.') else {
            return false;
        };
        let (coll, tail) = (&rest[..dot], &rest[dot + 1..]);
        let mut it = coll.splitn(2, ':');
        let words = it.all(|w| !w.is_empty() && w.bytes().all(is_word));
        return words && tail_ok(tail);
    }
    false
}

/// `cast.ToFloat64` of a number token (`strconv.ParseFloat`; fexpr numbers always parse).
fn go_to_float(n: &str) -> f64 {
    n.parse::<f64>().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> FilterError {
        match compile(text, None) {
            Ok(_) => panic!("{text:?} compiled"),
            Err(e) => e,
        }
    }

    #[test]
    fn unsupported_is_detected_at_compile_time() {
        for text in [
            "@collection.posts.title = 'x'",
            "comments_via_post.id != ''",
            "@request.body.title = 1",
            "@request.query.page = 1",
            "@request.headers.x_token = 'a'",
            "@request.method = 'GET'",
            "@request.context = 'realtime'",
            "geoDistance(a, b, 1, 2) < 5",
            "strftime('%Y', created) = '2024'",
        ] {
            assert!(
                matches!(err(text), FilterError::Unsupported { .. }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn invalid_resolutions() {
        for text in [
            "#x = 1",
            "@foo = 1",
            "title:foo = 1",
            "title:lower:each = 1",
            "unknown() = 1",
            "geoDistance(a, b) < 1",
            "@request.auth = 1",
            "a:lower.b = 1",
            "a.b.c.d.e.f.g.h = 1",
        ] {
            assert!(matches!(err(text), FilterError::Invalid { .. }), "{text:?}");
        }
    }

    #[test]
    fn precedence_and_variables() {
        let c = match compile(
            "a = 1 || b = 2 && c:each = 3 || (d:each = 4 && c:each = 5)",
            None,
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let Node::Or(ors) = &c.root else {
            panic!("or at the top")
        };
        assert_eq!(ors.len(), 3);
        assert!(matches!(&ors[1], Node::And(a) if a.len() == 2));
        assert_eq!(c.vars.len(), 2, "c:each shares one join");
        assert!(is_via("a_via_b") && !is_via("a_via_") && !is_via("via_b"));
    }

    #[test]
    fn normalized_identifiers() {
        let c = match compile("NULL = TRUE && x = False", None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let Node::And(a) = &c.root else { panic!() };
        let Node::Cmp(first) = &a[0] else { panic!() };
        assert_eq!(first.left, Opd::Null);
        assert_eq!(first.right, Opd::Known(1));
    }
}
