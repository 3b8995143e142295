/**
 * The `otel` option: what it turns on (`OtelOptions`, with the meter and tracer providers it
 * accepts), its checks and defaults (`resolveOtel`), and `CACHE_OTEL` as `setCache()` reads it.
 * Nothing here imports `@opentelemetry/api`, not even its types: the providers it accepts are
 * typed loosely.
 *
 * @module
 */

import { invalid, showRaw } from "./config_fields.ts";
import { CacheInputError } from "./errors.ts";
import type { EnvRecord } from "./runtime.ts";

/**
 * What the `otel` option turns on: metrics (on by default once the option is given), spans (off
 * by default) and the tenant attribute (off by default). `otel: true` is `{}`.
 *
 * Recording starts once `@opentelemetry/api` has loaded: `connect()` (and so `setCache()`) waits
 * for it. Without a `meterProvider` / `tracerProvider`, the global ones are used (the SDK's
 * after `metrics.setGlobalMeterProvider(...)`, Deno's own with `OTEL_DENO=true`, else the API's
 * no-op ones).
 *
 * @example Hit and miss counts of a MemoryCache, read with the SDK's in-memory reader
 * ```ts
 * import { MemoryCache, type OtelOptions } from "@core-lib/cache";
 * import {
 *   AggregationTemporality,
 *   InMemoryMetricExporter,
 *   MeterProvider,
 *   PeriodicExportingMetricReader,
 * } from "@opentelemetry/sdk-metrics";
 * import assert from "node:assert/strict";
 *
 * const reader = new PeriodicExportingMetricReader({
 *   exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
 *   exportIntervalMillis: 60_000,
 * });
 * const otel: OtelOptions = { meterProvider: new MeterProvider({ readers: [reader] }) };
 * const cache = new MemoryCache({ otel });
 * await cache.connect(); // waits for @opentelemetry/api to load
 * await cache.get("report"); // a miss
 * await cache.set("report", { total: 1 });
 * await cache.get("report"); // a hit
 * const { resourceMetrics } = await reader.collect();
 * const metrics = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics);
 * const count = (name: string) =>
 *   metrics.find((metric) => metric.descriptor.name === name)!.dataPoints
 *     .reduce((sum, point) => sum + (point.value as number), 0);
 * assert.equal(count("cache.hits"), 1);
 * assert.equal(count("cache.misses"), 1);
 * await cache.close();
 * await reader.shutdown();
 * ```
 */
export interface OtelOptions {
  /**
   * Record metrics: the `db.client.operation.duration` histogram and the `cache.*` counters.
   *
   * @default {true}
   */
  metrics?: boolean;
  /**
   * Record a span per call (kind CLIENT, named after the operation, with the metrics'
   * attributes; a fault sets status ERROR and `error.type`). Off by default: a span per cache hit
   * costs more than the hit.
   *
   * @default {false}
   */
  spans?: boolean;
  /**
   * Add the tenant (`companyId`) to metrics and spans as `cache.tenant`. Off by default: each
   * tenant is a time series per metric, and how many tenants a deployment may chart is the
   * user's decision. Beyond 10,000 tenants per operation the rest are recorded as `_OTHER`.
   *
   * @default {false}
   */
  tenantAttribute?: boolean;
  /**
   * Where the metrics go.
   *
   * @default {the global meter provider of @opentelemetry/api}
   */
  meterProvider?: OtelMeterProvider;
  /**
   * Where the spans go.
   *
   * @default {the global tracer provider of @opentelemetry/api}
   */
  tracerProvider?: OtelTracerProvider;
}

/**
 * A meter provider: the SDK's `MeterProvider`, or anything with its `getMeter` (typed loosely so
 * that this package's types do not require `@opentelemetry/api`).
 *
 * @example The SDK's provider fits
 * ```ts
 * import type { OtelMeterProvider } from "@core-lib/cache";
 * import { MeterProvider } from "@opentelemetry/sdk-metrics";
 * import assert from "node:assert/strict";
 *
 * const provider: OtelMeterProvider = new MeterProvider();
 * assert.equal(typeof provider.getMeter, "function");
 * ```
 */
