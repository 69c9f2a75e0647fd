// No auth flag: ringcast verifies no token, so every subscriber is a guest — a user's token is
// ignored and records meant for that user do not reach them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { collect, waitForItem } from "../lib/sdk.mjs";
import { useStack } from "../lib/stack.mjs";

const stack = useStack({ auth: "none" });

test("a logged-in user is a guest: public posts arrive, the user's own notes do not", async () => {
    const pb = await stack.login("user1");
    const notes = collect(pb, "*", "notes");
    const posts = collect(pb, "*", "posts");
    await notes.subscribed;
    await posts.subscribed;
    await stack.create("notes", { title: "for user1", owner: stack.users.user1.id });
    const post = await stack.create("posts", { title: "marker" });
    await waitForItem(posts, (e) => e.record.id === post.id, 5000, "the public marker post");
    assert.deepEqual(notes, [], "a private record reached a subscriber on an unverified token");
});
