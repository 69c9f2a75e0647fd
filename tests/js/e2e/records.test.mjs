// Record changes made through PocketBase's REST API reach SDK clients through the forwarder
// hook, ringcast and nginx — each only to whom PocketBase's list rule would show it.
// ringcast verifies users' tokens with PocketBase (--auth-pocketbase).
import { test } from "node:test";
import assert from "node:assert/strict";
import { collect, waitForItem } from "../lib/sdk.mjs";
import { useStack } from "../lib/stack.mjs";

const DELIVERY_MS = 5000;

const stack = useStack();

/**
 * Creates a public post and waits until every listener has it. Events of one stream arrive in
 * publish order, and the forwarder publishes synchronously inside each REST call, so once this
 * marker is in, anything published earlier to a listener would be too: absence is meaningful.
 */
async function marker(postListeners) {
    const post = await stack.create("posts", { title: `marker ${Date.now()}` });
    for (const [who, list] of Object.entries(postListeners)) {
        await waitForItem(list, (e) => e.record.id === post.id, DELIVERY_MS, `${who}: marker post ${post.id}`);
    }
}

/** user1, user2, a superuser and a guest, each subscribed to posts/*, notes/* and secrets/*. */
async function everyone() {
    const clients = {
        user1: await stack.login("user1"),
        user2: await stack.login("user2"),
        superuser: await stack.login("superuser"),
        guest: stack.client(),
    };
    const posts = {}, notes = {}, secrets = {};
    for (const [who, pb] of Object.entries(clients)) {
        posts[who] = collect(pb, "*", "posts");
        notes[who] = collect(pb, "*", "notes");
        secrets[who] = collect(pb, "*", "secrets");
    }
    for (const lists of [posts, notes, secrets]) {
        await Promise.all(Object.values(lists).map((l) => l.subscribed));
    }
    return { posts, notes, secrets };
}

test("a public post reaches users, a superuser and a guest", async () => {
    const { posts } = await everyone();
    const post = await stack.create("posts", { title: "hello everyone" });
    for (const who of Object.keys(posts)) {
        const e = await waitForItem(posts[who], (e) => e.record.id === post.id, DELIVERY_MS, `${who}: post ${post.id}`);
        assert.equal(e.action, "create");
        assert.deepEqual(e.record, {
            collectionId: stack.ids.posts, collectionName: "posts", id: post.id, title: "hello everyone",
        });
    }
});

test("a note reaches its owner and superusers only", async () => {
    const { posts, notes } = await everyone();
    const note = await stack.create("notes", { title: "for user1", owner: stack.users.user1.id, internal: "x" });
    const seen = await waitForItem(notes.user1, (e) => e.record.id === note.id, DELIVERY_MS, `user1: own note ${note.id}`);
    assert.equal(seen.record.owner, stack.users.user1.id);
    await waitForItem(notes.superuser, (e) => e.record.id === note.id, DELIVERY_MS, `superuser: note ${note.id}`);
    await marker(posts);
    assert.deepEqual(notes.user2, [], "user2 received user1's note");
    assert.deepEqual(notes.guest, [], "a guest received user1's note");
});

test("a record of a collection with a null list rule reaches superusers only", async () => {
    const { posts, secrets } = await everyone();
    const secret = await stack.create("secrets", { title: "superusers only" });
    await waitForItem(secrets.superuser, (e) => e.record.id === secret.id, DELIVERY_MS, `superuser: secret ${secret.id}`);
    await marker(posts);
    for (const who of ["user1", "user2", "guest"]) {
        assert.deepEqual(secrets[who], [], `${who} received a superusers-only record`);
    }
});

test("update and delete arrive with their action and the record, hidden fields left out", async () => {
    const user1 = await stack.login("user1");
    const notes = collect(user1, "*", "notes");
    const posts = collect(user1, "*", "posts");
    await notes.subscribed;
    await posts.subscribed;

    const note = await stack.create("notes", { title: "v1", owner: stack.users.user1.id, internal: "do not show" });
    await stack.update("notes", note.id, { title: "v2", internal: "still hidden" });
    await stack.remove("notes", note.id);

    const expected = (title) => ({
        collectionId: stack.ids.notes, collectionName: "notes", id: note.id, owner: stack.users.user1.id, title,
    });
    for (const [action, title] of [["create", "v1"], ["update", "v2"], ["delete", "v2"]]) {
        const e = await waitForItem(notes, (e) => e.action === action, DELIVERY_MS, `user1: ${action} of note ${note.id}`);
        assert.deepEqual(e.record, expected(title), `${action}: record as PocketBase would deliver it (no "internal")`);
    }
    assert.deepEqual(notes.map((e) => e.action), ["create", "update", "delete"], "one event per change, in order");
});
