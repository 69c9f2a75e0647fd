// Collection rules and subscription options evaluated at the edge, checked against PocketBase
// itself in the same run: every user subscribes twice with the same SDK calls — once through
// nginx (realtime from ringcast, fed by the forwarder) and once straight to PocketBase (its own
// realtime). The same record changes, made once through PocketBase's REST API, must reach both
// sides identically, per user and per subscription: the list rule for `tasks/*`, the view rule
// for `tasks/<id>`, each subscription's `filter` (with @request.auth fields and datetime macros)
// and `fields` (with :excerpt). A rule the edge cannot evaluate (an @collection join) falls back
// to the forwarder's audience — superusers only — and must never reach anyone PocketBase would
// not have sent it to.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PocketBase } from "../lib/sdk.mjs";
import { sleep, waitFor } from "../lib/proc.mjs";
import { SU_EMAIL, SU_PASS } from "../lib/pocketbase.mjs";
import { USER_PASS, useStack } from "../lib/stack.mjs";

const DELIVERY_MS = 5000;

const stack = useStack();

const TASK_RULES = {
    listRule: '@request.auth.id != "" && (owner = @request.auth.id || shared ?= @request.auth.id || public = true)',
    viewRule: "owner = @request.auth.id || public = true",
};

/** Subscriptions of `tasks`, by name: [topic, SDK options]. */
const TASK_SUBSCRIPTIONS = {
    list: ["*", {}],
    highPriority: ["*", { filter: "priority > 5" }],
    urgentOpen: ["*", { filter: 'title ~ "urgent" && done = false' }],
    mine: ["*", { filter: "owner = @request.auth.id" }],
    byName: ["*", { filter: '@request.auth.name = "user1" || status = "b"' }],
    superusersOnly: ["*", { filter: '@request.auth.collectionName = "_superusers" && priority > 1' }],
    tagged: ["*", { filter: 'tags ~ "red" || tags:length > 2' }],
    today: ["*", { filter: "created >= @todayStart && priority >= 1" }],
    lower: ["*", { filter: 'title:lower ~ "FIX"' }],
    invalid: ["*", { filter: "nosuchfield = 1" }],
    projected: ["*", { fields: "id,title:excerpt(6,true),priority" }],
    projectedFiltered: ["*", { filter: "shared:length > 0", fields: "id,shared" }],
};

const WHO = ["user1", "user2", "superuser", "guest"];

/** Creates the collections of these tests, once (after the stack's own setup). */
let collections;
const setUp = () => (collections ??= createCollections());

async function createCollections() {
    const users = stack.ids.users;
    for (const c of [
        {
            name: "tasks", ...TASK_RULES,
            fields: [
                { name: "title", type: "text" },
                { name: "owner", type: "relation", collectionId: users, maxSelect: 1 },
                { name: "shared", type: "relation", collectionId: users, maxSelect: 5 },
                { name: "public", type: "bool" },
                { name: "done", type: "bool" },
                { name: "priority", type: "number" },
                { name: "status", type: "select", values: ["a", "b", "c"], maxSelect: 1 },
                { name: "tags", type: "json" },
                { name: "note", type: "text", hidden: true },
                { name: "created", type: "autodate", onCreate: true, onUpdate: false },
            ],
        },
        {
            name: "members", listRule: "", viewRule: "",
            fields: [{ name: "user", type: "relation", collectionId: users, maxSelect: 1 }],
        },
        {
            // Needs PocketBase's database: not evaluable at the edge.
            name: "projects",
            listRule: "@collection.members.user ?= @request.auth.id",
            viewRule: "@collection.members.user ?= @request.auth.id",
            fields: [{ name: "title", type: "text" }],
        },
    ]) {
        const created = await stack.api("POST", "/api/collections", { type: "base", ...c });
        stack.ids[c.name] = created.id;
    }
}

/** An SDK client of `url` logged in as `who` (PocketBase's auth endpoint, through `url`). */
async function login(url, who) {
    const pb = stack.client(url);
    if (who === "superuser") await pb.collection("_superusers").authWithPassword(SU_EMAIL, SU_PASS);
    else if (who !== "guest") await pb.collection("users").authWithPassword(`${who}@example.com`, USER_PASS);
    return pb;
}

