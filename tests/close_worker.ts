/**
 * A separate process for tests/connect_test.ts: starts `setCache()` from the environment, calls
 * `closeCache()` before it has connected, prints what it saw, and then does nothing more, so
 * the process exits only if no connection or timer was left behind.
 */

import { closeCache, getCache, setCache } from "../mod.ts";

const pending = setCache({ logger: { warn: () => {} } });
await closeCache();
const connected = await pending;
console.log(`setCache=${connected} installed=${getCache() !== null}`);
