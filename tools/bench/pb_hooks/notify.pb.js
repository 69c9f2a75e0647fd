/// <reference path="../pb_data/types.d.ts" />

// BENCHMARK COPY — PUBLIC, NO AUTH. Copied from shared/research/pb_hooks/notify.pb.js with the
// superuser-auth middleware (the last argument of routerAdd) removed, so that ringcast-loadgen can
// publish to PocketBase the way it publishes to ringcast. Used only by tools/bench on 127.0.0.1;
// never deploy it.
//

// POST /api/notify  {"topic": "<topic>", "data": <any JSON>}
//
// Publishes a custom realtime message to every SSE client subscribed to
// <topic>. The message is framed by PocketBase as
//   id:<clientId>\nevent:<subscription>\ndata:<JSON of data>\n\n
//
// Matching: a client matches when it holds the exact subscription string
// <topic> (what client.hasSubscription checks), or a variant of it with an
// options suffix such as "<topic>?options=..." (what the JS SDK sends when
// subscribe() is given options). The SSE event name is always the client's own
// subscription string, because the SDK registers its listener under that key.
//
// (The original passes the superuser-auth middleware as the last argument; this copy does not.)
routerAdd("POST", "/api/notify", (e) => {
    const body = e.requestInfo().body || {};
    const topic = body.topic;

    if (typeof topic !== "string" || topic === "") {
        throw new BadRequestError("Missing or invalid topic.", {
            topic: new ValidationError("validation_required", "Cannot be blank."),
        });
    }

    const payload = JSON.stringify(body.data === undefined ? null : body.data);

    const clients = $app.subscriptionsBroker().clients();

    let clientCount = 0;
    let messageCount = 0;

    for (const clientId in clients) {
        const client = clients[clientId];

        // exact topic plus any "<topic>?..." variant
        const names = [];
        if (client.hasSubscription(topic)) {
            names.push(topic);
        }
        const withOptions = client.subscriptions(topic + "?");
        for (const sub in withOptions) {
            if (sub !== topic) {
                names.push(sub);
            }
        }

        if (names.length === 0) {
            continue;
        }

        clientCount++;

        for (const name of names) {
            // note: send() blocks until the client's connection loop takes the
            // message (the per-client channel is unbuffered)
            client.send(new SubscriptionMessage({ name: name, data: payload }));
            messageCount++;
        }
    }

    return e.json(200, { topic: topic, clients: clientCount, messages: messageCount });
});
