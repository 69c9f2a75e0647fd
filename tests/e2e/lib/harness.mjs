// The whole deployment on loopback, for end-to-end tests: a real PocketBase 0.40.6 with the
// forwarder hook (contrib/pocketbase/pb_hooks), ringcast, and nginx with the shipped
// contrib/nginx/ringcast.conf in front. SDK clients talk to nginx only, as in production.
//
// Environment:
//   PB_BIN         PocketBase binary (default ../../target/e2e/venv/bin/pocketbase, made by setup.sh)
//   RINGCAST_BIN   ringcast binary (default ../../target/debug/ringcast; relative to tests/e2e)
//   NGINX_BIN      nginx binary (default: nginx on PATH, or /usr/sbin/nginx)
//   E2E_LOG=1      print every child's output when the stack stops (it is always printed when
//                  a child dies unexpectedly)
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import PocketBase from "pocketbase";
import { EventSource } from "eventsource";

// The SDK looks for a global EventSource; in Node it comes from the polyfill.
globalThis.EventSource = EventSource;

export { PocketBase };

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const REPO = path.resolve(E2E_DIR, "../..");
const HOOKS_DIR = path.join(REPO, "contrib/pocketbase/pb_hooks");
const NGINX_CONF = path.join(REPO, "contrib/nginx/ringcast.conf");

export const SU_EMAIL = "e2e-superuser@example.com";
export const SU_PASS = "e2e-superuser-password";
export const USER_PASS = "e2e-user-password";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls pred() every 20 ms; throws with `what()` (or `what`) after ms. */
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

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

function canConnect(port) {
    return new Promise((resolve) => {
        const s = net.connect({ port, host: "127.0.0.1" });
        s.once("connect", () => { s.destroy(); resolve(true); });
        s.once("error", () => { s.destroy(); resolve(false); });
    });
}

// ---------------------------------------------------------------------------------------------
// Child processes. Every child is registered here so that nothing outlives the test process,
// whether a test fails, throws, or the runner is interrupted.

const children = new Set();
// Temp dirs of stacks not stopped yet, removed on exit too.
const tempDirs = new Set();

// Each child leads its own process group (detached), so its own children — nginx's workers —
// are killed with it.
function killAllNow() {
    for (const c of children) {
        try { process.kill(-c.pid, "SIGKILL"); } catch {}
    }
    for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
}
process.on("exit", killAllNow);
for (const sig of ["SIGINT", "SIGTERM"]) {
    process.once(sig, () => { killAllNow(); process.exit(130); });
}

class Child {
    constructor(name, bin, args, opts = {}) {
        this.name = name;
        this.bin = bin;
        this.args = args;
        this.output = "";
        this.stopping = false;
        const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], detached: true, ...opts });
        this.proc = child;
        this.pid = child.pid;
        children.add(this);
        const keep = (buf) => {
            this.output += buf.toString();
            if (this.output.length > 256 * 1024) this.output = this.output.slice(-256 * 1024);
        };
        child.stdout.on("data", keep);
        child.stderr.on("data", keep);
        this.spawnError = null;
        child.once("error", (e) => { this.spawnError = e; });
        this.exited = new Promise((resolve) => child.once("exit", (code, signal) => {
            children.delete(this);
            resolve({ code, signal });
        }));
        this.exited.then(({ code, signal }) => {
            if (!this.stopping) {
                console.error(`${name} exited unexpectedly (code=${code} signal=${signal}): ` +
                    `${bin} ${args.join(" ")}\n${this.output}`);
            }
        });
    }

    get alive() {
        return this.proc.exitCode === null && this.proc.signalCode === null;
    }

    /** Waits until `ready()` is true; fails at once if the process dies or cannot start. */
    async waitReady(ready, ms = 15000) {
        const deadline = Date.now() + ms;
        for (;;) {
            if (this.spawnError) throw new Error(`cannot start ${this.name} (${this.bin}): ${this.spawnError.message}`);
            if (!this.alive) {
                throw new Error(`${this.name} exited during startup (code=${this.proc.exitCode}): ` +
                    `${this.bin} ${this.args.join(" ")}\n${this.output}`);
            }
            if (await ready()) return;
            if (Date.now() > deadline) throw new Error(`${this.name} not ready within ${ms} ms\n${this.output}`);
            await sleep(50);
        }
    }

    async stop() {
        this.stopping = true;
        if (!this.alive) return;
        this.proc.kill("SIGTERM");
        const t = setTimeout(() => { try { process.kill(-this.pid, "SIGKILL"); } catch {} }, 3000);
        await this.exited;
        clearTimeout(t);
    }
}

