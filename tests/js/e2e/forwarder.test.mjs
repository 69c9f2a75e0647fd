// The forwarder hook on its own: PocketBase publishes to a capturing stand-in for ringcast, and
// the exact requests are checked — body shape, rules and schema, audience per list rule, hidden fields, skipped
// system collections, retries. Independent of what ringcast implements.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createRequire } from "node:module";
import { waitFor, sleep } from "../lib/proc.mjs";
import { startStack } from "../lib/stack.mjs";

const { parseOwnerRule } = createRequire(import.meta.url)("../../../contrib/pocketbase/pb_hooks/ringcast/forwarder.js");

let stack, server;
const received = [];
// Status codes the stand-in answers with, in order, before falling back to 200.
const failures = [];

before(async () => {
    server = http.createServer((req, res) => {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => {
            received.push({ method: req.method, url: req.url, headers: req.headers, body, at: Date.now() });
            const status = failures.shift() ?? 200;
            res.writeHead(status, { "content-type": "application/json" });
            res.end(status === 200 ? '{"recipients":0}' : '{"message":"failing on purpose"}');
        });
    });
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    stack = await startStack({
        auth: "none",
        publishTo: `http://127.0.0.1:${server.address().port}`,
        pbEnv: { RINGCAST_TOKEN: "hook-token", RINGCAST_AUDIENCE_LABELLED: "field:reader" },
    });
});
after(async () => {
    await stack?.stop();
    server?.close();
});

/** The publish requests for record `id`, parsed. */
function bodiesFor(id) {
    return received.map((r) => JSON.parse(r.body)).filter((b) => b.record?.id === id);
}

async function published(id, n = 1) {
    await waitFor(() => bodiesFor(id).length >= n, 5000, () => `${n} publish(es) of ${id}; got ${JSON.stringify(received)}`);
    return bodiesFor(id);
}

test("recognised list rules, and only those", () => {
    assert.deepEqual(parseOwnerRule("owner = @request.auth.id"), { field: "owner", any: false });
    assert.deepEqual(parseOwnerRule("  @request.auth.id=author  "), { field: "author", any: false });
    assert.deepEqual(parseOwnerRule("owners.id ?= @request.auth.id"), { field: "owners", any: true });
    assert.deepEqual(parseOwnerRule("@request.auth.id ?= owners"), { field: "owners", any: true });
    for (const rule of [
        '@request.auth.id != "" && owner = @request.auth.id',
        "owner = @request.auth.id || public = true",
        "owner != @request.auth.id",
        "owner.name = @request.auth.id",
        "owner = @request.auth.email",
        "'x' = @request.auth.id",
    ]) {
        assert.equal(parseOwnerRule(rule), null, rule);
    }
});

test("a create is published with the public record, the audience and the token", async () => {
    const post = await stack.create("posts", { title: "hi" });
    const note = await stack.create("notes", { title: "n", owner: stack.users.user1.id, internal: "hidden" });
    const secret = await stack.create("secrets", { title: "s" });
    const [p] = await published(post.id);
    assert.deepEqual(p, {
        collection: "posts", collectionId: stack.ids.posts, action: "create",
        record: { collectionId: stack.ids.posts, collectionName: "posts", id: post.id, title: "hi" },
        rules: { list: "", view: "" },
        schema: {
            fields: [
                { name: "id", type: "text", hidden: false, maxSelect: 0 },
                { name: "title", type: "text", hidden: false, maxSelect: 0 },
            ],
        },
        audience: "public",
    });
    const [n] = await published(note.id);
    assert.deepEqual(n.record, {
        collectionId: stack.ids.notes, collectionName: "notes", id: note.id, owner: stack.users.user1.id, title: "n",
    });
    assert.deepEqual(n.rules, { list: "owner = @request.auth.id", view: "owner = @request.auth.id" });
    assert.deepEqual(n.schema.fields.map((f) => [f.name, f.type, f.hidden, f.maxSelect]), [
        ["id", "text", false, 0], ["title", "text", false, 0], ["owner", "relation", false, 1],
        ["internal", "text", true, 0],
    ], "every field's type, hidden ones flagged (their values are never sent)");
    assert.deepEqual(n.hidden, { internal: "hidden" }, "hidden values, for ringcast to show superusers only");
    assert.deepEqual(n.audience, { users: [stack.users.user1.id] });
    const [s] = await published(secret.id);
    assert.deepEqual([s.rules, s.audience], [{ list: null, view: null }, "superusers"]);

    const req = received.find((r) => JSON.parse(r.body).record.id === post.id);
    assert.equal(req.method, "POST");
    assert.equal(req.url, "/api/publish");
    assert.equal(req.headers.authorization, "Bearer hook-token");
    assert.equal(req.headers["content-type"], "application/json");
    // PocketBase's record JSON (sorted keys) is passed on verbatim.
    assert.match(req.body, /"record":\{"collectionId":"[^"]+","collectionName":"posts","id":"[^"]+","title":"hi"\}/);
});

