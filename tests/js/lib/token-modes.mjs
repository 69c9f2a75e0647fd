// The tests shared by ringcast's self-verifying token modes (--auth-jwt-secret,
// --auth-jwt-public-key): the test mints its own JWTs, stores them in the SDK's authStore as an
// app would after its own login, and checks per-user delivery and the auth downgrade rule.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, sign } from "node:crypto";
import { MISMATCH } from "./pocketbase.mjs";
import { collect, waitForItem } from "./sdk.mjs";
import { useStack } from "./stack.mjs";

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/**
 * A compact JWT. alg "HS256" signs with `key` as the HMAC secret; "RS256" and "EdDSA" with `key`
 * as a node:crypto private KeyObject.
 */
export function mintJwt(alg, key, claims) {
    const input = `${b64url(JSON.stringify({ alg, typ: "JWT" }))}.${b64url(JSON.stringify(claims))}`;
    let sig;
    if (alg === "HS256") sig = createHmac("sha256", key).update(input).digest();
    else if (alg === "RS256") sig = sign("sha256", Buffer.from(input), key);
    else if (alg === "EdDSA") sig = sign(null, Buffer.from(input), key);
    else throw new Error(`unsupported alg ${alg}`);
    return `${input}.${b64url(sig)}`;
}

/** Registers the shared tests. mint(claims) signs with the server's key, forge(claims) with another. */
export function tokenModeTests(name, auth, mint, forge) {
    const stack = useStack({ auth });

    const claimsOf = (user) => ({
        id: user.id, collectionId: user.collectionId, collectionName: user.collectionName,
        exp: Math.floor(Date.now() / 1000) + 3600,
    });
    /** An SDK client holding a token for `user`, signed by `signer`. */
    const clientAs = (user, signer = mint) => {
        const pb = stack.client();
        pb.authStore.save(signer(claimsOf(user)), { id: user.id, collectionId: user.collectionId, collectionName: user.collectionName });
        return pb;
    };

    test(`${name}: a note reaches its owner only`, async () => {
        const { user1, user2 } = stack.users;
        const clients = { user1: clientAs(user1), user2: clientAs(user2), guest: stack.client(), forged: clientAs(user1, forge) };
        const notes = {}, posts = {};
        for (const [who, pb] of Object.entries(clients)) {
            notes[who] = collect(pb, "*", "notes");
            posts[who] = collect(pb, "*", "posts");
            await notes[who].subscribed;
            await posts[who].subscribed;
        }
        const note = await stack.create("notes", { title: "for user1", owner: user1.id });
        await waitForItem(notes.user1, (e) => e.record.id === note.id, 5000, `user1: note ${note.id}`);
        const post = await stack.create("posts", { title: "marker" });
        for (const who of Object.keys(posts)) await waitForItem(posts[who], (e) => e.record.id === post.id, 5000, `${who}: marker`);
        assert.deepEqual(notes.user2, [], "user2 received user1's note");
        assert.deepEqual(notes.guest, [], "a guest received user1's note");
        assert.deepEqual(notes.forged, [], "a token signed with another key was trusted");
    });

    test(`${name}: switching user on a live connection is refused with PocketBase's 403`, async () => {
        const { user1, user2 } = stack.users;
        const pb = clientAs(user1);
        await pb.collection("posts").subscribe("*", () => {});
        pb.authStore.save(mint(claimsOf(user2)), { id: user2.id, collectionId: user2.collectionId, collectionName: user2.collectionName });
        const err = await pb.realtime.subscribe("example", () => {}).then(
            () => assert.fail("subscribe() as another user resolved; expected a 403"),
            (e) => e,
        );
        assert.equal(err.status, 403, `status: ${err.status} ${JSON.stringify(err.response)}`);
        assert.deepEqual(err.response, MISMATCH);
    });
}