function run(bin, args, opts) {
    const r = spawnSync(bin, args, { encoding: "utf8", ...opts });
    if (r.error) throw new Error(`cannot run ${bin}: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`${bin} ${args.join(" ")} -> exit ${r.status}\n${r.stdout}${r.stderr}`);
    return r.stdout;
}

// ---------------------------------------------------------------------------------------------
// nginx: the shipped server block with this run's ports, in a private prefix directory.

function renderNginx(dir, { nginxPort, ringcastPort, pbPort }) {
    let conf = fs.readFileSync(NGINX_CONF, "utf8");
    const swap = (re, replacement, what) => {
        const hits = conf.match(new RegExp(re.source, "gm"))?.length ?? 0;
        if (hits !== 1) throw new Error(`${NGINX_CONF}: expected exactly one ${what}, found ${hits}`);
        conf = conf.replace(new RegExp(re.source, "m"), replacement);
    };
    swap(/(upstream ringcast \{\s*server )[^;\s]+;/, `$1127.0.0.1:${ringcastPort};`, "server line in upstream ringcast");
    swap(/(upstream pocketbase \{\s*server )[^;\s]+;/, `$1127.0.0.1:${pbPort};`, "server line in upstream pocketbase");
    swap(/^(\s*)listen [^;]+;/, `$1listen 127.0.0.1:${nginxPort};`, "listen line");
    fs.writeFileSync(path.join(dir, "ringcast.conf"), conf);
    for (const d of ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]) fs.mkdirSync(path.join(dir, "tmp", d), { recursive: true });
    fs.writeFileSync(path.join(dir, "nginx.conf"), `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/tmp/client_body;
    proxy_temp_path ${dir}/tmp/proxy;
    fastcgi_temp_path ${dir}/tmp/fastcgi;
    uwsgi_temp_path ${dir}/tmp/uwsgi;
    scgi_temp_path ${dir}/tmp/scgi;
    include ${dir}/ringcast.conf;
}
`);
}

function nginxBin() {
    if (process.env.NGINX_BIN) return process.env.NGINX_BIN;
    const onPath = spawnSync("sh", ["-c", "command -v nginx"], { encoding: "utf8" }).stdout.trim();
    return onPath || "/usr/sbin/nginx";
}

// ---------------------------------------------------------------------------------------------
// PocketBase REST helpers (direct, as the superuser: test setup, not the code under test).

async function pbRequest(base, method, p, body, token) {
    const res = await fetch(base + p, {
        method,
        headers: { "content-type": "application/json", ...(token ? { authorization: token } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`PocketBase ${method} ${p} -> ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
}

/**
 * Starts PocketBase, ringcast and nginx on free loopback ports and creates the test data.
 *
 * opts.auth: "pocketbase" (default; --auth-pocketbase), "none" (no auth flag), or
 *   { jwtSecret: "..." } (--auth-jwt-secret) or { jwtPublicKeyPem: "..." } (--auth-jwt-public-key
 *   <file>).
 * opts.publishTo: where the forwarder hook publishes (RINGCAST_URL) instead of ringcast.
 * opts.pbEnv: more environment for PocketBase (e.g. RINGCAST_AUDIENCE_<NAME>).
 * Resolves to a Stack: urls, ids, the superuser token, and helpers (see below).
 */
