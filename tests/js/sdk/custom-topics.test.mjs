// Custom (non-record) topics through the SDK's realtime service: subscribe, the ?options=
// variant, unsubscribe, and what unsubscribing everything does to the stream.
import { test } from "node:test";
import assert from "node:assert/strict";
import { waitFor, sleep } from "../lib/proc.mjs";
import { useTarget } from "../lib/target.mjs";
import { probeClient } from "../lib/wire.mjs";

const { target, clients } = useTarget();

// A payload with the JSON shapes an app would send (nesting, unicode, numbers, null, booleans).
const payload = (n) => ({
    greeting: "hello",
    n,
    nested: { list: [1, "two", { three: 3 }], ok: true, none: null },
    unicode: "héllo wörld ✓ 日本",
    neg: -1.5,
});

test("subscribe('example') receives exactly the published data", { timeout: 20000 }, async () => {
    const pb = clients.make(target.url);
    const got = [];
    await pb.realtime.subscribe("example", (data) => got.push(data));
    assert.ok(pb.realtime.isConnected, "realtime is connected after subscribe() resolved");

    await target.publish("example", payload(1));
    await waitFor(() => got.length >= 1, 5000, "message on 'example'");
    assert.deepStrictEqual(got[0], payload(1));

    // A second message arrives too, in order, and nothing is duplicated.
    await target.publish("example", payload(2));
    await waitFor(() => got.length >= 2, 5000, "second message on 'example'");
    await sleep(300);
    assert.deepStrictEqual(got, [payload(1), payload(2)]);
});

test("the client id comes from PB_CONNECT: 40 characters of [A-Za-z0-9], unique per connection", { timeout: 20000 }, async () => {
    const a = clients.make(target.url);
    const b = clients.make(target.url);
    await a.realtime.subscribe("example", () => {});
    await b.realtime.subscribe("example", () => {});
    assert.match(a.realtime.clientId, /^[A-Za-z0-9]{40}$/);
    assert.match(b.realtime.clientId, /^[A-Za-z0-9]{40}$/);
    assert.notEqual(a.realtime.clientId, b.realtime.clientId);
});

test("a PB_CONNECT listener gets {clientId} equal to the id the SDK read from the event id", { timeout: 20000 }, async () => {
    const pb = clients.make(target.url);
    await pb.realtime.subscribe("example", () => {});
    const connects = [];
    await pb.realtime.subscribe("PB_CONNECT", (e) => connects.push(e));
    // The listener fires on the next (re)connect; unsubscribing everything and subscribing again
    // opens a new stream.
    await pb.realtime.unsubscribe();
    await pb.realtime.subscribe("PB_CONNECT", (e) => connects.push(e));
    await waitFor(() => connects.length >= 1, 5000, "PB_CONNECT callback");
    assert.deepStrictEqual(connects[0], { clientId: pb.realtime.clientId });
});

test("an ?options= variant of the same topic gets its own copy of the message", { timeout: 20000 }, async () => {
    const pb = clients.make(target.url);
    const plain = [];
    const withOpts = [];
    await pb.realtime.subscribe("example", (d) => plain.push(d));
    await pb.realtime.subscribe("example", (d) => withOpts.push(d), {
        query: { a: 1 },
        headers: { "X-Token": "abc" },
    });

    await target.publish("example", payload(3));
    await waitFor(() => plain.length >= 1 && withOpts.length >= 1, 5000,
        () => `both listeners (plain ${plain.length}, options ${withOpts.length})`);
    await sleep(300);
    assert.deepStrictEqual(plain, [payload(3)], "plain 'example' listener: exactly one copy");
    assert.deepStrictEqual(withOpts, [payload(3)], "'example?options=…' listener: exactly one copy");
});

test("two ?options= variants and the plain topic on one connection: one copy each", { timeout: 20000 }, async () => {
    const pb = clients.make(target.url);
    const a = [], b = [], c = [];
    await pb.realtime.subscribe("example", (d) => a.push(d));
    await pb.realtime.subscribe("example", (d) => b.push(d), { query: { a: 1 } });
    await pb.realtime.subscribe("example", (d) => c.push(d), { headers: { "X-Token": "other" } });

    await target.publish("example", { v: "three-ways" });
    await waitFor(() => a.length && b.length && c.length, 5000, () => `all three (${a.length}, ${b.length}, ${c.length})`);
    await sleep(300);
    for (const got of [a, b, c]) assert.deepStrictEqual(got, [{ v: "three-ways" }]);
});

