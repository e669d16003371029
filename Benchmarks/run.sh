#!/usr/bin/env bash
# Append and scan benchmarks, each against baselines measured in the same run:
#   append: GradSketch (checksums + fsync) vs numpy + h5py writing the same bytes
#   scan:   GradSketch's zero-copy sum of every row vs a plain C mmap scan of the same
#           file, numpy, and the machine's streaming read bandwidth (shared/bench/stream_mini.c)
# Usage: Benchmarks/run.sh [ROWS] [K]   (default 262144 × 1024 float32 = 1 GiB)
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-262144}"; k="${2:-1024}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

swift build -c release --product gradsketch-bench >&2
bench=.build/release/gradsketch-bench
stream_source="${STREAM_SOURCE:-../shared/bench/stream_mini.c}"
gcc -O3 -march=native -ffast-math -fopenmp Benchmarks/scan_file.c -o "$work/scan_file"

echo "data: $rows × $k float32 in $work" >&2
python3 Benchmarks/baselines.py make "$work/rows.npy" "$rows" "$k"
{
  python3 Benchmarks/baselines.py h5py-append "$work/rows.npy" "$work" 3
  "$bench" append "$work" "$work/rows.npy" float32 3
  "$bench" scan "$work/append-0" bench 10 "$OMP_NUM_THREADS"
  mkdir -p "$work/f16"
  "$bench" append "$work/f16" "$work/rows.npy" float16 2   # convert + round while appending
  "$bench" scan "$work/f16/append-0" bench 10 "$OMP_NUM_THREADS"
  read -r offset size < <(python3 Benchmarks/baselines.py offset "$(ls "$work"/append-0/segments/*.h5)")
  "$work/scan_file" "$(ls "$work"/append-0/segments/*.h5)" "$offset" "$size" 10
  python3 Benchmarks/baselines.py numpy-scan "$work/rows.npy" 5
  python3 Benchmarks/baselines.py queries "$work/rows.npy" "$work/queries.npy" 50
  "$bench" search "$work/f16/append-0" bench "$work/queries.npy" 1
  "$bench" search "$work/f16/append-0" bench "$work/queries.npy" 2
  if python3 -c "import faiss" 2>/dev/null; then
    python3 Benchmarks/baselines.py faiss-flat "$work/rows.npy" "$work/queries.npy"
  else
    echo "faiss not installed (pip install faiss-cpu): skipping the FAISS baseline" >&2
  fi
  "$bench" projection 256 16384 4096
  "$bench" jl 200
  "$bench" srht 4194304 4096 8
  if [ -f "$stream_source" ]; then
    gcc -O3 -march=native -ffast-math -fopenmp "$stream_source" -o "$work/stream_mini"
    "$work/stream_mini" | sed -E 's/.*ReadSum ([0-9.]+) GB\/s.*/{"what": "stream-readsum", "gbps": \1}/'
  fi
} | tee "$work/results.jsonl" >&2

python3 - "$work/results.jsonl" <<'PY'
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
def best(what):
    xs = [r for r in runs if r["what"] == what]
    if not xs: return None
    if "gbps" in xs[0]: return xs[0]["gbps"]
    return max(r["bytes"] / r["seconds"] / 1e9 for r in xs)
figures = {w: best(w) for w in ["append", "append-float16", "h5py-append", "h5py-append-fsync", "scan", "scan-first",
                                 "scan-float16", "c-scan", "numpy-scan", "stream-readsum"]}
print("figure                         GB/s  (append: stored bytes; scan: bytes read)")
for name, value in figures.items():
    if value is not None: print(f"{name:28s} {value:8.2f}")
def ratio(a, b):
    return "n/a" if figures[a] is None or figures[b] is None else f"{figures[a] / figures[b]:.2f}"
print()
print(f"append / h5py (no fsync)        {ratio('append', 'h5py-append')}   target ≥ 0.9")
print(f"append / h5py + fsync           {ratio('append', 'h5py-append-fsync')}")
print(f"scan / stream ReadSum           {ratio('scan', 'stream-readsum')}   target ≥ 0.8")
print(f"float16 scan / stream ReadSum   {ratio('scan-float16', 'stream-readsum')}   (bytes of float16 read per second)")
print(f"scan / C mmap scan of the file  {ratio('scan', 'c-scan')}")
print(f"scan / numpy sum                {ratio('scan', 'numpy-scan')}")
projection = {r["what"]: r for r in runs if r["what"] in ("sgemm", "project-dense", "generate", "kronecker-vs-dense")}
if "sgemm" in projection and "project-dense" in projection:
    s, p = projection["sgemm"]["gflops"], projection["project-dense"]["gflops"]
    print(f"dense projection (generate + GEMM) / sgemm   {p:.1f} / {s:.1f} GFLOP/s = {p / s:.2f}   target ≥ 0.7")
if "generate" in projection:
    print(f"Rademacher generation          {projection['generate']['entries_per_second'] / 1e9:.2f} G entries/s (one thread)")
if "kronecker-vs-dense" in projection:
    r = projection["kronecker-vs-dense"]
    print(f"4096×4096 layer, k=4096: Kronecker {r['kronecker_seconds_per_example'] * 1e3:.2f} ms/example, "
          f"dense {r['dense_seconds_per_example']:.1f} s/example → {r['speedup']:.0f}×   target ≥ 10×")
search = {r["what"]: r for r in runs if r["what"].startswith("search-")}
for threads in ("1t", "2t"):
    ours, theirs = search.get(f"search-gradsketch-{threads}"), search.get(f"search-faiss-flat-{threads}")
    if ours:
        line = f"exact top-10, one query at a time, {threads}: GradSketch float16 {ours['qps']:.1f} q/s ({ours['gbps']:.1f} GB/s of rows)"
        if theirs:
            line += f" vs FAISS IndexFlatIP float32 {theirs['qps']:.1f} q/s → {ours['qps'] / theirs['qps']:.2f}× (target ≥ 1.5)"
        if figures["stream-readsum"]:
            line += f"; {ours['gbps'] / figures['stream-readsum']:.2f} of STREAM (target ≥ 0.8)"
        print(line)
for r in (r for r in runs if r["what"] == "srht-vs-dense"):
    print(f"SRHT vs dense, d={r['d']}, k={r['k']}, {r['rows']} rows: {r['srht_seconds']:.2f} s vs {r['dense_seconds']:.2f} s → {r['speedup']:.1f}×")
for r in (r for r in runs if r["what"] == "jl"):
    print(f"JL on Fashion-MNIST MLP gradients (d={r['d']}), k={r['k']:5d}: |<Px,Py>-<x,y>|/(|x||y|) median {r['pair_error_median']:.4f}, "
          f"p99 {r['pair_error_p99']:.4f}; squared-norm error median {r['norm_error_median']:.4f}, max {r['norm_error_max']:.4f} "
          f"(theory sd √(2/k) = {r['theory_sd']:.4f})")
sums = {r["what"]: r.get("sum") for r in runs if "sum" in r}
print(f"sums (must agree to float32 rounding): {sums}")
PY