export async function startStack(opts = {}) {
    const auth = opts.auth ?? "pocketbase";
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringcast-e2e-"));
    tempDirs.add(dir);
    const [pbPort, ringcastPort, nginxPort] = [await freePort(), await freePort(), await freePort()];
    const stack = new Stack(dir, { pbPort, ringcastPort, nginxPort });
    stack.publishTo = opts.publishTo;
    stack.pbEnv = opts.pbEnv ?? {};
    try {
        await stack.start(auth);
    } catch (e) {
        await stack.stop(true);
        throw e;
    }
    return stack;
}

export class Stack {
    constructor(dir, ports) {
        this.dir = dir;
        this.ports = ports;
        this.pbUrl = `http://127.0.0.1:${ports.pbPort}`;
        this.ringcastUrl = `http://127.0.0.1:${ports.ringcastPort}`;
        /** What the SDK talks to. */
        this.url = `http://127.0.0.1:${ports.nginxPort}`;
        this.procs = [];
        this.sdkClients = [];
    }

    async start(auth) {
        const pbBin = path.resolve(E2E_DIR, process.env.PB_BIN || "../../target/e2e/venv/bin/pocketbase");
        if (!fs.existsSync(pbBin)) throw new Error(`PocketBase not found at ${pbBin}: run tests/e2e/setup.sh or set PB_BIN`);
        const pbData = path.join(this.dir, "pb_data");
        run(pbBin, ["superuser", "upsert", SU_EMAIL, SU_PASS, "--dir", pbData]);
        const pb = new Child("pocketbase", pbBin,
            ["serve", "--http", `127.0.0.1:${this.ports.pbPort}`, "--dir", pbData, "--hooksDir", HOOKS_DIR],
            { env: { ...process.env, RINGCAST_URL: this.publishTo ?? this.ringcastUrl, ...this.pbEnv } });
        this.procs.push(pb);

        const rcBin = path.resolve(E2E_DIR, process.env.RINGCAST_BIN || "../../target/debug/ringcast");
        if (!fs.existsSync(rcBin)) throw new Error(`ringcast not found at ${rcBin}: cargo build, or set RINGCAST_BIN`);
        const authArgs = [];
        if (auth === "pocketbase") authArgs.push("--auth-pocketbase", this.pbUrl);
        else if (auth?.jwtSecret) authArgs.push("--auth-jwt-secret", auth.jwtSecret);
        else if (auth?.jwtPublicKeyPem) {
            const keyFile = path.join(this.dir, "jwt-public-key.pem");
            fs.writeFileSync(keyFile, auth.jwtPublicKeyPem);
            authArgs.push("--auth-jwt-public-key", keyFile);
        } else if (auth !== "none") throw new Error(`unknown auth mode ${JSON.stringify(auth)}`);
        const rcEnv = { ...process.env };
        // The forwarder and these tests publish from loopback without a token.
        delete rcEnv.RINGCAST_ADMIN_TOKEN;
        const rc = new Child("ringcast", rcBin, [
            "serve", "--http", `127.0.0.1:${this.ports.ringcastPort}`, "--workers", "2",
            ...authArgs, "--trusted-proxy", "127.0.0.1/32",
        ], { env: rcEnv });
        this.procs.push(rc);

        const nginxDir = path.join(this.dir, "nginx");
        fs.mkdirSync(nginxDir);
        renderNginx(nginxDir, this.ports);
        const nginx = new Child("nginx", nginxBin(), ["-p", nginxDir, "-c", path.join(nginxDir, "nginx.conf"), "-g", "daemon off;"]);
        nginx.logFile = path.join(nginxDir, "error.log");
        this.procs.push(nginx);

        await pb.waitReady(async () => (await fetch(`${this.pbUrl}/api/health`).catch(() => null))?.ok);
        await rc.waitReady(() => canConnect(this.ports.ringcastPort));
        await nginx.waitReady(() => canConnect(this.ports.nginxPort));
        await this.seed();
    }

