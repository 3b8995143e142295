// The README's Node example, run by scripts/smoke_npm.ts against the packed npm build.
//
//   npm install ./core-lib-cache-0.1.0.tgz ioredis  # the packed build (README, Install); or iovalkey
//   REDIS_HOST=127.0.0.1 REDIS_PORT=6380 node node_example.mjs
//   node --env-file=.env node_example.mjs  # REDIS_HOST, REDIS_PORT, ... from .env
//
// Prints `{ name: 'Ada' }` when the server answers, `null` when it cannot be reached (server
// faults are cache misses, never exceptions).

import { cacheGet, cacheSet, closeCache, setCache } from "core-lib-cache";

await setCache(); // reads REDIS_* / VALKEY_* from process.env
await cacheSet({ user: 42 }, { name: "Ada" }, { companyId: "acme" });
console.log(await cacheGet({ user: 42 }, { companyId: "acme" }));
await closeCache();
