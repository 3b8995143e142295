# Counting helpers shared by scripts/test.sh and scripts/test_matrix.sh (sourced, not run):
# they add a log's passed / failed counts to the caller's `passed` and `failed` variables.

# Deno's summary: "ok | 28 passed (382 steps) | 0 failed"; each test and step counts. A log
# without a summary (the run crashed) counts as one failure.
count_deno() {
  local line p s f
  line=$(sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -E '^(ok|FAILED) \| ' | tail -n 1)
  if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
  p=$(echo "$line" | sed -nE 's/.* ([0-9]+) passed.*/\1/p')
  s=$(echo "$line" | sed -nE 's/.*passed \(([0-9]+) steps?\).*/\1/p')
  f=$(echo "$line" | sed -nE 's/.*\| ([0-9]+) failed.*/\1/p')
  passed=$((passed + ${p:-0} + ${s:-0}))
  failed=$((failed + ${f:-0}))
}

# Node's test runner summary: "# pass N" / "# fail N" (TAP, Node 20's reporter when not on a
# terminal) or "ℹ pass N" / "ℹ fail N" (spec, Node 22 and later).
count_node() {
  local p f
  p=$(grep -E '^(#|ℹ) pass [0-9]+' "$1" | tail -n 1 | awk '{print $3}')
  f=$(grep -E '^(#|ℹ) fail [0-9]+' "$1" | tail -n 1 | awk '{print $3}')
  if [ -z "$p" ]; then failed=$((failed + 1)); return; fi
  passed=$((passed + p))
  failed=$((failed + ${f:-0}))
}
