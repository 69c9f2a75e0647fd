// Many independent SDK clients (each its own PocketBase instance and EventSource, so its own
// connection; with ringcast --workers 2 they spread over both worker cores): one publish reaches
// every one of them exactly once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { waitFor, sleep } from "../lib/proc.mjs";
import { useTarget, randomId, IS_RINGCAST } from "../lib/target.mjs";

const N = 50;
const { target, clients } = useTarget();

test(`${N} SDK clients: each publish reaches every client exactly once`, { timeout: 60000 }, async () => {
    const got = Array.from({ length: N }, () => []);
    const pbs = Array.from({ length: N }, () => clients.make(target.url));
    await Promise.all(pbs.map((pb, i) => pb.realtime.subscribe("fanout", (d) => got[i].push(d))));
    const ids = new Set(pbs.map((pb) => pb.realtime.clientId));
    assert.equal(ids.size, N, "every client has its own connection and id");
    if (IS_RINGCAST) {
        // ringcast's own GET /api/stats (loopback may read it): the streams really are spread
        // over both worker cores (SO_REUSEPORT), so the publish below crosses the core ring.
        const stats = await target.stats();
        assert.equal(stats.cores.length, 2, `--workers 2 gives two cores: ${JSON.stringify(stats.cores)}`);
        for (const c of stats.cores) {
            assert.ok(c.clients >= 1, `every core holds some of the ${N} streams: ${JSON.stringify(stats.cores.map((x) => x.clients))}`);
        }
    }

    await target.publish("fanout", { seq: 1 });
    await waitFor(() => got.every((g) => g.length >= 1), 10000,
        () => `first message everywhere (${got.filter((g) => g.length >= 1).length}/${N})`);
    await target.publish("fanout", { seq: 2 });
    await waitFor(() => got.every((g) => g.length >= 2), 10000,
        () => `second message everywhere (${got.filter((g) => g.length >= 2).length}/${N})`);
    await sleep(500);
    got.forEach((g, i) => assert.deepStrictEqual(g, [{ seq: 1 }, { seq: 2 }], `client ${i}`));
});

test(`${N} SDK clients on ${N} different record topics plus posts/*: each gets only its own`, { timeout: 60000 }, async () => {
    const recIds = Array.from({ length: N }, () => randomId());
    const own = Array.from({ length: N }, () => []);
    const star = [];
    const pbs = Array.from({ length: N }, () => clients.make(target.url));
    await Promise.all(pbs.map((pb, i) => pb.collection("posts").subscribe(recIds[i], (e) => own[i].push(e))));
    const watcher = clients.make(target.url);
    await watcher.collection("posts").subscribe("*", (e) => star.push(e));

    // three records, one per "slot"; every other client must stay silent
    const picked = [0, Math.floor(N / 2), N - 1];
    for (const i of picked) {
        await target.recordEvent("posts", "create", { id: recIds[i], title: `slot ${i}` });
    }
    await waitFor(() => star.length === picked.length && picked.every((i) => own[i].length === 1), 10000,
        () => `record events (posts/*: ${star.length}, owners: ${picked.map((i) => own[i].length)})`);
    await sleep(500);
    own.forEach((g, i) => {
        if (picked.includes(i)) {
            assert.equal(g.length, 1, `client ${i}`);
            assert.equal(g[0].action, "create");
            assert.equal(g[0].record.id, recIds[i]);
            assert.equal(g[0].record.title, `slot ${i}`);
        } else {
            assert.deepStrictEqual(g, [], `client ${i} must not get other records`);
        }
    });
    assert.deepStrictEqual(star.map((e) => e.record.id).sort(), picked.map((i) => recIds[i]).sort());

    for (const i of picked) {
        await target.recordEvent("posts", "delete", { id: recIds[i], title: `slot ${i}` });
    }
});
