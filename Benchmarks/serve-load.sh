#!/usr/bin/env bash
# Load test of `gradsketch serve` on loopback, issue 14 item 4: a store of ROWS × K float16
# rows (random normal) with an IVF index (`gradsketch index build`), served on a free port;
# for C = 1, 4 and 16 concurrent keep-alive clients (Benchmarks/serve_load.py), SECONDS of
# top-k queries (k = 10, inner product) each, exact and through the index. Prints requests/s,
# p50/p90/p99 latency and the error count per setting, and fails if any request failed.
# The client runs on the same machine as the server: on few cores it competes for them.
# Usage: [GRADSKETCH_BIN_DIR=DIR] Benchmarks/serve-load.sh [ROWS] [K] [SECONDS]   (default 100000 256 10;
#        `Benchmarks/serve-load.sh 20000 256 5` is the smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-100000}"; k="${2:-256}"; seconds="${3:-10}"
if [ -z "${GRADSKETCH_BIN_DIR:-}" ]; then
  swift build -c release --product gradsketch >&2
  swift build -c release --product gradsketch-serve >&2
  GRADSKETCH_BIN_DIR=.build/release
fi
cli="$GRADSKETCH_BIN_DIR/gradsketch"
work="$(mktemp -d)"
server=""
trap '[ -z "$server" ] || kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

python3 -c "import numpy as np, sys; np.save(sys.argv[1], np.random.default_rng(1).standard_normal(($rows, $k)).astype(np.float16))" "$work/rows.npy"
"$cli" init "$work/store" >/dev/null
"$cli" append "$work/store" --set train --rows "$work/rows.npy" >/dev/null
echo "serve-load.sh: building an IVF index over $rows × $k rows" >&2
"$cli" index build "$work/store" --set train --metric ip --recall-target 0.9 >/dev/null 2>"$work/index.log" || { cat "$work/index.log" >&2; exit 1; }

"$cli" serve "$work/store" --port 0 > "$work/serve.out" 2> "$work/serve.err" &
server=$!
for _ in $(seq 1 300); do grep -q '^listening on' "$work/serve.out" && break; sleep 0.1; done
url="$(sed -n 's/^listening on \(http:[^ ]*\) .*/\1/p' "$work/serve.out")"
[ -n "$url" ] || { echo "serve-load.sh: the server did not start:" >&2; cat "$work/serve.err" >&2; exit 1; }
echo "serve-load.sh: $url, $rows × $k float16, $seconds s per setting, $(nproc) cores shared by server and client" >&2

for mode in exact auto; do
  for clients in 1 4 16; do
    python3 Benchmarks/serve_load.py "$url" train "$k" "$clients" "$seconds" "{\"index\": \"$mode\"}"
  done
done > "$work/results.jsonl"

python3 - "$work/results.jsonl" <<'PY'
import json, sys
results = [json.loads(line) for line in open(sys.argv[1])]
print(f"{'index':6} {'clients':>7} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>6}")
for r in results:
    print(f"{r['query_index']:6} {r['concurrency']:7d} {r['requests']:9d} {r['requests_per_s']:8.1f} "
          f"{r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:6d}")
failed = sum(r["errors"] for r in results)
if failed:
    print(f"serve-load.sh: {failed} requests failed; first: {next(r['first_error'] for r in results if r['errors'])}", file=sys.stderr)
    sys.exit(1)
PY