test("an owner-less note goes to nobody but superusers; users hide their email", async () => {
    const note = await stack.create("notes", { title: "orphan" });
    assert.deepEqual((await published(note.id))[0].audience, { users: [] });
    const user = await stack.create("users", {
        email: "shown@example.com", password: "password-123", passwordConfirm: "password-123", emailVisibility: false,
    });
    const [u] = await published(user.id);
    // users' list rule is `id = @request.auth.id`: the user themself.
    assert.deepEqual(u.audience, { users: [user.id] });
    assert.equal(u.record.email, undefined, "email without emailVisibility");
    assert.equal(u.email, "shown@example.com", "the email, for the user themself, managers and superusers");
    assert.equal(u.hidden?.password, undefined, "never the password hash");
    assert.equal(u.hidden?.tokenKey, undefined, "never the token key");
    assert.ok("manage" in u.rules, "an auth collection's manage rule");
    const email = u.schema.fields.find((f) => f.name === "email");
    assert.equal(email?.hidden, true, "an auth collection's email counts as hidden: rules on it fall back");
    assert.equal(u.record.password, undefined);
    assert.equal(u.record.tokenKey, undefined);
});

test("other rules use RINGCAST_AUDIENCE_<NAME>, else superusers", async () => {
    for (const name of ["labelled", "unknown"]) {
        await stack.api("POST", "/api/collections", {
            name, type: "base", listRule: '@request.auth.id != "" && reader = @request.auth.id',
            fields: [{ name: "reader", type: "text" }],
        });
    }
    const a = await stack.create("labelled", { reader: "someone" });
    const b = await stack.create("unknown", { reader: "someone" });
    assert.deepEqual((await published(a.id))[0].audience, { users: ["someone"] });
    assert.equal((await published(b.id))[0].audience, "superusers");
});

test("update and delete are published; system collections are not", async () => {
    const post = await stack.create("posts", { title: "v1" });
    await stack.update("posts", post.id, { title: "v2" });
    await stack.remove("posts", post.id);
    const all = await published(post.id, 3);
    assert.deepEqual(all.map((b) => [b.action, b.record.title]), [["create", "v1"], ["update", "v2"], ["delete", "v2"]]);
    // Logging in creates _authOrigins records, superusers live in _superusers.
    await stack.login("user1");
    await stack.api("POST", "/api/collections/_superusers/records", {
        email: "another-su@example.com", password: "password-123", passwordConfirm: "password-123",
    });
    await sleep(300);
    const system = received.map((r) => JSON.parse(r.body).collection).filter((c) => c.startsWith("_"));
    assert.deepEqual(system, [], "system collections must not be forwarded");
});

test("a failing ringcast is retried, and the write still succeeds", async () => {
    failures.push(503, 503);
    const start = Date.now();
    const post = await stack.create("posts", { title: "retried" });
    const took = Date.now() - start;
    const attempts = received.filter((r) => JSON.parse(r.body).record.id === post.id);
    assert.equal(attempts.length, 3, "two 503s then a 200");
    assert.ok(attempts[1].at - attempts[0].at >= 90 && attempts[2].at - attempts[1].at >= 290,
        `waits of ~100 and ~300 ms between attempts, got ${attempts[1].at - attempts[0].at} and ${attempts[2].at - attempts[1].at}`);
    assert.ok(took < 2000, `the create took ${took} ms`);

    failures.push(400);
    const bad = await stack.create("posts", { title: "not retried" });
    await sleep(500);
    assert.equal(bodiesFor(bad.id).length, 1, "a 400 is not retried");
    // $app.logger() writes to PocketBase's log store (batched), read back through its API.
    const logged = () => stack.api("GET", `/api/logs?filter=${encodeURIComponent(`message ~ 'ringcast: publish failed'`)}`);
    await waitFor(async () => (await logged()).totalItems >= 3, 5000,
        "3 'ringcast: publish failed' entries (2 retried 503s, 1 lost 400) in PocketBase's logs");
    const entries = (await logged()).items.map((l) => [l.level, l.message, l.data.attempt]).sort();
    assert.deepEqual(entries.filter((e) => e[1].endsWith("lost")), [[8, "ringcast: publish failed; the event is lost", 1]]);
});
