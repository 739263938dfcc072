#!/usr/bin/env bash
# Runs the tap suite and ends with a plain "tap: N passed, N failed" line (CI reads it),
# keeping tap's exit status.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
npx tsc -p tsconfig.json --noEmit || { echo "tap: 0 passed, 1 failed"; exit 1; }
npx tap "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -Eo '# \{ total: [0-9]+, pass: [0-9]+' "$log" | tail -1 | grep -Eo 'pass: [0-9]+' | grep -Eo '[0-9]+' || true)
total=$(grep -Eo '# \{ total: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || true)
if [ -z "${total}" ]; then
  # tap printed its terminal report; read its "# pass / # fail" style summary instead
  passed=$(grep -Eo '^# pass +[0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  failed=$(grep -Eo '^# fail +[0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
else
  failed=$(( total - ${passed:-0} ))
fi
rm -f "$log"
echo "tap: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
