// Users' PocketBase tokens on ringcast (--auth-pocketbase): the auth downgrade rule of POST
// /api/realtime, and messages published to a user rather than to a topic.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MISMATCH } from "../lib/pocketbase.mjs";
import { collect, waitForItem } from "../lib/sdk.mjs";
import { useStack } from "../lib/stack.mjs";

const stack = useStack();

test("after a logout the next subscribe() is refused with PocketBase's 403", async () => {
    const pb = await stack.login("user1");
    await pb.collection("posts").subscribe("*", () => {});
    pb.authStore.clear();
    const err = await pb.realtime.subscribe("example", () => {}).then(
        () => assert.fail("subscribe() after logout resolved; expected a 403"),
        (e) => e,
    );
    assert.equal(err.status, 403, `status: ${err.status} ${JSON.stringify(err.response)}`);
    assert.deepEqual(err.response, MISMATCH);
});

test("a message for user1 reaches each of user1's tabs and no one else", async () => {
    const userId = stack.users.user1.id;
    const tabs = [await stack.login("user1"), await stack.login("user1"), await stack.login("user1")];
    const others = { user2: await stack.login("user2"), guest: stack.client() };
    // The SDK only dispatches events to listeners of that name, so everyone listens to "inbox";
    // the message is addressed to user1, not to the topic. "marker" is public.
    const inbox = {}, markers = {};
    for (const [who, pb] of [...tabs.map((pb, i) => [`tab${i + 1}`, pb]), ...Object.entries(others)]) {
        inbox[who] = collect(pb, "inbox");
        markers[who] = collect(pb, "marker");
        await inbox[who].subscribed;
        await markers[who].subscribed;
    }

    const answer = await stack.publish({ topic: "inbox", data: { text: "for you" }, userId });
    assert.deepEqual(answer, { recipients: 3 }, "ringcast's count: user1's three connections");
    for (const tab of ["tab1", "tab2", "tab3"]) {
        const e = await waitForItem(inbox[tab], () => true, 5000, `${tab}: the inbox message`);
        assert.deepEqual(e, { text: "for you" });
    }
    await stack.publish({ topic: "marker", data: { n: 1 } });
    for (const who of Object.keys(markers)) await waitForItem(markers[who], () => true, 5000, `${who}: the marker`);
    assert.deepEqual(inbox.user2, [], "user2 received user1's message");
    assert.deepEqual(inbox.guest, [], "a guest received user1's message");
    for (const tab of ["tab1", "tab2", "tab3"]) assert.equal(inbox[tab].length, 1, `${tab}: exactly one copy`);
});
