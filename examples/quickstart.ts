/**
 * Quick start: miss → compute → hit, tenant isolation, a per-tenant clear and a health check.
 *
 * Runs on the embedded MemoryCache when no server is configured, and against Redis or Valkey
 * when REDIS_HOST or VALKEY_HOST (or REDIS_URL / VALKEY_URL) is set.
 *
 *   npx -y deno@2 run --allow-net --allow-env --allow-read examples/quickstart.ts
 *   REDIS_HOST=127.0.0.1 REDIS_PORT=6380 npx -y deno@2 run --allow-net --allow-env --allow-read examples/quickstart.ts
 */

import process from "node:process";
import { cacheClearCompany, cacheGet, cacheSet, closeCache, getCache, setCache } from "../mod.ts";

const env = process.env;
const serverConfigured = ["REDIS_HOST", "VALKEY_HOST", "REDIS_URL", "VALKEY_URL"].some((name) =>
  env[name]
);

if (serverConfigured) {
  const ok = await setCache();
  const kind = getCache()?.constructor.name ?? "no cache";
  console.log(
    `Using ${kind} from the environment (${
      ok ? "connected" : "server unreachable: every call is a miss"
    })`,
  );
} else {
  await setCache({ provider: "memory" });
  console.log("Using the embedded MemoryCache (set REDIS_HOST or VALKEY_HOST to use a server)");
}

/** Stands in for an expensive database query. */
async function salesReport(companyId: string, month: string): Promise<{ total: number }> {
  await new Promise((resolve) => setTimeout(resolve, 200));
  return { total: companyId.length * 1000 + Number(month.slice(5)) };
}

async function cachedSalesReport(companyId: string, month: string) {
  const input = { report: "sales", month };
  const started = performance.now();
  let report = await cacheGet<{ total: number }>(input, { companyId });
  const source = report === null ? "miss → computed" : "hit";
  if (report === null) {
    report = await salesReport(companyId, month);
    await cacheSet(input, report, { companyId, ttl: 300 });
  }
  const ms = (performance.now() - started).toFixed(2);
  console.log(`  ${companyId.padEnd(6)} ${month}: ${JSON.stringify(report)} (${source}, ${ms} ms)`);
  return report;
}

console.log("1. Miss, compute, then hit:");
await cachedSalesReport("acme", "2026-11");
await cachedSalesReport("acme", "2026-11");

console.log("2. Tenants are isolated: the same query for another tenant is its own entry:");
await cachedSalesReport("globex", "2026-11");

console.log("3. Clearing one tenant leaves the others:");
console.log(`  cleared ${await cacheClearCompany("acme")} entry of acme`);
await cachedSalesReport("acme", "2026-11");
await cachedSalesReport("globex", "2026-11");

console.log(`4. Health check: ${(await getCache()?.healthCheck()) ? "healthy" : "unhealthy"}`);
await cacheClearCompany("acme");
await cacheClearCompany("globex");
await closeCache();