test("topics are matched exactly: 'example' does not get 'example2', 'exampl' or 'Example'", { timeout: 20000 }, async () => {
    const pb = clients.make(target.url);
    const got = [];
    const marker = [];
    await pb.realtime.subscribe("example", (d) => got.push(d));
    await pb.realtime.subscribe("marker", (d) => marker.push(d));

    await target.publish("example2", { wrong: 1 });
    await target.publish("exampl", { wrong: 2 });
    await target.publish("Example", { wrong: 3 });
    await target.publish("marker", { done: true });
    await waitFor(() => marker.length === 1, 5000, "marker message");
    await sleep(300);
    assert.deepStrictEqual(got, []);
});

test("unsubscribe('example') stops deliveries to it; other subscriptions keep working", { timeout: 20000 }, async () => {
    const pb = clients.make(target.url);
    // A second, independent client on 'example' proves the later publishes really happened.
    const witness = clients.make(target.url);

    const example = [];
    const exampleOpts = [];
    const other = [];
    const seen = [];
    await pb.realtime.subscribe("example", (d) => example.push(d));
    await pb.realtime.subscribe("example", (d) => exampleOpts.push(d), { query: { a: 1 } });
    await pb.realtime.subscribe("other", (d) => other.push(d));
    await witness.realtime.subscribe("example", (d) => seen.push(d));
    const idBefore = pb.realtime.clientId;

    await target.publish("example", { n: 1 });
    await waitFor(() => example.length === 1 && exampleOpts.length === 1 && seen.length === 1, 5000,
        "first message on every 'example' listener");

    // removes 'example' and every 'example?…' key, POSTs the remaining list ['other']
    await pb.realtime.unsubscribe("example");
    assert.ok(pb.realtime.isConnected, "still connected: 'other' is left");
    assert.equal(pb.realtime.clientId, idBefore, "same connection");

    await target.publish("example", { n: 2 });
    await target.publish("other", { n: 3 });
    await waitFor(() => other.length === 1 && seen.length === 2, 5000, "'other' message and witness copy");
    await sleep(300);
    assert.deepStrictEqual(example, [{ n: 1 }], "no delivery to 'example' after unsubscribe");
    assert.deepStrictEqual(exampleOpts, [{ n: 1 }], "no delivery to 'example?options=…' after unsubscribe");
    assert.deepStrictEqual(other, [{ n: 3 }]);
    assert.deepStrictEqual(seen, [{ n: 1 }, { n: 2 }]);
});

test("the function returned by subscribe() removes only that listener", { timeout: 20000 }, async () => {
    const pb = clients.make(target.url);
    const first = [];
    const second = [];
    const unsubFirst = await pb.realtime.subscribe("example", (d) => first.push(d));
    await pb.realtime.subscribe("example", (d) => second.push(d));

    await unsubFirst();
    await target.publish("example", { n: 1 });
    await waitFor(() => second.length === 1, 5000, "message to the remaining listener");
    await sleep(300);
    assert.deepStrictEqual(first, []);
    assert.deepStrictEqual(second, [{ n: 1 }]);
});

test("unsubscribing everything closes the stream; the server forgets the client; subscribing again reconnects", { timeout: 20000 }, async () => {
    const pb = clients.make(target.url);
    const got = [];
    const disconnects = [];
    pb.realtime.onDisconnect = (subs) => disconnects.push(subs);
    await pb.realtime.subscribe("example", (d) => got.push(d));
    await pb.realtime.subscribe("other", () => {});
    const oldId = pb.realtime.clientId;
    // While connected the server knows the id (re-POSTing the same list changes nothing).
    assert.equal(await probeClient(target.url, oldId, ["example", "other"]), 204);

    await pb.realtime.unsubscribe();
    assert.equal(pb.realtime.isConnected, false, "SDK closed the EventSource");
    assert.deepStrictEqual(disconnects, [[]], "onDisconnect([]) = closed because nothing is subscribed");

    // The server notices the closed stream and unregisters the client: its id is unknown now.
    let status;
    await waitFor(async () => (status = await probeClient(target.url, oldId)) === 404, 5000,
        () => `POST /api/realtime with the old client id to answer 404 (last status ${status})`);

    // Nothing is delivered to the closed subscription.
    await target.publish("example", { n: 1 });
    await sleep(300);
    assert.deepStrictEqual(got, []);

    // A new subscribe opens a new stream with a new id.
    await pb.realtime.subscribe("example", (d) => got.push(d));
    assert.ok(pb.realtime.isConnected);
    assert.notEqual(pb.realtime.clientId, oldId);
    await target.publish("example", { n: 2 });
    await waitFor(() => got.length === 1, 5000, "message after resubscribing");
    assert.deepStrictEqual(got, [{ n: 2 }]);
});
