// The official PocketBase JS SDK as the tests use it: the Node EventSource polyfill installed
// where the SDK looks for it, SDK clients that are always torn down (an open EventSource keeps
// the test process alive), and listeners that record what is delivered.
import PocketBase from "pocketbase";
import { EventSource } from "eventsource";
import { waitFor } from "./proc.mjs";

// The SDK looks for a global EventSource; in Node it comes from the polyfill (as in the spec's demo).
globalThis.EventSource = EventSource;

export { PocketBase };

/** SDK clients made through make() and closed together by closeAll(). */
export class Clients {
    constructor() {
        this.all = [];
    }

    make(url) {
        const pb = new PocketBase(url);
        this.all.push(pb);
        return pb;
    }

    async closeAll() {
        const all = this.all;
        this.all = [];
        await Promise.all(all.map(async (pb) => {
            pb.realtime.onDisconnect = undefined;
            try {
                await pb.realtime.unsubscribe();
            } catch {}
            // unsubscribe() is a no-op while the SDK sits in a reconnect backoff (no client id),
            // and the pending reconnect would keep the process alive: stop it the way the SDK
            // itself does (RealtimeService's non-public disconnect()).
            pb.realtime.disconnect?.();
            pb.cancelAllRequests();
        }));
    }
}

/**
 * Subscribes `pb` to `topic` (through the collection API when `coll` is given) and records
 * everything delivered. Returns the list; `list.subscribed` is the subscribe() promise.
 */
export function collect(pb, topic, coll) {
    const list = [];
    const cb = (e) => list.push(e);
    const subscribed = coll ? pb.collection(coll).subscribe(topic, cb) : pb.realtime.subscribe(topic, cb);
    // Not enumerable, so assertion diffs of the list show only the events.
    Object.defineProperty(list, "subscribed", { value: subscribed });
    return list;
}

/** Waits for an item of `list` matching pred; returns it. */
export async function waitForItem(list, pred, ms, what) {
    let found;
    await waitFor(() => (found = list.find(pred)) !== undefined, ms,
        () => `${what}; received so far: ${JSON.stringify(list)}`);
    return found;
}
