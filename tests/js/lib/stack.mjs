// The whole deployment on loopback, for the e2e suite (tests/js/e2e): a real PocketBase 0.40.6
// with the forwarder hook (contrib/pocketbase/pb_hooks), ringcast, and nginx with the shipped
// contrib/nginx/ringcast.conf in front. SDK clients talk to nginx only, as in production.
//
// Environment: see proc.mjs, ringcast.mjs, pocketbase.mjs and nginx.mjs (the binaries and logs).
import { before, after, afterEach } from "node:test";
import fs from "node:fs";
import path from "node:path";
import { REPO, freePort, makeTempDir, removeTempDir } from "./proc.mjs";
import { Ringcast } from "./ringcast.mjs";
import { PocketBaseServer, SU_EMAIL, SU_PASS } from "./pocketbase.mjs";
import { Nginx } from "./nginx.mjs";
import { Clients } from "./sdk.mjs";

const FORWARDER_HOOKS = path.join(REPO, "contrib/pocketbase/pb_hooks");

export const USER_PASS = "e2e-user-password";

/**
 * A stack, not started yet (start() starts it and creates the test data).
 *
 * opts.auth: "pocketbase" (default; --auth-pocketbase), "none" (no auth flag), or
 *   { jwtSecret: "..." } (--auth-jwt-secret) or { jwtPublicKeyPem: "..." } (--auth-jwt-public-key
 *   <file>).
 * opts.publishTo: where the forwarder hook publishes (RINGCAST_URL) instead of ringcast.
 * opts.pbEnv: more environment for PocketBase (e.g. RINGCAST_AUDIENCE_<NAME>).
 */
export class Stack {
    constructor(opts = {}) {
        this.auth = opts.auth ?? "pocketbase";
        this.publishTo = opts.publishTo;
        this.pbEnv = opts.pbEnv ?? {};
        this.servers = [];
        this.clients = new Clients();
    }

    /** Starts everything; on a failure stops what did start, with the logs printed. */
    async start() {
        try {
            await this.launch();
        } catch (e) {
            await this.stop(true);
            throw e;
        }
    }

    async launch() {
        this.dir = makeTempDir("ringcast-e2e-");
        const ports = { pbPort: await freePort(), ringcastPort: await freePort(), nginxPort: await freePort() };
        this.pbUrl = `http://127.0.0.1:${ports.pbPort}`;
        this.ringcastUrl = `http://127.0.0.1:${ports.ringcastPort}`;

        this.pb = new PocketBaseServer({
            port: ports.pbPort, dir: this.dir, hooksDir: FORWARDER_HOOKS,
            env: { RINGCAST_URL: this.publishTo ?? this.ringcastUrl, ...this.pbEnv },
        });
        const rcEnv = { ...process.env };
        // The forwarder and these tests publish from loopback without a token.
        delete rcEnv.RINGCAST_ADMIN_TOKEN;
        this.ringcast = new Ringcast({
            port: ports.ringcastPort, args: [...this.authArgs(), "--trusted-proxy", "127.0.0.1/32"], env: rcEnv,
        });
        const nginx = new Nginx(path.join(this.dir, "nginx"), ports);
        /** What the SDK talks to. */
        this.url = nginx.url;
        this.servers = [this.pb, this.ringcast, nginx];

        const started = await Promise.allSettled(this.servers.map((s) => s.start()));
        const failed = started.find((r) => r.status === "rejected");
        if (failed) throw failed.reason;
        await this.seed();
    }

    authArgs() {
        const auth = this.auth;
        if (auth === "pocketbase") return ["--auth-pocketbase", this.pbUrl];
        if (auth === "none") return [];
        if (auth?.jwtSecret) return ["--auth-jwt-secret", auth.jwtSecret];
        if (auth?.jwtPublicKeyPem) {
            const keyFile = path.join(this.dir, "jwt-public-key.pem");
            fs.writeFileSync(keyFile, auth.jwtPublicKeyPem);
            return ["--auth-jwt-public-key", keyFile];
        }
        throw new Error(`unknown auth mode ${JSON.stringify(auth)}`);
    }

    /** Collections posts / notes / secrets and users user1, user2, as PocketBase's REST API. */
    async seed() {
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
            const r = await this.create("users", {
                email: `${name}@example.com`, password: USER_PASS, passwordConfirm: USER_PASS, name, verified: true,
            });
            this.users[name] = r;
        }
    }

    /** A PocketBase REST call as the superuser, straight to PocketBase. */
    api(method, p, body) { return this.pb.api(method, p, body); }
    create(coll, body) { return this.pb.create(coll, body); }
    update(coll, id, body) { return this.pb.update(coll, id, body); }
    remove(coll, id) { return this.pb.remove(coll, id); }

    /** POST ringcast /api/publish directly (it is not routed through nginx). */
    publish(body) {
        return this.ringcast.publish(body);
    }

    /** A fresh SDK client pointed at nginx (or at `url`); closed by closeClients() and stop(). */
    client(url = this.url) {
        return this.clients.make(url);
    }

    /** An SDK client logged in through nginx (PocketBase's own auth endpoint). */
    async login(name) {
        const pb = this.client();
        if (name === "superuser") await pb.collection("_superusers").authWithPassword(SU_EMAIL, SU_PASS);
        else await pb.collection("users").authWithPassword(`${name}@example.com`, USER_PASS);
        return pb;
    }

    closeClients() {
        return this.clients.closeAll();
    }

    /** Every child's output (and nginx's error log), for failure messages. */
    logs() {
        return this.servers.filter((s) => s.child).map((s) => `----- ${s.child.name}\n${s.child.log()}`).join("\n");
    }

    /** Stops everything and removes the temp dir; prints the logs when asked. */
    async stop(printLogs = false) {
        await this.closeClients();
        if (printLogs) console.error(this.logs());
        await Promise.all(this.servers.map((s) => s.stop()));
        if (this.dir) removeTempDir(this.dir);
    }
}

/** A started stack; see Stack for the options. */
export async function startStack(opts = {}) {
    const stack = new Stack(opts);
    await stack.start();
    return stack;
}

/**
 * A test file's stack: started before the file's first test, its SDK clients closed after each
 * test, stopped after the last.
 */
export function useStack(opts = {}) {
    const stack = new Stack(opts);
    before(() => stack.start());
    afterEach(() => stack.closeClients());
    after(() => stack.stop());
    return stack;
}
