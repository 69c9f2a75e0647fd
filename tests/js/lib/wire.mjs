// Below the SDK: a raw realtime call and a TCP proxy. Some behaviour can only be checked from
// outside the SDK — whether the server still knows a client id, what a dropped network does to
// a stream — and works the same against ringcast and PocketBase.
import net from "node:net";

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

/** A TCP proxy to `targetUrl` that can cut every connection at once: a "network drop". */
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