/** Subscribes `pb` to `coll`'s `topic` with `options`; the list of {action, record} it gets. */
async function listen(pb, coll, topic, options) {
    const list = [];
    await pb.collection(coll).subscribe(topic, (e) => list.push({ action: e.action, record: e.record }), options);
    return list;
}

/**
 * Every user on both sides, with `subscriptions` ({name: [collection, topic, options]}) and a
 * `posts/*` marker subscription each: side → who → name → list.
 */
async function everyone(subscriptions) {
    await setUp();
    const sides = { ringcast: stack.url, pocketbase: stack.pbUrl };
    const got = {};
    for (const [side, url] of Object.entries(sides)) {
        got[side] = {};
        for (const who of WHO) {
            const pb = await login(url, who);
            const lists = {};
            for (const [name, [coll, topic, options]] of Object.entries(subscriptions)) {
                lists[name] = await listen(pb, coll, topic, options);
            }
            lists.marker = await listen(pb, "posts", "*", {});
            got[side][who] = lists;
        }
    }
    return got;
}

/**
 * Creates a public post and waits until every client on both sides has it, then a little longer:
 * PocketBase sends each event from goroutines of its own, so its events to one client may
 * overtake each other by a few milliseconds.
 */
async function settle(got) {
    const post = await stack.create("posts", { title: `marker ${Date.now()}` });
    for (const [side, byWho] of Object.entries(got)) {
        for (const [who, lists] of Object.entries(byWho)) {
            await waitFor(() => lists.marker.some((e) => e.record.id === post.id), DELIVERY_MS,
                () => `${side}/${who}: the marker post ${post.id}`);
        }
    }
    await sleep(300);
}

/** `v` with every object's keys sorted: PocketBase writes a `fields` projection in Go's random
 * map order, which JSON readers (the SDK) do not see. */
const sortedKeys = (v) => Array.isArray(v) ? v.map(sortedKeys)
    : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortedKeys(v[k])]))
    : v;

/** A list's events in a stable order (PocketBase's own order is not), for comparison. */
const canonical = (list) => list.map((e) => JSON.stringify(sortedKeys(e))).sort();

/** The record changes: each made once, through PocketBase's REST API, a little apart. */
async function changeTasks() {
    const { user1, user2 } = stack.users;
    const made = [];
    const create = async (body) => {
        const r = await stack.create("tasks", { note: "hidden from everyone", ...body });
        made.push(r);
        await sleep(20);
        return r;
    };
    const update = async (r, body) => { await stack.update("tasks", r.id, body); await sleep(20); };
    const remove = async (r) => { await stack.remove("tasks", r.id); await sleep(20); };

    const a = await create({ title: "urgent fix", owner: user1.id, priority: 7, status: "a", tags: ["red"] });
    const b = await create({ title: "shared plan", owner: user2.id, shared: [user1.id], priority: 2, tags: [1, 2, 3] });
    const c = await create({ title: "Public FIX notes", owner: user2.id, public: true, priority: 9, status: "b" });
    const d = await create({ title: "private to user2", owner: user2.id, priority: 0, done: true, tags: { red: 1 } });
    const e = await create({ title: "nobody's", priority: 6, status: "c" });
    await update(a, { done: true, priority: 3 });
    await update(d, { public: true, title: "urgent, now public" });
    await update(b, { shared: [], status: "b" });
    await update(e, { owner: user1.id });
    await remove(c);
    await remove(a);
    return made;
}

test("list rule, filters and fields per subscription: the edge sends what PocketBase sends", async () => {
    const subscriptions = {};
    for (const [name, [topic, options]] of Object.entries(TASK_SUBSCRIPTIONS)) {
        subscriptions[name] = ["tasks", topic, options];
    }
    const got = await everyone(subscriptions);
    await changeTasks();
    await settle(got);
    let compared = 0;
    for (const who of WHO) {
        for (const name of Object.keys(TASK_SUBSCRIPTIONS)) {
            const edge = got.ringcast[who][name];
            const reference = got.pocketbase[who][name];
            assert.deepEqual(canonical(edge), canonical(reference), `${who}, ${name}: ringcast vs PocketBase`);
            compared += reference.length;
        }
    }
    // The scenario must exercise something: empty lists on both sides would prove nothing.
    assert.ok(compared > 40, `only ${compared} events compared`);
    for (const name of ["list", "highPriority", "urgentOpen", "tagged", "projected"]) {
        assert.ok(got.pocketbase.user1[name].length > 0, `user1 got nothing on ${name}`);
    }
    assert.deepEqual(got.pocketbase.guest.list, [], "the list rule excludes guests");
    assert.deepEqual(got.pocketbase.user1.invalid, [], "an invalid filter receives nothing");
    for (const name of ["mine", "byName", "superusersOnly"]) {
        assert.deepEqual(got.pocketbase.user1[name], [], `${name}: @request.* filters are for superusers only`);
    }
    assert.deepEqual(got.pocketbase.superuser.byName, [],
        "PocketBase's realtime never matches a filter that joins the auth collection (@request.auth.name)");
    assert.ok(got.pocketbase.superuser.superusersOnly.length > 0, "a superuser's @request.auth filter");
});

