/**
 * OpenTelemetry metrics and spans for the providers, through `@opentelemetry/api`: an optional
 * peer dependency, loaded by dynamic import only when the `otel` option (or `CACHE_OTEL=true` for
 * `setCache()`) turns recording on. Without the option nothing is imported and nothing is
 * recorded; with it and without the package installed, one line is logged and the cache works
 * as before, unrecorded.
 *
 * The recorder hangs off the provider's `Metrics` (src/stats.ts), which already sees every call
 * end: a provider without it pays one property check per call. With it, a call updates plain
 * numbers on precomputed attribute objects: the counters (hits, misses, writes, computes, ...)
 * are observed by the SDK only when it collects, and `db.client.operation.duration` takes one
 * sample per operation and turn of the event loop, so calls answered together by one coalesced
 * server call count as one batch (see `OtelRecorder`). Spans are off by default: one per call,
 * recorded when the call ends with its exact start and end (so the Redis commands inside are
 * not its children).
 *
 * Names follow OpenTelemetry's database client semantic conventions where they exist
 * (`db.client.operation.duration`, `db.system.name`, `db.operation.name`, `db.namespace`,
 * `server.address`, `server.port`, `error.type`); what they do not cover is named under
 * `cache.` (the table is in the README's Observability section).
 *
 * The parts: the option and `CACHE_OTEL` (src/otel_options.ts), the records' attributes and
 * `error.type` (src/otel_attributes.ts), one meter's instruments and shared counts
 * (src/otel_meter.ts) and one provider's recorder (src/otel_recorder.ts); this module loads the
 * API and attaches a recorder to a provider.
 *
 * @module
 */

import type { FaultLog } from "./log.ts";
import type { OtelTarget } from "./otel_attributes.ts";
import { resolveOtel } from "./otel_options.ts";
import { type OtelApi, OtelRecorder } from "./otel_recorder.ts";
import type { Metrics } from "./stats.ts";

/** A provider's link to its recorder. */
export interface OtelHandle {
  /** Settles once recording has started, or was found impossible (logged); never rejects. */
  readonly ready: Promise<void>;
  /** Stops recording and detaches the observable callbacks; idempotent. */
  close(): void;
}

const OFF: OtelHandle = { ready: Promise.resolve(), close: () => {} };

let apiLoad: Promise<OtelApi | Error> | undefined;

/** Loads `@opentelemetry/api` once per process; the error when it cannot be loaded. */
function loadApi(): Promise<OtelApi | Error> {
  apiLoad ??= import("@opentelemetry/api").then(
    (module) => {
      // Node's CommonJS interop may put the exports under `default`.
      const api = (module as { metrics?: unknown }).metrics
        ? module
        : (module as unknown as { default: OtelApi }).default;
      return api as OtelApi;
    },
    (error) => error instanceof Error ? error : new Error(String(error)),
  );
  return apiLoad;
}

/**
 * Attaches an OpenTelemetry recorder to a provider's `Metrics` when `option` turns recording on:
 * loads the API (once per process), builds the instruments and sets `metrics.recorder`. Does
 * nothing, and imports nothing, when it is off.
 *
 * @param metrics The provider's counters, which call the recorder.
 * @param option The `otel` option as given.
 * @param target Describes the provider; called once the API has loaded.
 * @param log Where a failure to load the API is reported.
 * @throws {CacheInputError} When the option is malformed.
 */
export function attachOtel(
  metrics: Metrics,
  option: unknown,
  target: () => OtelTarget,
  log: FaultLog,
): OtelHandle {
  const settings = resolveOtel(option);
  if (settings === null) return OFF;
  let closed = false;
  let recorder: OtelRecorder | undefined;
  const ready = loadApi().then((api) => {
    if (closed) return;
    if (api instanceof Error) {
      log.fault(
        "otel",
        "Cannot load @opentelemetry/api, so no metrics or spans are recorded (install it: " +
          "npm install @opentelemetry/api); the cache works without it",
        api,
      );
      return;
    }
    try {
      recorder = new OtelRecorder(api, metrics, settings, target());
      metrics.recorder = recorder;
    } catch (error) {
      log.fault("otel", "Cannot set up OpenTelemetry; nothing is recorded", error);
    }
  });
  return {
    ready,
    close: () => {
      closed = true;
      if (recorder === undefined) return;
      if (metrics.recorder === recorder) metrics.recorder = undefined;
      recorder.close();
      recorder = undefined;
    },
  };
}
