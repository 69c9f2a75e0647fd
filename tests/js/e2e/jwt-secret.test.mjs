// --auth-jwt-secret: ringcast verifies HS256 tokens itself (no call to PocketBase).
import { randomBytes } from "node:crypto";
import { mintJwt, tokenModeTests } from "../lib/token-modes.mjs";

const secret = randomBytes(32).toString("hex");
const other = randomBytes(32).toString("hex");
tokenModeTests("HS256", { jwtSecret: secret }, (c) => mintJwt("HS256", secret, c), (c) => mintJwt("HS256", other, c));