test("view rule for tasks/<id>: the edge sends what PocketBase sends", async () => {
    await setUp();
    const { user1, user2 } = stack.users;
    const mine = await stack.create("tasks", { title: "user1's", owner: user1.id, priority: 1 });
    const theirs = await stack.create("tasks", { title: "user2's", owner: user2.id, shared: [user1.id] });
    const got = await everyone({
        mine: ["tasks", mine.id, {}],
        theirs: ["tasks", theirs.id, {}],
        theirsProjected: ["tasks", theirs.id, { fields: "title" }],
    });
    await stack.update("tasks", mine.id, { title: "user1's, edited" });
    // Shared with user1, so listed for them, but the view rule (owner or public) hides it...
    await stack.update("tasks", theirs.id, { priority: 4 });
    // ...until it is public.
    await stack.update("tasks", theirs.id, { public: true });
    await stack.remove("tasks", theirs.id);
    await settle(got);
    for (const who of WHO) {
        for (const name of ["mine", "theirs", "theirsProjected"]) {
            assert.deepEqual(canonical(got.ringcast[who][name]), canonical(got.pocketbase[who][name]),
                `${who}, ${name}: ringcast vs PocketBase`);
        }
    }
    assert.equal(got.pocketbase.user1.theirs.length, 2, "user1 sees user2's task once public (update, delete)");
    assert.equal(got.pocketbase.user2.mine.length, 0);
});

test("a rule the edge cannot evaluate goes to superusers only, never wider than PocketBase", async () => {
    await setUp();
    await stack.create("members", { user: stack.users.user1.id });
    const got = await everyone({ projects: ["projects", "*", {}] });
    const project = await stack.create("projects", { title: "members only" });
    await stack.update("projects", project.id, { title: "members only, renamed" });
    await settle(got);
    assert.equal(got.pocketbase.user1.projects.length, 2, "PocketBase: user1 is a member");
    assert.deepEqual(canonical(got.ringcast.superuser.projects), canonical(got.pocketbase.superuser.projects));
    for (const who of ["user1", "user2", "guest"]) {
        const edge = canonical(got.ringcast[who].projects);
        const reference = new Set(canonical(got.pocketbase[who].projects));
        assert.ok(edge.every((e) => reference.has(e)), `${who}: the edge sent what PocketBase did not`);
        assert.deepEqual(edge, [], `${who}: the fallback audience is superusers only`);
    }
    assert.match(stack.ringcast.child.log(), /cannot be evaluated at the edge/, "the fallback is logged");
});

test("an auth record's email reaches its own user and superusers, as PocketBase sends it", async () => {
    await setUp();
    const got = await everyone({ users: ["users", "*", {}], own: ["users", stack.users.user2.id, {}] });
    await stack.update("users", stack.users.user2.id, { name: "user2, renamed", emailVisibility: false });
    await settle(got);
    for (const who of WHO) {
        for (const name of ["users", "own"]) {
            assert.deepEqual(canonical(got.ringcast[who][name]), canonical(got.pocketbase[who][name]),
                `${who}, ${name}: ringcast vs PocketBase`);
        }
    }
    assert.equal(got.pocketbase.user2.users[0]?.record.email, "user2@example.com", "the user's own email");
    assert.equal(got.pocketbase.superuser.users[0]?.record.email, "user2@example.com");
    assert.deepEqual(got.pocketbase.user1.users, [], "users' list rule: only the user themself");
});
