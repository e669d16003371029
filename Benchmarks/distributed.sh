#!/usr/bin/env bash
# Speed-up of the distributed path with 1, 2 and 4 ranks (issue 16, part 4):
#   - fan-out exact query (k = 10) over ~1e6 × 128 float16 rows in 4 shards;
#   - sharded IVF index build (each shard by one rank);
#   - distributed greedy SELECT: per-pick reduction latency.
# Per-rank figures (rows/s scanned per rank, bytes moved per merge, merge time, per-pick
# reduction latency) are printed so a cost model for many machines can use per-shard numbers.
#
#   Benchmarks/distributed.sh [--rows N] [--k K] [--ranks "1 2 4"] [--out DIR] [--no-build] [--debug]
#
# Needs: mpirun (openmpi-bin), python3 with numpy. Writes DIR/distributed.json and
# DIR/distributed.md (DIR defaults to a new directory under /tmp).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
rows=1000000 width=128 ranks="1 2 4" out="" build=1 configuration=release
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --k) width="$2"; shift 2 ;;
        --ranks) ranks="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --debug) configuration=debug; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "distributed.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
cd "$root"
if [ "$build" = 1 ]; then
    swift build -c "$configuration" --product gradsketch
    swift build -c "$configuration" --product gradsketch-mpi
fi
bin="$(swift build -c "$configuration" --show-bin-path)"
GRADSKETCH="$bin/gradsketch" GRADSKETCH_MPI="$bin/gradsketch-mpi"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN="mpirun --oversubscribe --mca mpi_yield_when_idle 1 --mca btl_vader_single_copy_mechanism none"
out="${out:-$(mktemp -d /tmp/gradsketch-distributed.XXXXXX)}"
mkdir -p "$out"
data="$out/data"
rm -rf "$data" && mkdir -p "$data"

shards=4 segments_per_shard=4
per_segment=$((rows / (shards * segments_per_shard)))
echo "== data: $shards shards × $segments_per_shard segments × $per_segment rows, k = $width, float16 (in $data)"
python3 - "$data" "$per_segment" "$width" <<'PY'
import sys, numpy as np
data, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(2026)
np.save(f"{data}/rows.npy", rng.standard_normal((n, k)).astype(np.float16))
np.save(f"{data}/q.npy", rng.standard_normal(k).astype(np.float32))
PY
entries=()
for ((i = 0; i < shards; i++)); do
    id="$("$GRADSKETCH" init "$data/shard-$i" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["store_id"])')"
    entries+=("$i|$data/shard-$i|$id")
    for ((s = 0; s < segments_per_shard; s++)); do
        # The same rows in every segment would tie every score: shift ids only, values by a seeded permutation.
        python3 -c "import numpy as np, sys; r = np.load('$data/rows.npy'); p = np.random.default_rng($i * 100 + $s).permutation(r.shape[1]); np.save('$data/seg.npy', np.ascontiguousarray(r[:, p]))"
        "$GRADSKETCH" append "$data/shard-$i" --set g --rows "$data/seg.npy" --dtype float16 >/dev/null
    done
done
python3 - "$data/map" "${entries[@]}" <<'PY'
import json, os, sys
os.makedirs(sys.argv[1], exist_ok=True)
shards = [{"name": f"s{e.split('|')[0]}", "host": None, "path": e.split('|')[1], "store_id": e.split('|')[2]} for e in sys.argv[2:]]
json.dump({"format": "gradsketch-shards", "version": 1, "shards": shards}, open(sys.argv[1] + "/gradsketch-shards.json", "w"))
PY
rm -f "$data/seg.npy"

results="$out/runs.jsonl"
: > "$results"
timed() {  # label ranks command… : appends {"label", "ranks", "wall_seconds", "output"} to runs.jsonl
    local label="$1" np="$2"; shift 2
    local start end
    start=$(date +%s.%N)
    "$@" > "$out/last.json"
    end=$(date +%s.%N)
    python3 - "$label" "$np" "$start" "$end" "$out/last.json" >> "$results" <<'PY'
import json, sys
label, np_, start, end, path = sys.argv[1:]
print(json.dumps({"label": label, "ranks": int(np_), "wall_seconds": float(end) - float(start), "output": json.load(open(path))}))
PY
}
for np in $ranks; do
    echo "== $np rank(s)"
    # Warm the page cache once, then three measured queries.
    $MPIRUN -np "$np" "$GRADSKETCH_MPI" query "$data/map" --set g --vector "$data/q.npy" -k 10 > /dev/null
    for repeat in 1 2 3; do
        timed query "$np" $MPIRUN -np "$np" "$GRADSKETCH_MPI" query "$data/map" --set g --vector "$data/q.npy" -k 10 --stats --json
    done
    timed greedy "$np" $MPIRUN -np "$np" "$GRADSKETCH_MPI" select "$data/map" --set g --vector "$data/q.npy" -k 10 --stats --json
    timed index "$np" $MPIRUN -np "$np" "$GRADSKETCH_MPI" index-build "$data/map" --set g --name "ip-np$np" --iterations 10 --training-rows 20000 --json
