// A real browser for the browser suite: Debian's headless Chromium driven by playwright-core
// (no browser download: `executablePath` is the system's), with a fresh profile per launch, and
// a tiny static server on its own loopback port, so that pages come from another origin than
// ringcast, as an app's pages would.
//
// Environment:
//   CHROMIUM_BIN         the browser (default /usr/bin/chromium; `apt-get install chromium`)
//   BROWSER_OUT          where screenshots are kept (default ../../target/browser, relative to
//                        tests/js); each test prints the path of its screenshot
import { chromium } from "playwright-core";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { JS_DIR, freePort, makeTempDir, pathFromEnv, removeTempDir, requireFile } from "./proc.mjs";

/** The flags every launch uses: no GPU, no network of its own, no first-run noise. */
const FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

/**
 * Launches Chromium with a fresh --user-data-dir; resolves to { context, page, errors, close }.
 * `errors` collects uncaught page errors and console errors, so a test can assert there were none.
 */
export async function launch() {
    const bin = pathFromEnv("CHROMIUM_BIN", "/usr/bin/chromium");
    requireFile(bin, "Chromium", "apt-get install -y --no-install-recommends chromium, or set CHROMIUM_BIN");
    const profile = makeTempDir("ringcast-chromium-");
    // Playwright passes the profile as --user-data-dir itself (launchPersistentContext).
    const context = await chromium.launchPersistentContext(profile, {
        executablePath: bin,
        headless: true,
        args: FLAGS,
        viewport: { width: 1200, height: 800 },
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const errors = [];
    page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
    page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
    return {
        context,
        page,
        errors,
        async close() {
            await context.close().catch(() => {});
            removeTempDir(profile);
        },
    };
}

/** Where screenshots go: kept after the run (git-ignored target/), unlike temp dirs. */
export function outputDir() {
    const dir = pathFromEnv("BROWSER_OUT", "../../target/browser");
    fs.mkdirSync(dir, { recursive: true });
    return dir;
}

/** Takes a full-page screenshot named `name`.png and prints where it is. */
export async function screenshot(page, name) {
    const file = path.join(outputDir(), `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`screenshot: ${file}`);
    return file;
}

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8" };

/**
 * A static server on a free loopback port: `files` maps a URL path to `{ file }` or to an HTML
 * page `{ content }`. Resolves to { url, close }.
 */
export async function serveStatic(files) {
    const port = await freePort();
    const server = http.createServer((req, res) => {
        const entry = files[new URL(req.url, "http://x").pathname];
        if (entry === undefined) {
            res.writeHead(404).end("not found");
            return;
        }
        const body = entry.file ? fs.readFileSync(entry.file) : entry.content;
        // A file is typed by its extension; inline content is a page.
        const ext = entry.file ? path.extname(entry.file) : ".html";
        res.writeHead(200, { "Content-Type": TYPES[ext] ?? "application/octet-stream", "Cache-Control": "no-store" });
        res.end(body);
    });
    await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
    return {
        url: `http://127.0.0.1:${port}`,
        close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
    };
}

/** The official SDK's browser build, as the npm package ships it. */
export const SDK_UMD = path.join(JS_DIR, "node_modules/pocketbase/dist/pocketbase.umd.js");
