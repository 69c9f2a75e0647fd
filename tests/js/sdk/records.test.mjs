// Record events through the SDK's collection helper: pb.collection('posts').subscribe('*' | id).
//
// ringcast: events are published with POST /api/publish
//   {"collection":"posts","collectionId":"pbc_123","action":…,"record":{…}}
// PocketBase: the same changes are made for real through the records REST API.
// Either way the callback must receive {action, record}.
import { test } from "node:test";
import assert from "node:assert/strict";
import { waitFor, sleep } from "../lib/proc.mjs";
import { useTarget, randomId } from "../lib/target.mjs";

const { target, clients } = useTarget();

// The record a callback gets must carry every field that was published (PocketBase adds
// collectionId and collectionName; if the server adds them they must be right).
function assertEvent(ev, action, coll, fields) {
    assert.equal(typeof ev, "object");
    assert.equal(ev.action, action, `action in ${JSON.stringify(ev)}`);
    assert.equal(typeof ev.record, "object", `record in ${JSON.stringify(ev)}`);
    for (const [k, v] of Object.entries(fields)) {
        assert.deepStrictEqual(ev.record[k], v, `record.${k} in ${JSON.stringify(ev)}`);
    }
    if ("collectionName" in ev.record) assert.equal(ev.record.collectionName, coll);
    if ("collectionId" in ev.record) assert.equal(ev.record.collectionId, target.collectionId(coll));
    assert.deepStrictEqual(Object.keys(ev).sort(), ["action", "record"], "the event has exactly action and record");
}

test("posts/* and posts/<id> receive create, update and delete as {action, record}", { timeout: 30000 }, async () => {
    const pb = clients.make(target.url);
    const id = randomId();
    const all = [];
    const one = [];
    const allOpts = [];
    await pb.collection("posts").subscribe("*", (e) => all.push(e));
    await pb.collection("posts").subscribe(id, (e) => one.push(e));
    // any ?options= suffix on a record topic matches too (here: a header for the rules)
    await pb.collection("posts").subscribe("*", (e) => allOpts.push(e), { headers: { "X-Token": "abc" } });

    const steps = [
        ["create", { id, title: "first" }],
        ["update", { id, title: "second" }],
        ["delete", { id, title: "second" }],
    ];
    for (const [i, [action, record]] of steps.entries()) {
        await target.recordEvent("posts", action, record);
        // wait for each event before the next change: ordering across changes is not guaranteed
        await waitFor(() => all.length > i && one.length > i && allOpts.length > i, 5000,
            () => `${action} event (posts/*: ${all.length}, posts/${id}: ${one.length}, posts/*?options: ${allOpts.length})`);
    }
    await sleep(300);

    for (const [name, got] of [["posts/*", all], [`posts/${id}`, one], ["posts/*?options=…", allOpts]]) {
        assert.equal(got.length, 3, `${name} got exactly 3 events: ${JSON.stringify(got)}`);
        steps.forEach(([action, record], i) => assertEvent(got[i], action, "posts", record));
    }
});

test("posts/<id> ignores other records; posts/* ignores other collections", { timeout: 30000 }, async () => {
    const pb = clients.make(target.url);
    const id = randomId();
    const otherId = randomId();
    const foreignId = randomId();
    const all = [];
    const one = [];
    await pb.collection("posts").subscribe("*", (e) => all.push(e));
    await pb.collection("posts").subscribe(id, (e) => one.push(e));

    // another record of the same collection: only posts/*
    await target.recordEvent("posts", "create", { id: otherId, title: "other" });
    await waitFor(() => all.length === 1, 5000, "posts/* event for the other record");

    // a record of another collection: nobody here
    await target.recordEvent("sdk_other", "create", { id: foreignId, title: "foreign" });
    // then the watched record, which both get
    await target.recordEvent("posts", "create", { id, title: "watched" });
    await waitFor(() => all.length === 2 && one.length === 1, 5000,
        () => `events for the watched record (posts/*: ${all.length}, posts/${id}: ${one.length})`);
    await sleep(300);

    assertEvent(all[0], "create", "posts", { id: otherId, title: "other" });
    assertEvent(all[1], "create", "posts", { id, title: "watched" });
    assert.equal(all.length, 2, `posts/* got nothing from sdk_other: ${JSON.stringify(all)}`);
    assert.equal(one.length, 1, `posts/${id} got only its record: ${JSON.stringify(one)}`);
    assertEvent(one[0], "create", "posts", { id, title: "watched" });

    // tidy up (PocketBase keeps real rows)
    await target.recordEvent("posts", "delete", { id: otherId, title: "other" });
    await target.recordEvent("posts", "delete", { id, title: "watched" });
    await target.recordEvent("sdk_other", "delete", { id: foreignId, title: "foreign" });
});

test("collection unsubscribe: unsubscribe(id) keeps '*'; unsubscribe() drops everything of the collection", { timeout: 30000 }, async () => {
    const pb = clients.make(target.url);
    const id = randomId();
    const all = [];
    const one = [];
    const custom = [];
    await pb.collection("posts").subscribe("*", (e) => all.push(e));
    await pb.collection("posts").subscribe(id, (e) => one.push(e));
    await pb.realtime.subscribe("example", (d) => custom.push(d));

    await pb.collection("posts").unsubscribe(id);
    await target.recordEvent("posts", "create", { id, title: "a" });
    await waitFor(() => all.length === 1, 5000, "posts/* event");
    await sleep(300);
    assert.equal(one.length, 0, "posts/<id> unsubscribed");

    await pb.collection("posts").unsubscribe();
    assert.ok(pb.realtime.isConnected, "'example' keeps the stream open");
    await target.recordEvent("posts", "update", { id, title: "b" });
    await target.publish("example", { after: "collection unsubscribe" });
    await waitFor(() => custom.length === 1, 5000, "custom message still delivered");
    await sleep(300);
    assert.equal(all.length, 1, `posts/* unsubscribed: ${JSON.stringify(all)}`);
    assert.deepStrictEqual(custom, [{ after: "collection unsubscribe" }]);

    await target.recordEvent("posts", "delete", { id, title: "b" });
});
