// History and resume through the official SDK, unchanged (ringcast only: PocketBase keeps no
// history). The README's recipe: ringcast runs with --history and --history-cursor-field _cursor,
// so every event of the topic carries its cursor in its data; the app remembers the last one and
// sends it as Last-Event-ID on the SDK's subscription POSTs (pb.beforeSend), which the SDK makes
// again after every reconnect. A TCP proxy cuts the connection again and again while 10,000
// numbered events are published: the callback must see each exactly once, in order.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { waitFor, sleep } from "../lib/proc.mjs";
import { Clients } from "../lib/sdk.mjs";
import { startTarget, IS_RINGCAST } from "../lib/target.mjs";
import { startDropProxy } from "../lib/wire.mjs";

const clients = new Clients();
const cleanups = [];
after(async () => {
    await clients.closeAll();
    while (cleanups.length) await cleanups.pop()();
});

/** The README's recipe: resume every subscription POST from the last cursor seen. */
function resuming(pb) {
    const state = { last: null };
    pb.beforeSend = (url, options) => {
        if (state.last && options.method === "POST" && url.endsWith("/api/realtime")) {
            options.headers = { ...options.headers, "Last-Event-ID": state.last };
        }
        return { url, options };
    };
    return state;
}

test("the SDK gets every event exactly once, in order, across dropped connections", {
    skip: !IS_RINGCAST && "PocketBase keeps no history",
    timeout: 120000,
}, async () => {
    const t = await startTarget({
        ringcastArgs: ["--history", "count=20000", "--history-cursor-field", "_cursor"],
    });
    cleanups.push(() => t.stop());
    const proxy = await startDropProxy(t.url);
    cleanups.push(() => proxy.close());

    const pb = clients.make(proxy.url);
    const state = resuming(pb);
    const got = [];
    const gaps = [];
    let connects = 0;
    await pb.realtime.subscribe("count", (e) => {
        if (e.ringcast === "history_gap") return gaps.push(e);
        assert.match(e._cursor, /^\d+:\d+$/);
        state.last = e._cursor;
        got.push(e.n);
    });
    await pb.realtime.subscribe("PB_CONNECT", () => connects++);

    const TOTAL = 10000;
    let drops = 0;
    for (let at = 0; at < TOTAL; at += 50) {
        const messages = [];
        for (let n = at; n < at + 50; n++) messages.push({ topic: "count", data: { n } });
        await t.server.publish({ messages });
        // Cut again once the SDK is back from the last cut (it counts PB_CONNECTs).
        if (at % 500 === 250 && connects >= drops && proxy.dropAll() > 0) drops++;
        await sleep(10);
    }
    await waitFor(() => got.length >= TOTAL, 60000, () => `all events (got ${got.length})`);
    await sleep(300);
    assert.ok(drops >= 3 && connects >= drops, `${drops} drops, ${connects} reconnects`);
    assert.deepStrictEqual(gaps, []);
    assert.equal(got.length, TOTAL, "nothing twice");
    got.forEach((n, i) => assert.equal(n, i, `event ${i} in order`));
});

test("a cursor older than the history gets the history_gap event", {
    skip: !IS_RINGCAST && "PocketBase keeps no history",
    timeout: 30000,
}, async () => {
    const t = await startTarget({
        ringcastArgs: ["--history", "t=3", "--history-cursor-field", "_cursor"],
    });
    cleanups.push(() => t.stop());
    const first = clients.make(t.url);
    const seen = [];
    await first.realtime.subscribe("t", (e) => seen.push(e));
    for (let n = 0; n < 6; n++) await t.publish("t", { n });
    await waitFor(() => seen.length === 6, 5000, "the live events");

    const late = clients.make(t.url);
    resuming(late).last = seen[0]._cursor;
    const got = [];
    await late.realtime.subscribe("t", (e) => got.push(e));
    await waitFor(() => got.length === 4, 5000, () => `gap + 3 kept: ${JSON.stringify(got)}`);
    assert.deepStrictEqual(got[0], {
        ringcast: "history_gap",
        since: seen[0]._cursor,
        oldest: seen[3]._cursor,
    });
    assert.deepStrictEqual(got.slice(1).map((e) => e.n), [3, 4, 5]);
});
