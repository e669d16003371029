#!/usr/bin/env bash
# Append growth, issue 13 item 5 (the append part of Benchmarks/engine.sh on its own): APPENDS
# appends of 64 float16 rows with ids into one set of a new store, as `gradsketch append`
# processes and through the library in one process; figure = mean of the last 100 appends /
# mean of the first 100 (the median ratio is printed too: it shrugs off load spikes from other
# processes on a shared machine). A ratio, never a timed assertion.
# With BEFORE_BIN=DIR (a directory holding older `gradsketch` and `gradsketch-bench` release
# binaries) the same runs are made with those too, in the same invocation (after the new ones).
# RESULTS=FILE keeps the raw JSON lines (every append's seconds) in FILE.
# Usage: [BEFORE_BIN=DIR] Benchmarks/append-growth.sh [APPENDS] [K]   (default 1000, 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
appends="${1:-1000}"; k="${2:-1024}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
swift build -c release --product gradsketch >&2
swift build -c release --product gradsketch-bench >&2
python3 -c "import numpy as np, sys; np.save(sys.argv[1], np.random.default_rng(1).standard_normal((64, $k)).astype(np.float16))" "$work/batch.npy"

run() {
  local label=$1 bin=$2
  echo "append-growth.sh: $label: $appends CLI appends" >&2
  "$bin/gradsketch" init "$work/cli" >/dev/null
  python3 Benchmarks/engine.py append-cli "$bin/gradsketch" "$work/cli" "$work/batch.npy" "$appends" | sed "s/^{/{\"build\": \"$label\", /"
  rm -rf "$work/cli" "$work/cli.ids"
  echo "append-growth.sh: $label: $appends library appends" >&2
  "$bin/gradsketch-bench" append-growth "$work/library" "$appends" 64 "$k" | sed "s/^{/{\"build\": \"$label\", /"
  rm -rf "$work/library"
}
results="${RESULTS:-$work/results.jsonl}"
{
  run after .build/release
  if [ -n "${BEFORE_BIN:-}" ]; then run before "$BEFORE_BIN"; fi
} > "$results"
python3 - "$results" <<'PY'
import json, statistics, sys
print(f"{'build':8} {'how':8} {'first mean ms':>14} {'last mean ms':>13} {'ratio':>6} {'median ratio':>13}")
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    w, s = r["window"], r["seconds"]
    how = r["what"].replace("append-growth-", "")
    median = statistics.median(s[-w:]) / statistics.median(s[:w])
    print(f"{r['build']:8} {how:8} {1000 * r['first_mean_s']:14.1f} {1000 * r['last_mean_s']:13.1f} {r['ratio']:6.2f} {median:13.2f}")
    del r["seconds"]
    print("  " + json.dumps(r, sort_keys=True))
PY
