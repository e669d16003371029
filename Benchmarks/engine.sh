#!/usr/bin/env bash
# The read and append costs issue 13 targets, each with its baseline measured in the same run
# (ratios, not timed assertions):
#   cold:   a new `gradsketch query --vector q.npy -k 10 --json` process per query, page cache warm
#           (one untimed run first), indexed and --exact: wall time (median, p90), peak resident
#           memory (/usr/bin/time -v) as a fraction of the row + index bytes, recall@10
#   warm:   `gradsketch-bench ann` at the index's tuned nprobe, one query at a time on one thread,
#           searcher kept open (the in-process figure the warm target is relative to)
#   exact:  bytes of rows scanned per second by one exact query in process (1 and 2 threads)
#           against STREAM's read bandwidth (../shared/bench/stream_mini.c)
#   append: APPENDS appends of 64 rows with ids into one set of a new store, as `gradsketch append`
#           processes and through the library in one process: mean of the last 100 / first 100
# Data: ROWS clustered rows (256 Gaussian clusters) of width K stored as float16, an IVF index
# from `gradsketch index build --recall-target 0.95`, 20 queries from the same clusters.
# Usage: Benchmarks/engine.sh [ROWS] [K]   (default 1 000 000 × 1024 float16 = 2 GB of rows, about
#        15 minutes on 2 cores and 6 GB of disk;
#        APPENDS=1000, QUERIES=20 in the environment; KEEP=1 keeps the work directory for profiling;
#        e.g. `APPENDS=40 Benchmarks/engine.sh 20000 256` to smoke-test)
#        BEFORE_BIN=DIR (a directory holding an older build's gradsketch and gradsketch-bench) also
#        runs the cold, warm and exact figures with those binaries on a store they wrote
#        themselves (format 1.1 for a build of main before issue 13), in the same run, and the
#        summary prints them as a "before" column.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-1000000}"; k="${2:-1024}"
appends="${APPENDS:-1000}"; queries="${QUERIES:-20}"
work="$(mktemp -d)"
if [ -n "${KEEP:-}" ]; then echo "engine.sh: keeping $work (KEEP=1; delete it when done)" >&2; else trap 'rm -rf "$work"' EXIT; fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
[ -x /usr/bin/time ] || { echo "engine.sh: /usr/bin/time is missing (Tools/setup.sh installs Debian's time)" >&2; exit 1; }

# (swift build takes one --product: the last one given wins)
swift build -c release --product gradsketch >&2
swift build -c release --product gradsketch-bench >&2
gs=.build/release/gradsketch
bench=.build/release/gradsketch-bench
stream_source="${STREAM_SOURCE:-../shared/bench/stream_mini.c}"
if [ ! -f "$stream_source" ] && [ -z "${STREAM_SOURCE:-}" ]; then  # in a worktree: next to the main checkout
  stream_source="$(dirname "$(git rev-parse --path-format=absolute --git-common-dir)")/../shared/bench/stream_mini.c"
fi
start=$SECONDS
phase() { echo "engine.sh: $1 ($((SECONDS - start)) s)" >&2; }

phase "data: $rows × $k float16 in $work"
python3 Benchmarks/engine.py make "$work" "$rows" "$k" "$queries"
store="$work/store"
"$gs" init "$store" >/dev/null
"$gs" append "$store" --set bench --rows "$work/rows.npy" >/dev/null
phase "index build"
"$gs" index build "$store" --set bench --recall-target 0.95 >/dev/null
before="${BEFORE_BIN:-}"
if [ -n "$before" ]; then
  [ -x "$before/gradsketch" ] && [ -x "$before/gradsketch-bench" ] || { echo "engine.sh: BEFORE_BIN=$before lacks gradsketch or gradsketch-bench" >&2; exit 1; }
  phase "before: store and index written by $before/gradsketch"
  "$before/gradsketch" init "$work/store-before" >/dev/null
  "$before/gradsketch" append "$work/store-before" --set bench --rows "$work/rows.npy" >/dev/null
  "$before/gradsketch" index build "$work/store-before" --set bench --recall-target 0.95 >/dev/null
fi
row_bytes=$((rows * k * 2))
index_bytes=$(find "$store" -path '*index*' -name '*.h5' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
echo "{\"what\": \"data\", \"rows\": $rows, \"k\": $k, \"dtype\": \"float16\", \"row_bytes\": $row_bytes, \"index_bytes\": $index_bytes}" \
  > "$work/results.jsonl"

rm "$work/rows.npy"
{
  if [ -n "$before" ]; then
    phase "before: cold queries, warm queries and exact bandwidth"
    python3 Benchmarks/engine.py cold before-cold-indexed "$queries" "$work/truth.npy" -- \
      "$before/gradsketch" query "$work/store-before" --set bench --vector "$work/q{q}.npy" -k 10 --json
    python3 Benchmarks/engine.py cold before-cold-exact "$queries" "$work/truth.npy" -- \
      "$before/gradsketch" query "$work/store-before" --set bench --vector "$work/q{q}.npy" -k 10 --exact --json
    "$before/gradsketch-bench" ann "$work/store-before" bench "$work/queries.npy" "$work/truth.npy" ip "" reuse=ip | python3 Benchmarks/engine.py prefix before-
    "$before/gradsketch-bench" search "$work/store-before" bench "$work/queries.npy" 1 | python3 Benchmarks/engine.py prefix before-
    "$before/gradsketch-bench" search "$work/store-before" bench "$work/queries.npy" 2 | python3 Benchmarks/engine.py prefix before-
    rm -rf "$work/store-before"
  fi
  phase "cold queries"
  python3 Benchmarks/engine.py cold cold-indexed "$queries" "$work/truth.npy" -- \
    "$gs" query "$store" --set bench --vector "$work/q{q}.npy" -k 10 --json
  python3 Benchmarks/engine.py cold cold-exact "$queries" "$work/truth.npy" -- \
    "$gs" query "$store" --set bench --vector "$work/q{q}.npy" -k 10 --exact --json
  phase "warm queries and exact bandwidth"
  "$bench" ann "$store" bench "$work/queries.npy" "$work/truth.npy" ip "" reuse=ip
  "$bench" search "$store" bench "$work/queries.npy" 1
  "$bench" search "$store" bench "$work/queries.npy" 2
  if [ -f "$stream_source" ]; then
    gcc -O3 -march=native -ffast-math -fopenmp "$stream_source" -o "$work/stream_mini"
    "$work/stream_mini" | sed -E 's/.*ReadSum ([0-9.]+) GB\/s.*/{"what": "stream-readsum", "gbps": \1}/'
  else
    echo "engine.sh: $stream_source not found: no STREAM baseline" >&2
  fi
  phase "append growth: $appends CLI appends"
  "$gs" init "$work/grow" >/dev/null
  python3 Benchmarks/engine.py append-cli "$gs" "$work/grow" "$work/batch.npy" "$appends"
  rm -rf "$work/grow"
  phase "append growth: $appends library appends"
  "$bench" append-growth "$work/grow-library" "$appends" 64 "$k"
  rm -rf "$work/grow-library"
} | tee -a "$work/results.jsonl"
phase "done"

python3 Benchmarks/engine.py summary "$work/results.jsonl" "$row_bytes" "$index_bytes"
