// End-to-end latency of a record change: PocketBase REST create -> forwarder hook -> ringcast ->
// nginx -> SDK callback, and, side by side for the same records, PocketBase's own realtime (an SDK
// client connected straight to PocketBase). Starts the same stack as the tests.
//
//   npm run latency -- [--count N] [--concurrency C]     (defaults: 1000, 1)
//
// For each record and each path: callback time minus the time just before its create request.
// Records are matched by a unique title (the id is not known before the create). Prints count,
// lost and p50/p90/p99/max in ms per path as text, then the same as one JSON line.
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { waitFor } from "../lib/proc.mjs";
import { startStack } from "../lib/stack.mjs";

const { values } = parseArgs({
    options: { count: { type: "string", default: "1000" }, concurrency: { type: "string", default: "1" } },
});
const count = Number(values.count);
const concurrency = Number(values.concurrency);
if (!(count > 0 && concurrency > 0)) throw new Error("--count and --concurrency must be positive numbers");

const stack = await startStack();
try {
    const sentAt = new Map();
    const paths = { ringcast: stack.client(), pocketbase: stack.client(stack.pbUrl) };
    const latencies = {};
    for (const [name, pb] of Object.entries(paths)) {
        const got = (latencies[name] = new Map());
        await pb.collection("posts").subscribe("*", (e) => {
            const t0 = sentAt.get(e.record.title);
            if (e.action === "create" && t0 !== undefined && !got.has(e.record.title)) {
                got.set(e.record.title, performance.now() - t0);
            }
        });
    }

    let next = 0;
    const worker = async () => {
        while (next < count) {
            const title = `latency ${next++}`;
            sentAt.set(title, performance.now());
            await stack.create("posts", { title });
        }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    // Anything not in after 5 s more is counted as lost.
    const all = () => Object.values(latencies).every((m) => m.size === count);
    await waitFor(all, 5000, "").catch(() => {});

    const round = (x) => Math.round(x * 100) / 100;
    const result = { count, concurrency };
    let lost = 0;
    for (const [name, got] of Object.entries(latencies)) {
        const sorted = [...got.values()].sort((a, b) => a - b);
        const pct = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN);
        const r = (result[name] = {
            received: sorted.length, lost: count - sorted.length,
            p50_ms: round(pct(50)), p90_ms: round(pct(90)), p99_ms: round(pct(99)), max_ms: round(sorted.at(-1) ?? NaN),
        });
        lost += r.lost;
        console.log(`${name}: records ${count} (concurrency ${concurrency}), received ${r.received}, lost ${r.lost}; ` +
            `latency ms p50 ${r.p50_ms}  p90 ${r.p90_ms}  p99 ${r.p99_ms}  max ${r.max_ms}`);
    }
    console.log(JSON.stringify(result));
    process.exitCode = lost ? 1 : 0;
} finally {
    await stack.stop();
}