export interface OtelMeterProvider {
  /**
   * Returns the meter of an instrumentation scope (an `@opentelemetry/api` `Meter`).
   *
   * @param name The instrumentation scope's name.
   * @param version Its version.
   * @param options Its schema URL.
   */
  getMeter(name: string, version?: string, options?: { schemaUrl?: string }): unknown;
}

/**
 * A tracer provider: the SDK's `BasicTracerProvider`, or anything with its `getTracer`.
 *
 * @example The SDK's provider fits
 * ```ts
 * import type { OtelTracerProvider } from "@core-lib/cache";
 * import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
 * import assert from "node:assert/strict";
 *
 * const provider: OtelTracerProvider = new BasicTracerProvider();
 * assert.equal(typeof provider.getTracer, "function");
 * ```
 */
export interface OtelTracerProvider {
  /**
   * Returns the tracer of an instrumentation scope (an `@opentelemetry/api` `Tracer`).
   *
   * @param name The instrumentation scope's name.
   * @param version Its version.
   * @param options Its schema URL.
   */
  getTracer(name: string, version?: string, options?: { schemaUrl?: string }): unknown;
}

/** The `otel` option checked, with its defaults. */
export type ResolvedOtel =
  & Required<Pick<OtelOptions, "metrics" | "spans" | "tenantAttribute">>
  & Pick<OtelOptions, "meterProvider" | "tracerProvider">;

/**
 * Checks the `otel` option; `null` when it leaves recording off.
 *
 * @throws {CacheInputError} When the option or one of its fields is malformed.
 */
export function resolveOtel(option: unknown): ResolvedOtel | null {
  if (option === undefined || option === false) return null;
  if (option === true) option = {};
  if (typeof option !== "object" || option === null || Array.isArray(option)) {
    throw new CacheInputError(
      `Invalid otel ${String(option)}: pass true, false or { metrics?, spans?, ` +
        "tenantAttribute?, meterProvider?, tracerProvider? }",
    );
  }
  const given = option as OtelOptions;
  const flag = (name: "metrics" | "spans" | "tenantAttribute", fallback: boolean) => {
    const value = given[name];
    if (value === undefined) return fallback;
    if (typeof value !== "boolean") {
      throw new CacheInputError(`Invalid otel.${name} ${String(value)}: pass true or false`);
    }
    return value;
  };
  const provider = <T>(name: "meterProvider" | "tracerProvider", method: string): T | undefined => {
    const value = given[name] as Record<string, unknown> | undefined;
    if (value === undefined) return undefined;
    if (typeof value !== "object" || value === null || typeof value[method] !== "function") {
      throw new CacheInputError(
        `Invalid otel.${name}: pass an object with a ${method}() method (the SDK's provider)`,
      );
    }
    return value as T;
  };
  const resolved = {
    metrics: flag("metrics", true),
    spans: flag("spans", false),
    tenantAttribute: flag("tenantAttribute", false),
    meterProvider: provider<OtelMeterProvider>("meterProvider", "getMeter"),
    tracerProvider: provider<OtelTracerProvider>("tracerProvider", "getTracer"),
  };
  return resolved.metrics || resolved.spans ? resolved : null;
}

const TRUE_WORDS = new Set(["true", "1", "yes", "on"]);
const FALSE_WORDS = new Set(["false", "0", "no", "off"]);

/**
 * `CACHE_OTEL` as `setCache()` reads it: `true` records metrics (spans and the tenant attribute
 * only by the `otel` option), `false` or unset records nothing.
 *
 * @throws {CacheConfigError} When the value is not a boolean word.
 */
export function otelFromEnv(env: EnvRecord): boolean | undefined {
  const raw = env.CACHE_OTEL;
  if (raw === undefined || raw.trim() === "") return undefined;
  const hash = raw.indexOf("#");
  const word = (hash === -1 ? raw : raw.slice(0, hash)).trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  throw invalid("CACHE_OTEL", showRaw(raw), "true/false, 1/0, yes/no or on/off (any case)");
}
