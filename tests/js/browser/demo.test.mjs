// The demo page ringcast serves itself (`--demo`, GET /_/), as a person uses it in Chromium:
// open it, subscribe to a topic, publish through its form, see the message arrive and the stats
// move. Without --demo the page is not there; from another origin it may still not publish.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { freePort, waitFor } from "../lib/proc.mjs";
import { Ringcast } from "../lib/ringcast.mjs";
import { launch, screenshot } from "../lib/browser.mjs";

let ringcast, browser, page;

before(async () => {
    // No admin token here whatever the environment says: the demo's no-token rule is under test.
    const env = { ...process.env };
    delete env.RINGCAST_ADMIN_TOKEN;
    ringcast = new Ringcast({ port: await freePort(), args: ["--demo"], env });
    await ringcast.start();
    browser = await launch();
    page = browser.page;
});

after(async () => {
    await browser?.close();
    await ringcast?.stop();
});

test("the demo page: subscribe, publish, the message arrives, the stats move", { timeout: 30000 }, async () => {
    await page.goto(`${ringcast.url}/_/`);
    await page.waitForSelector("#status.live", { timeout: 10000 });
    assert.match(await page.textContent("#client-id"), /^[A-Za-z0-9]{40}$/);

    await page.fill("#topic", "demo");
    await page.click("#subscribe");
    await page.waitForSelector('#subs li[data-topic="demo"]');

    await page.fill("#pub-topic", "demo");
    await page.fill("#pub-data", '{"text": "hello from the demo page"}');
    await page.click("#publish");
    await page.waitForSelector('#messages li[data-topic="demo"]', { timeout: 10000 });
    assert.match(await page.textContent('#messages li[data-topic="demo"] pre'), /hello from the demo page/);
    assert.equal(await page.textContent("#pub-result"), "Delivered to 1 subscriber(s).");

    // A message published from elsewhere (the API, as a backend would) shows up too.
    await ringcast.publish({ topic: "demo", data: { from: "the API" } });
    await page.waitForFunction(() => document.querySelectorAll('#messages li[data-topic="demo"]').length === 2);

    // The stats (polled every second) count this page's stream and what it got.
    await page.waitForFunction(() => {
        const n = (k) => Number(document.querySelector(`td[data-stat="${k}"]`)?.textContent.replace(/,/g, ""));
        return n("clients") >= 1 && n("subscriptions") >= 1 && n("deliveries") >= 2;
    }, null, { timeout: 10000 });

    await screenshot(page, "browser-demo");

    // Unsubscribing through the page: the server holds no subscription for it any more.
    await page.click('#subs li[data-topic="demo"] button');
    await page.waitForSelector('#subs li[data-topic="demo"]', { state: "detached" });
    await waitFor(async () => (await ringcast.stats()).total.subscriptions === 0, 5000,
        "the page's subscription POST to empty its set");
    assert.deepEqual(browser.errors, []);
});

test("without --demo there is no page, and other origins may not publish", async () => {
    const plain = new Ringcast({ port: await freePort() });
    await plain.start();
    try {
        const r = await fetch(`${plain.url}/_/`);
        assert.equal(r.status, 404);
    } finally {
        await plain.stop();
    }
    // With --demo, a request that names another origin is still a foreign web page.
    const r = await fetch(`${ringcast.url}/api/publish`, {
        method: "POST",
        headers: { "content-type": "application/json", origin: "http://127.0.0.1:1" },
        body: JSON.stringify({ topic: "demo", data: 1 }),
    });
    assert.equal(r.status, 403);
});
