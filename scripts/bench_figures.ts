/**
 * The figures the bench scripts compute and print (scripts/bench.ts, bench_tracking.ts,
 * bench_get_or_set.ts): a percentile of sorted samples, the median, and numbers as the tables
 * show them. Uses nothing but the language, so it runs unchanged under Node (bench:node).
 *
 * @module
 */

/** The `p` quantile (0..1) of `sorted` (ascending), as the sample at that rank; NaN when empty. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/** The median of `values` (any order): the middle one, or the mean of the middle two. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** `n` with thousands separators and `digits` decimals; `-` when it is not finite. */
export const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "-";
