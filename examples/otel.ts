/**
 * OpenTelemetry metrics of the cache, scraped by Prometheus: the SDK's `MeterProvider` with a
 * `PrometheusExporter` served on a free loopback port, `setCache({ otel })`, some traffic, then
 * one scrape of `/metrics` printed with the hit ratio it shows.
 *
 * Runs on the embedded MemoryCache when no server is configured, and against Redis or Valkey
 * when REDIS_HOST or VALKEY_HOST (or REDIS_URL / VALKEY_URL) is set. `--serve` keeps serving
 * `/metrics` until Ctrl-C, for a Prometheus to scrape.
 *
 *   deno run --allow-net --allow-env --allow-read --allow-sys examples/otel.ts [--serve]
 *   REDIS_HOST=127.0.0.1 REDIS_PORT=6380 deno run --allow-net --allow-env --allow-read --allow-sys examples/otel.ts
 *
 * @module
 */

import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import process from "node:process";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import { cacheGet, cacheSet, closeCache, setCache, type SetCacheOptions } from "../mod.ts";

/** A running example: where its metrics are served, and how to stop it. */
export interface OtelExample {
  /** `http://127.0.0.1:<port>/metrics`. */
  url: string;
  /** Closes the cache, the HTTP server and the meter provider. */
  close(): Promise<void>;
}

/**
 * Serves Prometheus metrics on a free port and installs the cache with OpenTelemetry on.
 *
 * @param options Where the cache connects (`provider`, `config`, `env`, `logger`); the
 * environment by default.
 * @returns The metrics URL and the function that stops everything.
 */
export async function startOtelExample(
  options: Omit<SetCacheOptions, "otel"> = {},
): Promise<OtelExample> {
  // The exporter's own server listens on a fixed port (9464); this one takes any free port.
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const meterProvider = new MeterProvider({ readers: [exporter] });
  const server = createServer((request, response) => {
    if (request.url === "/metrics") exporter.getMetricsRequestHandler(request, response);
    else response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  // Metrics only (spans: true would add one span per call); the tenant stays out of the labels.
  await setCache({ ...options, otel: { meterProvider } });
  return {
    url: `http://127.0.0.1:${port}/metrics`,
    close: async () => {
      await closeCache();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await meterProvider.shutdown();
    },
  };
}

/** Some traffic: for each of two reports a miss, a write and three hits (2 misses, 6 hits). */
export async function exampleTraffic(): Promise<void> {
  for (const report of ["sales", "stock"]) {
    const query = { report, month: "2026-11" };
    if (await cacheGet(query, { companyId: "acme" }) === null) {
      await cacheSet(query, { total: 1200 }, { companyId: "acme", ttl: 300 });
    }
    for (let i = 0; i < 3; i++) await cacheGet(query, { companyId: "acme" });
  }
}

/**
 * The sum of a Prometheus counter over its series, read from an exposition text:
 * `cache_hits_total{db_operation_name="get",...} 6`.
 *
 * @param text What `/metrics` returned.
 * @param name The metric's name in the exposition (`cache_hits_total`).
 * @param labels Only the series carrying each of these `label="value"` pairs.
 */
export function promSum(text: string, name: string, labels: string[] = []): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!labels.every((label) => line.includes(label))) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

if (import.meta.main) {
  const env = process.env;
  const serverConfigured = ["REDIS_HOST", "VALKEY_HOST", "REDIS_URL", "VALKEY_URL"].some((name) =>
    env[name]
  );
  const example = await startOtelExample(serverConfigured ? {} : { provider: "memory" });
  await exampleTraffic();
  const text = await (await fetch(example.url)).text();
  for (const line of text.split("\n")) {
    if (/^cache_(hits|misses)_total[{ ]/.test(line)) console.log(line);
  }
  const hits = promSum(text, "cache_hits_total", ['db_operation_name="get"']);
  const misses = promSum(text, "cache_misses_total", ['db_operation_name="get"']);
  console.log(`get hit ratio: ${hits} / ${hits + misses} = ${(hits / (hits + misses)).toFixed(2)}`);
  if (Deno.args.includes("--serve")) {
    console.log(`Serving ${example.url} until Ctrl-C`);
  } else {
    await example.close();
  }
}
