/**
 * The layout of `src/`: no import cycle among its modules (type-only imports included, since a
 * cycle of types still ties two concerns together), and every module opens with a module doc
 * comment saying what it holds. Reads the TypeScript sources; no server.
 *
 * Under Node the compiled copy of this file runs from `npm/test/`; it finds the sources by walking
 * up to the directory holding `deno.json` (the built `npm/src/*.js` has lost its type imports).
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: the nearest directory above this file that holds `deno.json` and `src/`. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "deno.json")) && existsSync(join(dir, "src"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error("Cannot find the repository root above this test");
    dir = parent;
  }
}

/** Every `.ts` file under `dir`, recursively, as absolute paths. */
async function tsFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...await tsFiles(path));
    else if (entry.name.endsWith(".ts")) found.push(path);
  }
  return found.sort();
}

/**
 * Static `import` / `export ... from` declarations (type-only ones included), written unindented
 * at the top level as this code base does; JSDoc examples (` * import ...`) never match.
 */
const STATIC_IMPORT =
  /^(?:import|export)\s+(?:type\s+)?(?:[\w$]+\s*,?\s*)?(?:\{[^}]*\}|\*\s*(?:as\s+[\w$]+)?)?\s*from\s*["']([^"']+)["']|^import\s*["']([^"']+)["']/gm;
/** Dynamic imports and type-position `import("...")`, outside comment lines. */
const DYNAMIC_IMPORT = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** The relative specifiers `source` imports, in any form. */
export function importSpecifiers(source: string): string[] {
  const specifiers: string[] = [];
  for (const match of source.matchAll(STATIC_IMPORT)) specifiers.push(match[1] ?? match[2]);
  const code = source.split("\n").filter((line) => !/^\s*(\*|\/\/|\/\*)/.test(line)).join("\n");
  for (const match of code.matchAll(DYNAMIC_IMPORT)) specifiers.push(match[1]);
  return specifiers.filter((specifier) => specifier.startsWith("."));
}

/** The first cycle found in `graph` (each node's edges), as the path that closes it; or `null`. */
export function findCycle(graph: ReadonlyMap<string, readonly string[]>): string[] | null {
  const done = new Set<string>();
  const onPath: string[] = [];
  const visit = (node: string): string[] | null => {
    const at = onPath.indexOf(node);
    if (at !== -1) return [...onPath.slice(at), node];
    if (done.has(node)) return null;
    onPath.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    onPath.pop();
    done.add(node);
    return null;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return null;
}

/** `src/`'s import graph: each module (relative to the root) and the `src/` modules it imports. */
async function sourceGraph(root: string): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const file of await tsFiles(join(root, "src"))) {
    const edges = importSpecifiers(await readFile(file, "utf8"))
      .map((specifier) => resolve(dirname(file), specifier))
      .filter((target) => !relative(join(root, "src"), target).startsWith(".."))
      .map((target) => relative(root, target).replaceAll("\\", "/"));
    graph.set(relative(root, file).replaceAll("\\", "/"), [...new Set(edges)]);
  }
  return graph;
}

describe("src/ import graph", () => {
  it("reads every import form, type-only and multi-line ones included", () => {
    const source = [
      "/**",
      " * @example",
      ' * import { x } from "./in_a_doc_comment.ts";',
      " */",
      'import { a } from "./a.ts";',
      'import type { B } from "./b.ts";',
      'import c, { type C } from "./c.ts";',
      'import * as d from "./d.ts";',
      "import {",
      "  e,",
      "  type E,",
      '} from "./e.ts";',
      'export { f } from "./f.ts";',
      'export type { G } from "./g.ts";',
      'export * from "./h.ts";',
      'import "./i.ts";',
      'import { npm } from "ioredis";',
      'const j = await import("./j.ts");',
      'type K = import("./k.ts").K;',
      '// const l = await import("./in_a_comment.ts");',
    ].join("\n");
    assert.deepEqual(
      importSpecifiers(source),
      ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"].map((name) => `./${name}.ts`),
    );
  });

  it("finds a cycle, and only a cycle", () => {
    const acyclic = new Map([["a", ["b", "c"]], ["b", ["c"]], ["c", []]]);
    assert.equal(findCycle(acyclic), null);
    const cyclic = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]]]);
    assert.deepEqual(findCycle(cyclic), ["a", "b", "c", "a"]);
  });

  it("has no cycle", async () => {
    const graph = await sourceGraph(repoRoot());
    // The walk sees the modules and their edges, type-only ones included.
    assert.ok(graph.size > 30, `expected all of src/, found ${graph.size} modules`);
    assert.ok(graph.get("src/provider.ts")?.includes("src/stats.ts"));
    assert.ok(graph.get("src/servers.ts")?.includes("src/config.ts")); // `import type`
    assert.ok(graph.get("src/topology/standalone.ts")?.some((to) => to.startsWith("src/")));
    const cycle = findCycle(graph);
    assert.equal(cycle, null, `import cycle in src/: ${cycle?.join(" -> ")}`);
  });
});

describe("src/ modules", () => {
  it("each open with a module doc comment", async () => {
    const root = repoRoot();
    const missing: string[] = [];
    for (const file of await tsFiles(join(root, "src"))) {
      const source = await readFile(file, "utf8");
      const doc = /^\s*\/\*\*([\s\S]*?)\*\//.exec(source)?.[1] ?? "";
      if (!doc.includes("@module")) missing.push(relative(root, file));
    }
    assert.deepEqual(missing, [], "modules without a leading `/** ... @module */` doc comment");
  });
});
