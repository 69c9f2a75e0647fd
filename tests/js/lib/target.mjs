// What the SDK suite (tests/js/sdk) talks to: ringcast, or a real PocketBase as the reference.
//
// Why this exists: the same assertions run against both servers — the PocketBase run proves the
// tests encode PocketBase's behaviour, the ringcast run checks the drop-in. A target hides how
// each server is started and fed. Common surface:
//   url                          base URL for the SDK
//   publish(topic, data)         custom message (ringcast: /api/publish, PocketBase: /api/notify)
//   recordEvent(coll, action, record)   make the server emit a record event for `record`
//                                (ringcast: /api/publish; PocketBase: a real REST create/update/delete)
//   collectionId(coll)           the collection id the server will put in record events
//   canRestart / restart()       ringcast only: stop and start again on the same port
//   stop()
//
// Environment:
//   SDK_TARGET   "ringcast" (default) or "pocketbase"
//   PB_URL       SDK_TARGET=pocketbase: use the PocketBase at this URL instead of starting one
//                (it must run the notify hook, sdk/fixtures/pb_hooks/notify.pb.js)
//   PB_SU_EMAIL, PB_SU_PASS  with PB_URL: a superuser, to create the test collections the first time
//
// A PocketBase target runs the notify hook (the public variant of the research hook): custom
// messages are published with POST /api/notify there, and record events come from real record
// create/update/delete calls.
import { before, after, afterEach } from "node:test";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { JS_DIR, freePort, started } from "./proc.mjs";
import { request } from "./http.mjs";
import { Ringcast } from "./ringcast.mjs";
import { startPocketBase } from "./pocketbase.mjs";
import { Clients } from "./sdk.mjs";

export const TARGET = (process.env.SDK_TARGET || "ringcast").toLowerCase();
if (TARGET !== "ringcast" && TARGET !== "pocketbase") {
    throw new Error(`SDK_TARGET must be "ringcast" or "pocketbase", got ${JSON.stringify(TARGET)}`);
}
export const IS_RINGCAST = TARGET === "ringcast";

const NOTIFY_HOOKS = path.join(JS_DIR, "sdk/fixtures/pb_hooks");
const COLLECTIONS = ["posts", "sdk_other"];

/** Random lower-case alphanumeric string (PocketBase record ids are 15 of these). */
export function randomId(n = 15) {
    const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    const bytes = randomBytes(n);
    let s = "";
    for (const b of bytes) s += alphabet[b % alphabet.length];
    return s;
}

class RingcastTarget {
    constructor(ringcastArgs) {
        this.ringcastArgs = ringcastArgs;
        this.canRestart = true;
        this.ids = { posts: "pbc_123", sdk_other: "pbc_456" };
        this.server = null;
    }

    async start() {
        this.server = new Ringcast({ port: await freePort(), args: this.ringcastArgs });
        this.url = this.server.url;
        await this.server.start();
    }

    collectionId(coll) {
        return this.ids[coll];
    }

    async publish(topic, data) {
        await this.server.publish({ topic, data });
    }

    async recordEvent(coll, action, record) {
        await this.server.publish({ collection: coll, collectionId: this.collectionId(coll), action, record });
    }

    /** ringcast's GET /api/stats. */
    stats() {
        return this.server.stats();
    }

    restart() {
        return this.server.restart();
    }

    async stop() {
        await this.server?.stop();
    }
}

class PocketBaseTarget {
    constructor() {
        this.canRestart = false;
        this.ids = {};
        this.token = null;
        this.server = null;
    }

    async start() {
        if (process.env.PB_URL) {
            this.url = process.env.PB_URL.replace(/\/+$/, "");
        } else {
            this.server = await startPocketBase({ hooksDir: NOTIFY_HOOKS });
            this.url = this.server.url;
            this.token = this.server.suToken;
        }
        await this.init(COLLECTIONS);
    }

    async init(collections) {
        const health = await fetch(`${this.url}/api/health`).catch((e) => {
            throw new Error(`PocketBase not reachable at ${this.url}: ${e.message}`);
        });
        if (!health.ok) throw new Error(`PocketBase health check failed: ${health.status}`);
        for (const name of collections) {
            let res = await fetch(`${this.url}/api/collections/${name}`, { headers: await this.authHeaders(false) });
            if (res.status === 401 || res.status === 403 || res.status === 404) {
                const headers = await this.authHeaders(true);
                res = await fetch(`${this.url}/api/collections/${name}`, { headers });
                if (res.status === 404) {
                    await request("POST", `${this.url}/api/collections`, {
                        name,
                        type: "base",
                        listRule: "",
                        viewRule: "",
                        createRule: "",
                        updateRule: "",
                        deleteRule: "",
                        fields: [{ name: "title", type: "text" }],
                    }, headers);
                    res = await fetch(`${this.url}/api/collections/${name}`, { headers });
                }
            }
            if (!res.ok) throw new Error(`cannot read collection ${name}: ${res.status} ${await res.text()}`);
            const c = await res.json();
            this.ids[name] = c.id;
        }
    }

    async authHeaders(required) {
        if (this.token) return { authorization: this.token };
        const email = process.env.PB_SU_EMAIL;
        const password = process.env.PB_SU_PASS;
        if (!email || !password) {
            if (required) {
                throw new Error("PB_SU_EMAIL and PB_SU_PASS are needed to create the test collections in PocketBase");
            }
            return {};
        }
        const su = await request("POST", `${this.url}/api/collections/_superusers/auth-with-password`,
            { identity: email, password });
        this.token = su.token;
        return { authorization: this.token };
    }

    collectionId(coll) {
        return this.ids[coll];
    }

    async publish(topic, data) {
        await request("POST", `${this.url}/api/notify`, { topic, data });
    }

    // The collections have public rules, so record changes need no auth.
    async recordEvent(coll, action, record) {
        const base = `${this.url}/api/collections/${coll}/records`;
        if (action === "create") {
            await request("POST", base, record);
        } else if (action === "update") {
            const { id, ...rest } = record;
            await request("PATCH", `${base}/${id}`, rest);
        } else if (action === "delete") {
            await request("DELETE", `${base}/${record.id}`);
        } else {
            throw new Error(`unknown action ${action}`);
        }
    }

    async restart() {
        throw new Error("restart is not supported against PocketBase");
    }

    async stop() {
        await this.server?.stop();
    }
}

/**
 * The server under test, not started yet: start() starts ringcast (or PocketBase, or attaches to
 * PB_URL). opts.ringcastArgs: extra `ringcast serve` flags for this instance (ringcast only).
 */
export function createTarget(opts = {}) {
    return IS_RINGCAST ? new RingcastTarget(opts.ringcastArgs || []) : new PocketBaseTarget();
}

/** A started target; see createTarget. */
export function startTarget(opts = {}) {
    return started(createTarget(opts));
}

/**
 * A test file's target and SDK clients: the target starts before the file's first test and stops
 * after its last; the clients are closed after each test.
 */
export function useTarget(opts = {}) {
    const target = createTarget(opts);
    const clients = new Clients();
    before(() => target.start());
    afterEach(() => clients.closeAll());
    after(async () => {
        await clients.closeAll();
        await target.stop();
    });
    return { target, clients };
}
