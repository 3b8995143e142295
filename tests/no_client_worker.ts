/**
 * A separate process for tests/facade_test.ts, run with client packages hidden (see
 * `hidePackages` in tests/_helpers.ts): calls `setCache()` from the environment and prints the
 * error it throws as one JSON line.
 */

import { CacheDependencyError, setCache } from "../mod.ts";

try {
  const connected = await setCache({ logger: { warn: () => {} } });
  console.log(JSON.stringify({ connected }));
} catch (error) {
  console.log(JSON.stringify({
    name: (error as Error).name,
    dependency: error instanceof CacheDependencyError,
    message: (error as Error).message,
  }));
}
