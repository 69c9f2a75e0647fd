// nginx in front, as in production: the shipped contrib/nginx/ringcast.conf with only this run's
// ports swapped in, in a private prefix directory, so the e2e tests check the very file a
// deployment copies.
//
// Environment:
//   NGINX_BIN   nginx binary (default: nginx on PATH, or /usr/sbin/nginx)
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { Child, REPO, canConnect } from "./proc.mjs";

const NGINX_CONF = path.join(REPO, "contrib/nginx/ringcast.conf");

function renderConfig(dir, { nginxPort, ringcastPort, pbPort }) {
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

export class Nginx {
    /** dir: an empty directory of its own; ports: { nginxPort, ringcastPort, pbPort }. */
    constructor(dir, ports) {
        this.dir = dir;
        this.ports = ports;
        this.url = `http://127.0.0.1:${ports.nginxPort}`;
        this.child = null;
    }

    async start() {
        fs.mkdirSync(this.dir, { recursive: true });
        renderConfig(this.dir, this.ports);
        this.child = new Child("nginx", nginxBin(),
            ["-p", this.dir, "-c", path.join(this.dir, "nginx.conf"), "-g", "daemon off;"],
            { logFile: path.join(this.dir, "error.log") });
        await this.child.waitReady(() => canConnect(this.ports.nginxPort));
    }

    async stop() {
        await this.child?.stop();
    }
}
