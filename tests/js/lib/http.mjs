// One JSON-over-HTTP call for test setup and side channels (publishing to ringcast, PocketBase's
// REST API as the superuser), so that every caller fails the same way: with the method, the URL,
// the status and the body the server answered.

/** method url [body] [headers] -> the parsed JSON answer (text if it is not JSON, null if empty). */
export async function request(method, url, body, headers = {}) {
    const res = await fetch(url, {
        method,
        headers: { "content-type": "application/json", ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${url} -> ${res.status} ${text}`);
    if (!text) return null;
    return (res.headers.get("content-type") || "").includes("json") ? JSON.parse(text) : text;
}
