// The official SDK against an app that embeds ringcast (examples/embed.rs): what its hooks do
// must be visible through the SDK, unchanged — a refused connect, a message rewritten per client,
// subscriptions rewritten by the server. ringcast only (PocketBase has no such example).
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { EventSource } from "eventsource";
import { sleep, waitFor } from "../lib/proc.mjs";
import { startEmbed } from "../lib/ringcast.mjs";
import { Clients } from "../lib/sdk.mjs";
import { IS_RINGCAST } from "../lib/target.mjs";

const KEY = "sdk-test-key";

// Browsers' EventSource cannot add headers, the Node polyfill can: the app's connect hook wants
// X-Demo-Key (a real app would check a session cookie the same way).
let sendKey = true;
globalThis.EventSource = class extends EventSource {
    constructor(url, init) {
        super(url, {
            ...init,
            fetch: (u, i) => fetch(u, { ...i, headers: { ...i?.headers, ...(sendKey ? { "X-Demo-Key": KEY } : {}) } }),
        });
    }
};

let app, url;
const clients = new Clients();

before(async () => {
    if (!IS_RINGCAST) return;
    app = await startEmbed({ DEMO_KEY: KEY });
    url = app.url;
});
afterEach(async () => {
    sendKey = true;
    await clients.closeAll();
});
after(async () => {
    await clients.closeAll();
    await app?.stop();
});

const skip = !IS_RINGCAST && "the embed example is ringcast's";

async function admin(pathname, body) {
    const res = await fetch(url + pathname, body === undefined ? {} : {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    assert.equal(res.status, 200, `${pathname}: ${res.status} ${await res.clone().text()}`);
    return res.json();
}

test("on_connect refuses a stream without the app's header", { skip, timeout: 20000 }, async () => {
    sendKey = false;
    const pb = clients.make(url);
    await assert.rejects(pb.realtime.subscribe("clock", () => {}), "subscribe() must fail when the connect is refused");
    assert.equal(pb.realtime.isConnected, false);
    assert.equal((await admin("/api/clients")).totalItems, 0);
});

test("on_message stamps each clock tick with the recipient's own client id", { skip, timeout: 20000 }, async () => {
    const a = clients.make(url), b = clients.make(url);
    const ticks = { a: [], b: [] };
    await a.realtime.subscribe("clock", (d) => ticks.a.push(d));
    await b.realtime.subscribe("clock", (d) => ticks.b.push(d));
    await waitFor(() => ticks.a.length > 0 && ticks.b.length > 0, 5000, "a clock tick on both clients");
    for (const [who, pb] of [["a", a], ["b", b]]) {
        const tick = ticks[who][0];
        assert.equal(tick.client, pb.realtime.clientId, `${who}: stamped with its own id`);
        assert.ok(Math.abs(Date.now() - tick.tick) < 5000, `${who}: tick is a recent time (${tick.tick})`);
    }
});

test("on_subscribe adds the client's own topic and drops admin/ topics", { skip, timeout: 20000 }, async () => {
    const pb = clients.make(url);
    const got = { news: [], admin: [] };
    await pb.realtime.subscribe("admin/stats", (d) => got.admin.push(d));
    await pb.realtime.subscribe("news", (d) => got.news.push(d));
    const id = pb.realtime.clientId;
    const info = await admin(`/api/clients/${id}`);
    assert.deepEqual(info.subscriptions, ["news", `clients/${id}`], "the set the server keeps");

    assert.deepEqual(await admin("/api/publish", { topic: "admin/stats", data: { secret: 1 } }), { recipients: 0 });
    assert.deepEqual(await admin("/api/publish", { topic: `clients/${id}`, data: 1 }), { recipients: 1 });
    assert.deepEqual(await admin("/api/publish", { topic: "news", data: { n: 1 } }), { recipients: 1 });
    await waitFor(() => got.news.length === 1, 5000, "the news message");
    await sleep(200);
    assert.deepEqual(got, { news: [{ n: 1 }], admin: [] });
});
