#!/usr/bin/env bash
# Indexed vs exact fan-out query (Spec/distributed.md §3.3.1) with 1, 2 and 4 ranks: 4 shards of
# N rows (k = 64 float32, 64 Gaussian clusters), an ivf-int8 and an ivf-rq4 index built per shard
# by `gradsketch-mpi index-build`, then Q queries (near stored rows) exactly and through each index
# at --nprobe P. Prints per run the slowest rank's search seconds (opening, verifying on first
# touch, searching, annotations), the merge seconds, and recall@10 against the exact fan-out.
#
#   Benchmarks/fanout-index.sh [--rows N] [--queries Q] [--nprobe P] [--ranks "1 2 4"] [--debug]
#
# Uses the already built binaries (release unless --debug). Needs mpirun and python3 with numpy.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
rows=25000 queries=200 nprobe=8 ranks="1 2 4" configuration=release
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --queries) queries="$2"; shift 2 ;;
        --nprobe) nprobe="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --debug) configuration=debug; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "fanout-index.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
bin="$(cd "$root" && swift build -c "$configuration" --show-bin-path)"
gs="$bin/gradsketch" gm="$bin/gradsketch-mpi"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN="mpirun --oversubscribe --mca mpi_yield_when_idle 1 --mca btl_vader_single_copy_mechanism none"
w="$(mktemp -d "${TMPDIR:-/tmp}/gradsketch-fanout-index-bench.XXXXXX")"
trap 'rm -rf "$w"' EXIT
python3 - "$w" "$rows" "$queries" <<'PY'
import sys, numpy as np
w, n, q = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(5)
centers = rng.standard_normal((64, 64)).astype(np.float32)
for s in range(4):
    x = centers[rng.integers(0, 64, n)] + 0.3 * rng.standard_normal((n, 64)).astype(np.float32)
    np.save(f"{w}/rows{s}.npy", x.astype(np.float32))
    if s == 0: first = x
np.save(f"{w}/q.npy", (first[rng.integers(0, n, q)] + 0.1 * rng.standard_normal((q, 64))).astype(np.float32))
PY
mkdir -p "$w/map"
entries=()
for s in 0 1 2 3; do
    id="$("$gs" init "$w/map/shard-$s" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["store_id"])')"
    "$gs" append "$w/map/shard-$s" --set g --rows "$w/rows$s.npy" >/dev/null
    entries+=("$s|$w/map/shard-$s|$id")
done
python3 - "$w/map" "${entries[@]}" <<'PY'
import json, sys
shards = [{"name": f"s{e.split('|')[0]}", "host": None, "path": e.split('|')[1], "store_id": e.split('|')[2]} for e in sys.argv[2:]]
json.dump({"format": "gradsketch-shards", "version": 1, "shards": shards}, open(sys.argv[1] + "/gradsketch-shards.json", "w"))
PY
echo "4 shards × $rows rows, k = 64 float32, $queries queries, $configuration build"
for kind in ivf-int8 ivf-rq4; do
    SECONDS=0
    $MPIRUN -np 2 "$gm" index-build "$w/map" --set g --name "$kind" --kind "$kind" --iterations 8 >/dev/null 2>&1
    echo "index-build --kind $kind on 2 ranks: $SECONDS s"
done
for np in $ranks; do
    for mode in exact ivf-int8 ivf-rq4; do
        options=()
        [ "$mode" = exact ] || options=(--index "$mode" --nprobe "$nprobe")
        $MPIRUN -np "$np" "$gm" query "$w/map" --set g --vector "$w/q.npy" -k 10 "${options[@]}" --stats --json > "$w/$mode.$np.json"
        python3 - "$w/$mode.$np.json" "$w/exact.$(echo $ranks | cut -d' ' -f1).json" "$np" "$mode" "$nprobe" <<'PY'
import json, sys
d, e = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
r = d["ranks"]
search = max(x["statistics"]["local_seconds"] for x in r)
merge = max(x["statistics"]["merge_seconds"] for x in r)
place = lambda doc: [{(h["shard_index"], h["segment"], h["row"]) for h in l} for l in doc["results"]]
recall = sum(len(a & b) for a, b in zip(place(d), place(e))) / sum(len(b) for b in place(e))
how = "exact scan" if sys.argv[4] == "exact" else f"{sys.argv[4]} nprobe {sys.argv[5]}"
print(f"ranks {sys.argv[3]}  {how:20s} search {search:.3f} s (slowest rank)  merge {merge:.4f} s  recall@10 vs exact {recall:.3f}")
PY
    done
done
