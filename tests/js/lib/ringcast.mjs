// Starting the code under test: the ringcast binary (`ringcast serve`) and the embedding example
// (examples/embed.rs), each on a free loopback port, plus ringcast's own side channel (publish,
// stats). Both suites start ringcast the same way; only the flags differ.
//
// Environment:
//   RINGCAST_BIN         ringcast binary (default ../../target/debug/ringcast, relative to tests/js)
//   RINGCAST_EMBED_BIN   the embedding example (default ../../target/debug/examples/embed)
//   RINGCAST_EXTRA_ARGS  extra flags appended to every `ringcast serve ...` (split on spaces)
//   RINGCAST_ADMIN_TOKEN inherited by a ringcast started with the default environment (clap env),
//                        so the harness sends it on /api/publish and /api/stats
import { Child, canConnect, freePort, pathFromEnv, requireFile, sleep, started } from "./proc.mjs";
import { request } from "./http.mjs";

export class Ringcast {
    /** args: `serve` flags of this instance; env: its environment (default: the tests' own). */
    constructor({ port, args = [], env = process.env }) {
        this.port = port;
        this.url = `http://127.0.0.1:${port}`;
        this.env = env;
        this.bin = pathFromEnv("RINGCAST_BIN", "../../target/debug/ringcast");
        const envExtra = (process.env.RINGCAST_EXTRA_ARGS || "").split(/\s+/).filter(Boolean);
        this.args = ["serve", "--http", `127.0.0.1:${port}`, "--workers", "2", ...args, ...envExtra];
        this.child = null;
    }

    async start() {
        requireFile(this.bin, "ringcast", "cargo build, or set RINGCAST_BIN");
        this.child = new Child("ringcast", this.bin, this.args, { env: this.env });
        await this.child.waitReady(() => canConnect(this.port));
        // Both workers bind the same port; give the second one a moment so clients spread over both.
        await sleep(100);
    }

    /** Loopback peers may publish without a token; a server that has one is sent it. */
    headers() {
        const token = this.env.RINGCAST_ADMIN_TOKEN;
        return token ? { authorization: `Bearer ${token}` } : {};
    }

    /** POST /api/publish (a custom message or a record event); resolves to ringcast's answer. */
    publish(body) {
        return request("POST", `${this.url}/api/publish`, body, this.headers());
    }

    /** GET /api/stats: {"total": {…}, "cores": [{core, clients, …}, …]}. */
    stats() {
        return request("GET", `${this.url}/api/stats`, undefined, this.headers());
    }

    /** Stops and starts again on the same port (clients see a server restart). */
    async restart() {
        await this.stop();
        await this.start();
    }

    async stop() {
        await this.child?.stop();
    }
}

/** The embedding example on a free port, ready once /api/health answers; `env` is added to ours. */
export async function startEmbed(env = {}) {
    const bin = pathFromEnv("RINGCAST_EMBED_BIN", "../../target/debug/examples/embed");
    requireFile(bin, "the embed example", "cargo build --examples, or set RINGCAST_EMBED_BIN");
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    return started({
        url,
        child: null,
        async start() {
            this.child = new Child("embed", bin, [`127.0.0.1:${port}`], { env: { ...process.env, ...env } });
            await this.child.waitReady(() => fetch(`${url}/api/health`).then((r) => r.ok, () => false));
        },
        async stop() {
            await this.child?.stop();
        },
    });
}
