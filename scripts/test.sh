#!/usr/bin/env bash
# Runs the tap suite and ends with a plain "tap: N passed, N failed" line (CI reads it),
# keeping tap's exit status.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! npx tsc -p tsconfig.json --noEmit; then
  echo "tap: 0 passed, 1 failed"
  exit 1
fi
npx tap "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Without a terminal tap ends with "# { total: N, pass: N, fail: N, ... }".
summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -1)
passed=$(grep -Eo 'pass: [0-9]+' <<<"$summary" | grep -Eo '[0-9]+' || echo 0)
failed=$(grep -Eo 'fail: [0-9]+' <<<"$summary" | grep -Eo '[0-9]+' || echo 0)
if [ -z "$summary" ] && [ "$status" -ne 0 ]; then failed=1; fi
echo "tap: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
