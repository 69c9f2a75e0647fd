// Shared harness for the JS SDK end-to-end tests.
//
// Why this exists: every test file needs the same three things — a server to talk to (ringcast
// spawned from its binary, or an already-running real PocketBase used as the reference), a way
// to publish through that server's side channel, and SDK clients that are always cleaned up so
// the test process can exit. Keeping the target switch here lets the same assertions run
// against both servers: the PocketBase run proves the tests encode PocketBase's behaviour, the
// ringcast run checks the drop-in.
//
// Environment:
//   SDK_TARGET          "ringcast" (default) or "pocketbase"
//   RINGCAST_BIN        ringcast binary (default ../../target/debug/ringcast, relative to tests/sdk)
//   RINGCAST_EXTRA_ARGS extra flags appended to `ringcast serve ...` (split on spaces)
//   RINGCAST_LOG=1      show ringcast's stdout/stderr while the tests run
//   SDK_PORT_BASE       pick ringcast's port in SDK_PORT_BASE..+199 instead of letting the kernel choose
//   PB_URL              PocketBase base URL (SDK_TARGET=pocketbase; default http://127.0.0.1:29090)
//   PB_SU_EMAIL, PB_SU_PASS  a PocketBase superuser: reads (and first time creates) the test collections
//
// PocketBase must run with the notify hook (fixtures/pb_hooks/notify.pb.js, public variant of
// the research hook): custom messages are published with POST /api/notify there, and record
// events come from real record create/update/delete calls.
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import PocketBase from "pocketbase";
import { EventSource } from "eventsource";

// The SDK looks for a global EventSource; in Node it comes from the polyfill (as in the spec's demo).
globalThis.EventSource = EventSource;

export { PocketBase };

const SDK_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export const TARGET = (process.env.SDK_TARGET || "ringcast").toLowerCase();
if (TARGET !== "ringcast" && TARGET !== "pocketbase") {
    throw new Error(`SDK_TARGET must be "ringcast" or "pocketbase", got ${JSON.stringify(TARGET)}`);
}
export const IS_RINGCAST = TARGET === "ringcast";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls pred() every 20 ms; throws `what` (a string, or a function called at timeout so it can
 * report the state then) if pred() is still false after ms.
 */
export async function waitFor(pred, ms, what) {
    const start = Date.now();
    for (;;) {
        if (await pred()) return;
        if (Date.now() - start > ms) {
            throw new Error(`timed out after ${ms} ms waiting for: ${typeof what === "function" ? what() : what}`);
        }
        await sleep(20);
    }
}

/** Random lower-case alphanumeric string (PocketBase record ids are 15 of these). */
export function randomId(n = 15) {
    const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    const bytes = randomBytes(n);
    let s = "";
    for (const b of bytes) s += alphabet[b % alphabet.length];
    return s;
}

function tryBind(port) {
    return new Promise((resolve) => {
        const srv = net.createServer();
        srv.once("error", () => resolve(null));
        srv.listen(port, "127.0.0.1", () => {
            const p = srv.address().port;
            srv.close(() => resolve(p));
        });
    });
}

// A free loopback port: the kernel's choice (bind 0), or with SDK_PORT_BASE=N the first free
// port in N..N+199 (for sandboxes that restrict which ports may be used).
export async function freePort() {
    const base = Number(process.env.SDK_PORT_BASE || 0);
    if (!base) {
        const p = await tryBind(0);
        if (p) return p;
        throw new Error("cannot bind a loopback port");
    }
    const start = base + Math.floor(Math.random() * 200);
    for (let i = 0; i < 200; i++) {
        const candidate = base + ((start - base + i) % 200);
        if ((await tryBind(candidate)) && !(await canConnect(candidate))) return candidate;
    }
    throw new Error(`no free port in ${base}..${base + 199}`);
}

function canConnect(port) {
    return new Promise((resolve) => {
        const s = net.connect({ port, host: "127.0.0.1" });
        s.once("connect", () => { s.destroy(); resolve(true); });
        s.once("error", () => { s.destroy(); resolve(false); });
    });
}

// ---------------------------------------------------------------------------------------------
// ringcast process