done

python3 - "$results" "$out" "$rows" "$width" "$(nproc)" <<'PY'
import json, statistics, sys
results, out, rows, width, cores = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
runs = [json.loads(line) for line in open(results)]
table = {}
for run in runs:
    entry = table.setdefault(run["ranks"], {"query_wall": [], "query_local": [], "query_merge": [], "bytes": [], "rows_per_rank": []})
    o = run["output"]
    if run["label"] == "query":
        entry["query_wall"].append(run["wall_seconds"])
        entry["query_local"].append(max(r["statistics"]["local_seconds"] for r in o["ranks"]))
        entry["query_merge"].append(max(r["statistics"]["merge_seconds"] for r in o["ranks"]))
        entry["bytes"].append(o["ranks"][0]["statistics"]["bytes_gathered"])
        entry["rows_per_rank"].append([r["statistics"]["rows_scanned"] / max(r["statistics"]["local_seconds"], 1e-9) for r in o["ranks"]])
    elif run["label"] == "greedy":
        s = [r["statistics"] for r in o["ranks"]]
        entry["greedy_wall"] = run["wall_seconds"]
        entry["greedy_pick_local"] = max(x["local_seconds_per_pick"] for x in s)
        entry["greedy_pick_reduction"] = max(x["reduction_seconds_per_pick"] for x in s)
        entry["greedy_bytes_per_pick"] = s[0]["bytes_gathered_per_pick"]
        entry["greedy_prepare"] = max(x["prepare_seconds"] for x in s)
    elif run["label"] == "index":
        entry["index_wall"] = o["wall_seconds"]
        entry["index_shard_seconds"] = [x["seconds"] for x in o["shards"]]
        entry["index_command_wall"] = run["wall_seconds"]
base = table[min(table)]
lines = [f"Distributed path, {rows} × {width} float16 rows in 4 shards × 4 segments, on {cores} cores (ranks beyond {cores} share them: speed-up is capped by the cores, not by the algorithm).", "",
         "| ranks | query: scan s (max rank) | merge s | bytes gathered/merge | rows/s per rank | query wall s (mpirun incl.) | scan speed-up | index build s (4 shards) | index speed-up | greedy s/pick local | s/pick reduction | bytes/pick |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
summary = {}
for np_ in sorted(table):
    e = table[np_]
    local = statistics.median(e["query_local"]); merge = statistics.median(e["query_merge"]); wall = statistics.median(e["query_wall"])
    rate = statistics.median([statistics.mean(x) for x in e["rows_per_rank"]])
    speed = statistics.median(base["query_local"]) / local
    index_speed = base["index_wall"] / e["index_wall"]
    lines.append(f"| {np_} | {local:.4f} | {merge:.5f} | {e['bytes'][0]} | {rate:,.0f} | {wall:.2f} | {speed:.2f} | {e['index_wall']:.1f} | {index_speed:.2f} | {e['greedy_pick_local']:.4f} | {e['greedy_pick_reduction']:.5f} | {e['greedy_bytes_per_pick']:.0f} |")
    summary[np_] = {"query_scan_seconds": local, "merge_seconds": merge, "bytes_gathered_per_merge": e["bytes"][0], "rows_per_second_per_rank": rate,
                    "query_wall_seconds": wall, "scan_speedup": speed, "index_build_seconds": e["index_wall"], "index_speedup": index_speed,
                    "index_shard_seconds": e["index_shard_seconds"], "greedy_local_seconds_per_pick": e["greedy_pick_local"],
                    "greedy_reduction_seconds_per_pick": e["greedy_pick_reduction"], "greedy_bytes_per_pick": e["greedy_bytes_per_pick"],
                    "greedy_prepare_seconds": e["greedy_prepare"]}
text = "\n".join(lines)
print(text)
open(f"{out}/distributed.md", "w").write(text + "\n")
json.dump({"rows": rows, "k": width, "dtype": "float16", "shards": 4, "segments_per_shard": 4, "cores": cores, "by_ranks": summary},
          open(f"{out}/distributed.json", "w"), indent=2)
print(f"\nwritten: {out}/distributed.md, {out}/distributed.json")
PY
