// ringcast forwarder: the code behind ../ringcast.pb.js (a plain module, not a hook file, so
// PocketBase loads it only through require()).
//
// What is sent, for each record change, to POST ${RINGCAST_URL}/api/publish:
//   {"collection":"<name>","collectionId":"<id>","action":"create|update|delete",
//    "record":{…},"rules":{"list":…,"view":…},"schema":{"fields":[…]},"hidden":{…},"email":"…",
//    "audience":<audience>}
//
// record: the record as PocketBase's own realtime broadcast serialises it for a client that is
//   neither a superuser nor the record's owner — `record.fresh()` marshalled by Go (exactly what
//   apis/realtime.go does): keys sorted, hidden fields left out, and for auth collections the
//   email only when emailVisibility is true. The Go JSON is spliced into the body verbatim, so
//   JSON fields, numbers and dates come out byte for byte as PocketBase writes them.
//
// rules: the collection's list and view rules as PocketBase stores them (null: superusers only,
//   "": everyone, otherwise a filter). ringcast evaluates them per subscriber as PocketBase's
//   realtime does (the view rule for `posts/<id>`, the list rule for `posts/*`), together with
//   each subscription's own filter and fields options. A rule it cannot evaluate from what it is
//   sent — an @collection join, a relation's or a hidden field, @request.headers… — falls back to
//   the audience below.
//
// schema: the collection's fields ({name, type, hidden, maxSelect}), so that rules and filters
//   compare with PocketBase's types. For an auth collection `email` is marked hidden: the record
//   carries it only when emailVisibility is on, and a rule on it must not be evaluated against
//   its absence.
//
// hidden / email: what PocketBase's realtime shows only to some subscribers — the hidden fields'
//   values (superusers only) and, for an auth record whose emailVisibility is off, its email (to
//   superusers, the record's own user, and whoever passes the collection's manage rule, sent as
//   rules.manage). ringcast delivers them to those subscribers only. Set
//   RINGCAST_SEND_HIDDEN=false to keep hidden fields inside PocketBase (superusers then get the
//   public record).
//
// audience, from the collection's list rule (the rule PocketBase applies to `posts/*`):
//   ""   (everyone may list)                     -> "public"
//   null (superusers only)                       -> "superusers"
//   exactly one comparison of a record field with the requesting user's id, nothing else:
//       <field> = @request.auth.id        @request.auth.id = <field>
//       <field> ?= @request.auth.id       @request.auth.id ?= <field>
//     where <field> is a field name, optionally followed by ".id" (`owners.id = …`), and any
//     whitespace around the operator and at the ends is allowed
//                                               -> {"users": [ids]}
//     ids are the field's values on the record (one for a single relation or text field, all of
//     them for a multi-relation). PocketBase's semantics are kept for multi-valued fields: `=`
//     means every value must equal the user, so the audience is that one user when all values
//     are the same id and nobody (superusers only) otherwise; `?=` means any value, so all of
//     them. Anything more — `@request.auth.id != "" && owner = @request.auth.id`, `||`, other
//     operators, @collection joins, quoted values — is NOT recognised and falls through to:
//   otherwise: env RINGCAST_AUDIENCE_<COLLECTION> (name upper-cased, non-alphanumerics as "_"):
//       "public" | "superusers" | "field:<name>" (users = that field's values, as above with `?=`)
//     and without it "superusers", with a warning logged once per collection: an unknown rule
//     must never leak records to users it would have hidden them from.
// Superusers always receive everything (ringcast's rule), whatever the audience.
//
// Not forwarded: collections whose name starts with "_" — PocketBase's system collections
// (_superusers, _authOrigins, _mfas, _otps, _externalAuths) hold credentials and login
// bookkeeping that no realtime client should see.
//
// Failures: a network error, a 5xx or a 429 is retried (3 attempts, 100 ms then 300 ms apart);
// any other non-2xx (the request itself is wrong) is not. Every failure is logged with
// $app.logger().error; none is thrown, so the record write is never affected.

const OWNER_RULE = [
    /^\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.id)?\s*(\?=|=)\s*@request\.auth\.id\s*$/,
    /^\s*@request\.auth\.id\s*(\?=|=)\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.id)?\s*$/,
];
const RETRY_WAITS_MS = [100, 300];

/** The owner field and operator of a recognised list rule, or null. */
function parseOwnerRule(rule) {
    let m = OWNER_RULE[0].exec(rule);
    if (m) return { field: m[1], any: m[2] === "?=" };
    m = OWNER_RULE[1].exec(rule);
    if (m) return { field: m[2], any: m[1] === "?=" };
    return null;
}

/** {"users": [...]} for a record whose field `field` is compared with the user's id. */
function usersAudience(record, field, any) {
    // getStringSlice gives [] for an empty value, [v] for a single one, all of a multi-relation.
    const ids = [...new Set(record.getStringSlice(field))];
    if (any) return { users: ids };
    return { users: ids.length === 1 ? ids : [] };
}

function warnOnce(collection, message) {
    const key = `ringcast.warned.${collection}`;
    if ($app.store().has(key)) return;
    $app.store().set(key, true);
    $app.logger().warn(message, "collection", collection);
}