class RingcastProcess {
    constructor(port, extraArgs) {
        this.port = port;
        this.extraArgs = extraArgs;
        this.bin = path.resolve(SDK_DIR, process.env.RINGCAST_BIN || "../../target/debug/ringcast");
        this.child = null;
        this.output = "";
    }

    args() {
        const envExtra = (process.env.RINGCAST_EXTRA_ARGS || "").split(/\s+/).filter(Boolean);
        return ["serve", "--http", `127.0.0.1:${this.port}`, "--workers", "2", ...this.extraArgs, ...envExtra];
    }

    async start() {
        const verbose = process.env.RINGCAST_LOG === "1";
        const child = spawn(this.bin, this.args(), {
            stdio: ["ignore", verbose ? "inherit" : "pipe", verbose ? "inherit" : "pipe"],
        });
        this.child = child;
        this.output = "";
        const keep = (buf) => {
            this.output += buf.toString();
            if (this.output.length > 64 * 1024) this.output = this.output.slice(-64 * 1024);
        };
        child.stdout?.on("data", keep);
        child.stderr?.on("data", keep);
        child.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
        let spawnError = null;
        child.once("error", (e) => { spawnError = e; });
        child.exited.then(({ code, signal }) => {
            if (!child.stopping) {
                console.error(`ringcast (port ${this.port}) exited unexpectedly: code=${code} signal=${signal}\n${this.output}`);
            }
        });

        const deadline = Date.now() + 15000;
        for (;;) {
            if (spawnError) throw new Error(`cannot start ${this.bin}: ${spawnError.message} (set RINGCAST_BIN)`);
            if (child.exitCode !== null || child.signalCode !== null) {
                throw new Error(`ringcast exited during startup (code=${child.exitCode} signal=${child.signalCode}); ` +
                    `command: ${this.bin} ${this.args().join(" ")}\n${this.output}`);
            }
            if (await canConnect(this.port)) break;
            if (Date.now() > deadline) {
                throw new Error(`ringcast did not accept on 127.0.0.1:${this.port} within 15 s\n${this.output}`);
            }
            await sleep(50);
        }
        // Both workers bind the same port; give the second one a moment so clients spread over both.
        await sleep(100);
    }

    async stop() {
        const child = this.child;
        if (!child) return;
        this.child = null;
        child.stopping = true;
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 3000);
        await child.exited;
        clearTimeout(t);
    }
}

// ---------------------------------------------------------------------------------------------
// Targets: what a test talks to. Common surface:
//   url                          base URL for the SDK
//   publish(topic, data)         custom message (ringcast: /api/publish, PocketBase: /api/notify)
//   recordEvent(coll, action, record)   make the server emit a record event for `record`
//                                (ringcast: /api/publish; PocketBase: a real REST create/update/delete)
//   collectionId(coll)           the collection id the server will put in record events
//   canRestart / restart()       ringcast only: stop and start again on the same port
//   stop()

async function postJson(url, body, headers = {}) {
    const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) {
        throw new Error(`POST ${url} -> ${res.status} ${text}`);
    }
    return text;
}

class RingcastTarget {
    constructor(proc) {
        this.proc = proc;
        this.url = `http://127.0.0.1:${proc.port}`;
        this.canRestart = true;
        this.ids = { posts: "pbc_123", sdk_other: "pbc_456" };
    }

    collectionId(coll) {
        return this.ids[coll];
    }

    // Loopback peers may publish without a token; if RINGCAST_ADMIN_TOKEN is in the environment
    // the spawned server inherits it (clap env), so send it.
    publishHeaders() {
        const token = process.env.RINGCAST_ADMIN_TOKEN;
        return token ? { authorization: `Bearer ${token}` } : {};
    }

    async publish(topic, data) {
        await postJson(`${this.url}/api/publish`, { topic, data }, this.publishHeaders());
    }

    async recordEvent(coll, action, record) {
        await postJson(`${this.url}/api/publish`, {
            collection: coll,
            collectionId: this.collectionId(coll),
            action,
            record,
        }, this.publishHeaders());
    }

