// Processes, ports and waiting: the ground every other module of the harness stands on.
//
// Why this exists: the tests start real servers (ringcast, the embedding example, PocketBase,
// nginx) as child processes. Each of them must be found, started on a free loopback port, waited
// for, and killed whatever happens — a failed assertion, a thrown setup, an interrupted runner —
// so that no child outlives the test process. That logic lives here once.
//
// Environment:
//   TEST_LOG=1       print each child's output when it stops (it is always printed when a child
//                    dies unexpectedly)
//   TEST_PORT_BASE   pick ports in TEST_PORT_BASE..+199 instead of letting the kernel choose
//                    (for sandboxes that restrict which ports may be used)
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** tests/js: relative paths in the environment (RINGCAST_BIN, PB_BIN, …) are taken from here. */
export const JS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const REPO = path.resolve(JS_DIR, "../..");

/** The path in environment variable `name` (or `fallback`), resolved against tests/js. */
export function pathFromEnv(name, fallback) {
    return path.resolve(JS_DIR, process.env[name] || fallback);
}

/** Throws a helpful error when a binary the tests start is missing. */
export function requireFile(file, what, hint) {
    if (!fs.existsSync(file)) throw new Error(`${what} not found at ${file}: ${hint}`);
}

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

// ---------------------------------------------------------------------------------------------
// Ports.

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

/** Whether something accepts on 127.0.0.1:port. */
export function canConnect(port) {
    return new Promise((resolve) => {
        const s = net.connect({ port, host: "127.0.0.1" });
        s.once("connect", () => { s.destroy(); resolve(true); });
        s.once("error", () => { s.destroy(); resolve(false); });
    });
}

/** A free loopback port: the kernel's choice, or with TEST_PORT_BASE=N a free one in N..N+199. */
export async function freePort() {
    const base = Number(process.env.TEST_PORT_BASE || 0);
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

// ---------------------------------------------------------------------------------------------
// Child processes and temp dirs. Every child is registered here so that nothing outlives the
// test process, whether a test fails, throws, or the runner is interrupted.

const children = new Set();
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

/** A temp dir removed by removeTempDir() or, at the latest, when the test process exits. */
export function makeTempDir(prefix) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    tempDirs.add(dir);
    return dir;
}

export function removeTempDir(dir) {
    fs.rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
}

/** A child process whose output is kept (the last 256 KiB) for failure messages. */
export class Child {
    /** opts: spawn options (env, cwd); opts.logFile: a file of the child's to show with its output. */
    constructor(name, bin, args, { logFile, ...opts } = {}) {
        this.name = name;
        this.bin = bin;
        this.args = args;
        this.logFile = logFile;
        this.output = "";
        this.stopping = false;
        const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], detached: true, ...opts });
        this.proc = child;
        this.pid = child.pid;
        if (this.pid !== undefined) children.add(this);
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
            if (!this.stopping && !this.spawnError) {
                console.error(`${name} exited unexpectedly (code=${code} signal=${signal}): ` +
                    `${bin} ${args.join(" ")}\n${this.log()}`);
            }
        });
    }

    get alive() {
        return this.spawnError === null && this.proc.exitCode === null && this.proc.signalCode === null;
    }

    /** What the child printed, and its log file if it has one. */
    log() {
        let out = this.output;
        if (this.logFile && fs.existsSync(this.logFile)) out += fs.readFileSync(this.logFile, "utf8");
        return out;
    }

    /** Waits until `ready()` is true; fails at once if the process dies or cannot start. */
    async waitReady(ready, ms = 15000) {
        const deadline = Date.now() + ms;
        for (;;) {
            if (this.spawnError) throw new Error(`cannot start ${this.name} (${this.bin}): ${this.spawnError.message}`);
            if (!this.alive) {
                throw new Error(`${this.name} exited during startup (code=${this.proc.exitCode} ` +
                    `signal=${this.proc.signalCode}): ${this.bin} ${this.args.join(" ")}\n${this.log()}`);
            }
            if (await ready()) return;
            if (Date.now() > deadline) throw new Error(`${this.name} not ready within ${ms} ms\n${this.log()}`);
            await sleep(50);
        }
    }

    /** SIGTERM, then SIGKILL to the whole group after 3 s; TEST_LOG=1 prints the output. */
    async stop() {
        if (this.stopping) return this.exited;
        this.stopping = true;
        if (this.alive) {
            this.proc.kill("SIGTERM");
            const t = setTimeout(() => { try { process.kill(-this.pid, "SIGKILL"); } catch {} }, 3000);
            await this.exited;
            clearTimeout(t);
        }
        if (process.env.TEST_LOG === "1") console.error(`----- ${this.name} (${this.bin})\n${this.log()}`);
    }
}

/** Starts `server` (anything with start() and stop()); if that fails, stops what did start. */
export async function started(server) {
    try {
        await server.start();
    } catch (e) {
        await server.stop();
        throw e;
    }
    return server;
}

/** Runs a command to its end; throws with its output unless it exits 0. */
export function run(bin, args, opts) {
    const r = spawnSync(bin, args, { encoding: "utf8", ...opts });
    if (r.error) throw new Error(`cannot run ${bin}: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`${bin} ${args.join(" ")} -> exit ${r.status}\n${r.stdout}${r.stderr}`);
    return r.stdout;
}
