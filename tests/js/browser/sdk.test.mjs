// A real browser against ringcast: headless Chromium opens a page served from ANOTHER origin (a
// static server on its own port) that loads the official SDK's browser build
// (pocketbase.umd.js) and also opens a raw EventSource. Through the page: subscribe, receive
// custom and record events published through ringcast's POST /api/publish, unsubscribe, and
// survive a dropped connection (ringcast restarted on the same port: the SDK reconnects and
// re-subscribes by itself). The page may not publish itself (a web page, no admin token).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { freePort } from "../lib/proc.mjs";
import { Ringcast } from "../lib/ringcast.mjs";
import { SDK_UMD, launch, screenshot, serveStatic } from "../lib/browser.mjs";

// The app page: the SDK and a raw EventSource, with what each received kept for the test.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>ringcast browser test</title><link rel="icon" href="data:,">
<style>body{font:14px system-ui;margin:1rem} pre{background:#f4f4f4;padding:.5rem}</style>
<script src="/pocketbase.umd.js"></script></head>
<body><h1>SDK page on another origin</h1>
<p>server: <code id="server"></code> · SDK client: <code id="sdk-id">–</code> · raw client: <code id="raw-id">–</code></p>
<h2>received</h2><pre id="log"></pre>
<script>
  const server = new URLSearchParams(location.search).get("server");
  document.getElementById("server").textContent = server;
  window.pb = new PocketBase(server);
  window.got = {};
  window.log = (name, value) => {
    (window.got[name] ??= []).push(value);
    document.getElementById("log").textContent += name + " " + JSON.stringify(value) + "\\n";
  };
  // Below the SDK: the browser's own EventSource and a subscription POST (CORS, preflighted).
  window.openRaw = (topic) => new Promise((resolve, reject) => {
    const es = new EventSource(server + "/api/realtime");
    window.raw = es;
    es.addEventListener("PB_CONNECT", async (e) => {
      const { clientId } = JSON.parse(e.data);
      document.getElementById("raw-id").textContent = clientId;
      es.addEventListener(topic, (m) => log("raw:" + topic, JSON.parse(m.data)));
      const res = await fetch(server + "/api/realtime", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ clientId, subscriptions: [topic] }),
      });
      res.status === 204 ? resolve(clientId) : reject(new Error("subscribe: " + res.status));
    }, { once: true });
    es.onerror = () => log("raw:error", es.readyState);
  });
</script></body></html>`;

let ringcast, site, browser, page;

before(async () => {
    ringcast = new Ringcast({ port: await freePort() });
    await ringcast.start();
    site = await serveStatic({ "/": { content: PAGE }, "/pocketbase.umd.js": { file: SDK_UMD } });
    browser = await launch();
    page = browser.page;
    await page.goto(`${site.url}/?server=${encodeURIComponent(ringcast.url)}`);
    await page.waitForFunction(() => typeof window.PocketBase === "function");
});

after(async () => {
    await browser?.close();
    await site?.close();
    await ringcast?.stop();
});

/** Waits until the page has received `n` values under `name`; returns them. */
async function received(name, n = 1, timeout = 10000) {
    await page.waitForFunction(([k, c]) => (window.got[k]?.length ?? 0) >= c, [name, n], { timeout });
    return page.evaluate((k) => window.got[k], name);
}

/** POST /api/publish from the test (a loopback tool, which may); resolves to {recipients}. */
function publish(body) {
    return ringcast.publish(body);
}

test("the page comes from another origin than ringcast", async () => {
    const origin = await page.evaluate(() => location.origin);
    assert.notEqual(origin, new URL(ringcast.url).origin);
});

test("SDK: custom topic, record events, unsubscribe", { timeout: 30000 }, async () => {
    await page.evaluate(async () => {
        await pb.realtime.subscribe("chat", (d) => log("chat", d));
        await pb.realtime.subscribe("marker", (d) => log("marker", d));
        await pb.collection("posts").subscribe("*", (e) => log("posts", e));
        document.getElementById("sdk-id").textContent = pb.realtime.clientId;
    });
    const first = await publish({ topic: "chat", data: { text: "hello from ringcast" } });
    assert.equal(first.recipients, 1);
    assert.deepEqual(await received("chat"), [{ text: "hello from ringcast" }]);

    const record = { id: "R1", collectionId: "pbc_1125843985", collectionName: "posts", title: "first" };
    await publish({ collection: "posts", collectionId: "pbc_1125843985", action: "create", record });
    assert.deepEqual(await received("posts"), [{ action: "create", record }]);

    await page.evaluate(() => pb.realtime.unsubscribe("chat"));
    await publish({ topic: "chat", data: { text: "not for you" } });
    await publish({ topic: "marker", data: 1 });
    // Events of one stream keep publish order: once the marker is in, the chat message is not coming.
    await received("marker");
    assert.equal((await page.evaluate(() => window.got.chat)).length, 1, "nothing after unsubscribe");
});

test("raw EventSource: PB_CONNECT, a preflighted subscription POST, an event", { timeout: 20000 }, async () => {
    const id = await page.evaluate(() => openRaw("raw-topic"));
    assert.match(id, /^[A-Za-z0-9]{40}$/);
    await publish({ topic: "raw-topic", data: { n: 1 } });
    assert.deepEqual(await received("raw:raw-topic"), [{ n: 1 }]);
});

test("a web page may not publish without an admin token", async () => {
    const status = await page.evaluate(async (server) => {
        const r = await fetch(server + "/api/publish", {
            method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ topic: "chat", data: 1 }),
        });
        return r.status;
    }, ringcast.url);
    assert.equal(status, 403);
});

test("a dropped connection: ringcast restarts on the same port, the SDK reconnects", { timeout: 40000 }, async () => {
    const before = await page.evaluate(() => pb.realtime.clientId);
    await ringcast.restart();
    // The SDK retries on its own, gets a new id and re-POSTs every subscription.
    await page.waitForFunction((old) => pb.realtime.isConnected && pb.realtime.clientId && pb.realtime.clientId !== old,
        before, { timeout: 20000 });
    await page.evaluate(() => { document.getElementById("sdk-id").textContent = pb.realtime.clientId; });
    const markers = (await page.evaluate(() => window.got.marker)).length;
    await publish({ topic: "marker", data: 2 });
    assert.deepEqual((await received("marker", markers + 1)).at(-1), 2);
    const record = { id: "R2", collectionId: "pbc_1125843985", collectionName: "posts", title: "after the restart" };
    await publish({ collection: "posts", collectionId: "pbc_1125843985", action: "update", record });
    assert.deepEqual((await received("posts", 2)).at(-1), { action: "update", record });
    // The browser's own EventSource reconnects too (with a new stream, unsubscribed).
    await page.waitForFunction(() => window.raw.readyState === EventSource.OPEN, null, { timeout: 20000 });
    await screenshot(page, "browser-sdk");
    // The restart's connection errors are expected; nothing else went wrong on the page.
    const unexpected = browser.errors.filter((e) => !/ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_INCOMPLETE_CHUNKED_ENCODING|ClientResponseError|Failed to load resource/.test(e));
    assert.deepEqual(unexpected, []);
});