    /** Collections posts / notes / secrets and users user1, user2, as PocketBase's REST API. */
    async seed() {
        const su = await pbRequest(this.pbUrl, "POST", "/api/collections/_superusers/auth-with-password",
            { identity: SU_EMAIL, password: SU_PASS });
        this.suToken = su.token;
        const users = await this.api("GET", "/api/collections/users");
        this.ids = { users: users.id };
        const collections = [
            { name: "posts", listRule: "", viewRule: "", fields: [{ name: "title", type: "text" }] },
            {
                name: "notes", listRule: "owner = @request.auth.id", viewRule: "owner = @request.auth.id",
                fields: [
                    { name: "title", type: "text" },
                    { name: "owner", type: "relation", collectionId: users.id, maxSelect: 1 },
                    // Must never leave PocketBase: the forwarder sends the public export.
                    { name: "internal", type: "text", hidden: true },
                ],
            },
            { name: "secrets", listRule: null, viewRule: null, fields: [{ name: "title", type: "text" }] },
        ];
        for (const c of collections) {
            const created = await this.api("POST", "/api/collections", { type: "base", ...c });
            this.ids[c.name] = created.id;
        }
        this.users = {};
        for (const name of ["user1", "user2"]) {
            const r = await this.api("POST", "/api/collections/users/records", {
                email: `${name}@example.com`, password: USER_PASS, passwordConfirm: USER_PASS, name, verified: true,
            });
            this.users[name] = r;
        }
    }

    /** A PocketBase REST call as the superuser, straight to PocketBase. */
    api(method, p, body) {
        return pbRequest(this.pbUrl, method, p, body, this.suToken);
    }

    create(coll, body) { return this.api("POST", `/api/collections/${coll}/records`, body); }
    update(coll, id, body) { return this.api("PATCH", `/api/collections/${coll}/records/${id}`, body); }
    remove(coll, id) { return this.api("DELETE", `/api/collections/${coll}/records/${id}`); }

    /** POST ringcast /api/publish directly (it is not routed through nginx). */
    async publish(body) {
        const res = await fetch(`${this.ringcastUrl}/api/publish`, {
            method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
        });
        const text = await res.text();
        if (!res.ok) throw new Error(`ringcast POST /api/publish -> ${res.status} ${text}`);
        return JSON.parse(text);
    }

    /** A fresh SDK client pointed at nginx (or at `url`); closed by stop(). */
    client(url = this.url) {
        const pb = new PocketBase(url);
        this.sdkClients.push(pb);
        return pb;
    }

    /** An SDK client logged in through nginx (PocketBase's own auth endpoint). */
    async login(name) {
        const pb = this.client();
        if (name === "superuser") await pb.collection("_superusers").authWithPassword(SU_EMAIL, SU_PASS);
        else await pb.collection("users").authWithPassword(`${name}@example.com`, USER_PASS);
        return pb;
    }

    async closeClients() {
        const all = this.sdkClients;
        this.sdkClients = [];
        await Promise.all(all.map(async (pb) => {
            pb.realtime.onDisconnect = undefined;
            try { await pb.realtime.unsubscribe(); } catch {}
            // A client in a reconnect backoff ignores unsubscribe(); stop it as the SDK does.
            pb.realtime.disconnect?.();
            pb.cancelAllRequests();
        }));
    }

    /** Every child's output (and nginx's error log), for failure messages. */
    logs() {
        return this.procs.map((p) => {
            let out = p.output;
            if (p.logFile && fs.existsSync(p.logFile)) out += fs.readFileSync(p.logFile, "utf8");
            return `----- ${p.name}\n${out}`;
        }).join("\n");
    }

    /** Stops everything and removes the temp dir; prints the logs when asked (or E2E_LOG=1). */
    async stop(printLogs = false) {
        await this.closeClients();
        if (printLogs || process.env.E2E_LOG === "1") console.error(this.logs());
        await Promise.all(this.procs.map((p) => p.stop()));
        fs.rmSync(this.dir, { recursive: true, force: true });
        tempDirs.delete(this.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Listening.

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