function audienceFromEnv(collection, record) {
    const envName = `RINGCAST_AUDIENCE_${collection.name.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`;
    const value = $os.getenv(envName);
    if (value === "public" || value === "superusers") return value;
    if (value.startsWith("field:") && value.length > "field:".length) {
        return usersAudience(record, value.slice("field:".length), true);
    }
    warnOnce(collection.name, value === ""
        ? `ringcast: list rule not recognised; where ringcast cannot evaluate it either, records go to superusers only; set ${envName} to public, superusers or field:<name>`
        : `ringcast: ${envName}=${JSON.stringify(value)} is not public, superusers or field:<name>; sending to superusers only`);
    return "superusers";
}

function audienceOf(collection, record) {
    // listRule is a Go *string: null when nil, otherwise a wrapper object (typeof "object", so
    // never === ""); String() gives its text.
    if (collection.listRule === null || collection.listRule === undefined) return "superusers";
    const rule = String(collection.listRule);
    if (rule === "") return "public";
    const owner = parseOwnerRule(rule);
    if (owner) return usersAudience(record, owner.field, owner.any);
    return audienceFromEnv(collection, record);
}

/** The collection's fields as the edge needs them to type rules and filters. */
function schemaOf(exported) {
    const auth = exported.type === "auth";
    return {
        fields: (exported.fields ?? []).map((f) => ({
            name: f.name,
            type: f.type,
            hidden: Boolean(f.hidden) || (auth && f.name === "email"),
            maxSelect: f.maxSelect ?? 0,
        })),
    };
}

/** `hidden` and `email` for the body: see the top of this file. */
function privateFields(record, exported) {
    const auth = exported.type === "auth";
    const hiddenNames = (exported.fields ?? []).filter((f) => f.hidden).map((f) => f.name);
    const sendHidden = $os.getenv("RINGCAST_SEND_HIDDEN") !== "false";
    const withEmail = auth && !record.getBool("emailVisibility");
    if (!(sendHidden && hiddenNames.length) && !withEmail) return "";
    // The record as PocketBase's realtime exports it for a superuser.
    const full = record.fresh();
    full.unhide(...hiddenNames);
    full.ignoreEmailVisibility(true);
    const values = JSON.parse(JSON.stringify(full));
    let out = "";
    if (sendHidden && hiddenNames.length) {
        const hidden = {};
        for (const name of hiddenNames) {
            if (name in values) hidden[name] = values[name];
        }
        // PocketBase never exports some (a password's hash, the token key) even unhidden.
        if (Object.keys(hidden).length) out += `,"hidden":${JSON.stringify(hidden)}`;
    }
    if (withEmail && typeof values.email === "string") out += `,"email":${JSON.stringify(values.email)}`;
    return out;
}

function send(url, headers, body, collection, action, recordId) {
    const timeout = Number($os.getenv("RINGCAST_TIMEOUT")) || 2;
    for (let attempt = 1; ; attempt++) {
        let problem;
        let retryable = true;
        try {
            const res = $http.send({ url, method: "POST", headers, body, timeout });
            if (res.statusCode >= 200 && res.statusCode < 300) return;
            retryable = res.statusCode >= 500 || res.statusCode === 429;
            problem = `HTTP ${res.statusCode}: ${toString(res.body).slice(0, 500)}`;
        } catch (err) {
            problem = String(err);
        }
        const last = !retryable || attempt > RETRY_WAITS_MS.length;
        $app.logger().error("ringcast: publish failed" + (last ? "; the event is lost" : "; retrying"),
            "collection", collection, "action", action, "recordId", recordId,
            "attempt", attempt, "error", problem);
        if (last) return;
        sleep(RETRY_WAITS_MS[attempt - 1]);
    }
}

/** Publishes one record change; never throws. */
function forward(record, action) {
    try {
        const collection = record.collection();
        if (collection.name.startsWith("_")) return;
        const base = $os.getenv("RINGCAST_URL").replace(/\/+$/, "");
        if (!base) {
            warnOnce("*", "ringcast: RINGCAST_URL is not set; record changes are not forwarded");
            return;
        }
        const headers = { "content-type": "application/json" };
        const token = $os.getenv("RINGCAST_TOKEN");
        if (token) headers.authorization = `Bearer ${token}`;
        // JSON.stringify of a Go record calls its MarshalJSON (the public export); fresh() drops
        // expand and any per-request state such as ignoreEmailVisibility, as realtime.go does.
        const recordJson = JSON.stringify(record.fresh());
        // The collection as its own API exports it: rules as null or strings, fields as JSON.
        const exported = JSON.parse(JSON.stringify(collection));
        const rules = { list: exported.listRule ?? null, view: exported.viewRule ?? null };
        if (exported.type === "auth") rules.manage = exported.manageRule ?? null;
        const body = `{"collection":${JSON.stringify(collection.name)}` +
            `,"collectionId":${JSON.stringify(collection.id)}` +
            `,"action":${JSON.stringify(action)}` +
            `,"record":${recordJson}` +
            `,"rules":${JSON.stringify(rules)}` +
            `,"schema":${JSON.stringify(schemaOf(exported))}` +
            privateFields(record, exported) +
            `,"audience":${JSON.stringify(audienceOf(collection, record))}}`;
        send(`${base}/api/publish`, headers, body, collection.name, action, record.id);
    } catch (err) {
        $app.logger().error("ringcast: cannot forward record change", "action", action,
            "recordId", record.id, "error", String(err));
    }
}

module.exports = { forward, parseOwnerRule };
