// --auth-jwt-public-key <PEM file>: ringcast verifies RS256 / EdDSA tokens itself.
import { describe } from "node:test";
import { generateKeyPairSync } from "node:crypto";
import { mintJwt, tokenModeTests } from "../lib/token-modes.mjs";

for (const [alg, type, opts] of [["RS256", "rsa", { modulusLength: 2048 }], ["EdDSA", "ed25519", {}]]) {
    const { publicKey, privateKey } = generateKeyPairSync(type, opts);
    const other = generateKeyPairSync(type, opts).privateKey;
    describe(alg, () => {
        tokenModeTests(alg, { jwtPublicKeyPem: publicKey.export({ type: "spki", format: "pem" }) },
            (c) => mintJwt(alg, privateKey, c), (c) => mintJwt(alg, other, c));
    });
}