    /** ringcast's GET /api/stats: {"total": {…}, "cores": [{core, clients, …}, …]}. */
    async stats() {
        const res = await fetch(`${this.url}/api/stats`, { headers: this.publishHeaders() });
        const text = await res.text();
        if (!res.ok) throw new Error(`GET /api/stats -> ${res.status} ${text}`);
        return JSON.parse(text);
    }

    async restart() {
        await this.proc.stop();
        await this.proc.start();
    }

    async stop() {
        await this.proc.stop();
    }
}

class PocketBaseTarget {
    constructor(url) {
        this.url = url.replace(/\/+$/, "");
        this.canRestart = false;
        this.ids = {};
        this.token = null;
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
                    await postJson(`${this.url}/api/collections`, {
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
        const text = await postJson(`${this.url}/api/collections/_superusers/auth-with-password`,
            { identity: email, password });
        this.token = JSON.parse(text).token;
        return { authorization: this.token };
    }

    collectionId(coll) {
        return this.ids[coll];
    }

    async publish(topic, data) {
        await postJson(`${this.url}/api/notify`, { topic, data });
    }

    // The collections have public rules, so record changes need no auth.
    async recordEvent(coll, action, record) {
        const base = `${this.url}/api/collections/${coll}/records`;
        if (action === "create") {
            await postJson(base, record);
        } else if (action === "update") {
            const { id, ...rest } = record;
            const res = await fetch(`${base}/${id}`, {
                method: "PATCH",
                headers: { "content-type": "application/json" },
                body: JSON.stringify(rest),
            });
            if (!res.ok) throw new Error(`PATCH ${id} -> ${res.status} ${await res.text()}`);
        } else if (action === "delete") {
            const res = await fetch(`${base}/${record.id}`, { method: "DELETE" });
            if (!res.ok) throw new Error(`DELETE ${record.id} -> ${res.status} ${await res.text()}`);
        } else {
            throw new Error(`unknown action ${action}`);
        }
    }

    async restart() {
        throw new Error("restart is not supported against an external PocketBase");
    }

    async stop() {}
}

/**
 * Starts (ringcast) or attaches to (PocketBase) the server under test.
 * opts.ringcastArgs: extra `ringcast serve` flags for this instance (ringcast only).
 */
export async function startTarget(opts = {}) {
    if (IS_RINGCAST) {
        const proc = new RingcastProcess(await freePort(), opts.ringcastArgs || []);
        await proc.start();
        return new RingcastTarget(proc);
    }
    const t = new PocketBaseTarget(process.env.PB_URL || "http://127.0.0.1:29090");
    await t.init(["posts", "sdk_other"]);
    return t;
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that can cut every connection at once: a target-independent "network drop".

export async function startDropProxy(targetUrl) {
    const { hostname, port } = new URL(targetUrl);
    const sockets = new Set();
    const server = net.createServer((down) => {
        const up = net.connect({ host: hostname, port: Number(port) });
        sockets.add(down);
        sockets.add(up);
        const close = () => {
            down.destroy();
            up.destroy();
            sockets.delete(down);
            sockets.delete(up);
        };
        down.on("error", close).on("close", close);
        up.on("error", close).on("close", close);
        down.pipe(up);
        up.pipe(down);
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
        url: `http://127.0.0.1:${server.address().port}`,
        dropAll() {
            const n = sockets.size;
            for (const s of [...sockets]) s.destroy();
            return n;
        },
        async close() {
            for (const s of [...sockets]) s.destroy();
            await new Promise((r) => server.close(r));
        },
    };
}

// ---------------------------------------------------------------------------------------------
// SDK clients that are always torn down (an open EventSource keeps the test process alive).

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
 * POST /api/realtime {clientId, subscriptions} from outside the SDK; resolves to the HTTP status.
 * 204 = the server knows the client, 404 = it was unregistered. The POST replaces the client's
 * whole set, so on a live client pass the list it already has.
 */
export async function probeClient(url, clientId, subscriptions = []) {
    const res = await fetch(`${url}/api/realtime`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ clientId, subscriptions }),
    });
    await res.arrayBuffer();
    return res.status;
}
