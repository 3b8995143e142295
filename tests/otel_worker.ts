/**
 * A separate process for tests/otel_test.ts, run with `@opentelemetry/api` hidden (see
 * `hidePackages` in tests/_helpers.ts): sets the cache up from the environment (with or without
 * `CACHE_OTEL`), writes and reads an entry, and prints the outcome and every log line as one JSON
 * line. A hidden package that were imported would fail and be logged.
 */

import { cacheGet, cacheSet, closeCache, setCache } from "../mod.ts";

const lines: string[] = [];
const connected = await setCache({ logger: { warn: (line) => lines.push(line) } });
await cacheSet("otel-worker", 1);
const value = await cacheGet("otel-worker");
await closeCache();
console.log(JSON.stringify({ connected, value, lines }));
