#!/usr/bin/env bash
# Index figures at scale (issue 16 part 4): GradSketch ivf-int8 (and ivf-rq4 when this build has
# `index build --kind`), FAISS IVF-PQ and HNSW, Lance IVF_PQ and IVF_HNSW_SQ on the same rows, one
# size after another. Per system and size: build seconds (2 threads), peak RSS of the build process
# (/usr/bin/time -v), index bytes per row, and single-thread QPS (one query at a time, process
# pinned to one CPU) at the cheapest search setting reaching recall@10 >= 0.95, with the recall
# reached; for GradSketch also `gradsketch import` rows/s and the cost of indexing 1 % new rows
# against the full build. Data: k-wide rows (float16, unit norm: cosine) from Benchmarks/scale.py.
#
# Usage: Benchmarks/scale.sh [--rows 1e5[,1e6,...]] [--k 128] [--queries 500] [--out DIR]
#                            [--systems gs,rq4,faiss-ivfpq,faiss-hnsw,lance-ivfpq,lance-hnsw]
#   Default: --rows 1e5 (a smoke run of a few minutes). Output: DIR/scale-N.jsonl (one JSON record
#   per line) and DIR/scale.md (the table over every size in DIR). Data and truth are cached in
#   DIR/data-N; stores and indexes are deleted after each size unless KEEP=1.
#   SKIP_BUILD=1 uses the release gradsketch and libgradsketch-c.so already built.
#   pip installs faiss-cpu and pylance here when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
sizes="1e5"; k=128; nq=500; out="$root/.build/scale"; systems="gs,rq4,faiss-ivfpq,faiss-hnsw,lance-ivfpq,lance-hnsw"
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) sizes="$2"; shift 2 ;;
    --k) k="$2"; shift 2 ;;
    --queries) nq="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --systems) systems="$2"; shift 2 ;;
    *) echo "scale.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
has() { [[ ",$systems," == *",$1,"* ]]; }
mkdir -p "$out"; out="$(cd "$out" && pwd)"
[ -x /usr/bin/time ] || { echo "scale.sh: /usr/bin/time is missing (Tools/setup.sh installs Debian's time)" >&2; exit 1; }
if ! python3 -c "import faiss, lance" 2>/dev/null; then
  echo "scale.sh: installing faiss-cpu and pylance with pip" >&2
  python3 -m pip install --quiet faiss-cpu pylance >&2
fi

if [ -z "${SKIP_BUILD:-}" ]; then  # SKIP_BUILD=1: use the release binaries already in .build
  swift build -c release --product gradsketch >&2
  swift build -c release --product gradsketch-c >&2
  swift build -c release --product gradsketch-bench >&2
fi
gs="$root/.build/release/gradsketch"
export GRADSKETCH_LIBRARY="$root/.build/release/libgradsketch-c.so" PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}"
py="python3 $root/Benchmarks/scale.py"
# Searches: one CPU, one thread everywhere (FAISS sets its own OpenMP threads to 1 as well).
search() { LANCE_LOG=error OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1 LANCE_CPU_THREADS=1 LANCE_IO_THREADS=1 taskset -c 0 "$@"; }
export BUILD_THREADS=2 OMP_NUM_THREADS=2
rq4=0
if has rq4 && "$gs" index build --help | grep -q -- "--kind"; then rq4=1; fi
start=$SECONDS
phase() { echo "scale.sh: $1 ($((SECONDS - start)) s, load $(cut -d' ' -f1-3 /proc/loadavg))" >&2; }

for n_text in ${sizes//,/ }; do
  n=$(python3 -c "print(int(float('$n_text')))")
  export SCALE_N=$n
  data="$out/data-$n"; work="$out/work-$n"; results="$out/scale-$n.jsonl"
  mkdir -p "$data"; rm -rf "$work"; mkdir -p "$work"; : > "$results"
  extra=$(( n / 100 ))
  {
    echo "{\"what\": \"run\", \"n\": $n, \"k\": $k, \"nq\": $nq, \"systems\": \"$systems\", \"load_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"commit\": \"$(git rev-parse --short HEAD)\", \"date\": \"$(date -u +%FT%TZ)\"}"
    phase "N=$n: data (k=$k float16, $nq queries, $extra update rows)"
    $py data "$data" "$n" "$k" "$nq" "$extra"

    if has gs || [ $rq4 = 1 ]; then
      phase "N=$n: gradsketch import"
      "$gs" init "$work/store" >/dev/null
      t0=$(date +%s.%N)
      "$gs" import "$work/store" npy "$data/base.npy" --set base >/dev/null
      echo "{\"what\": \"import\", \"n\": $n, \"rows\": $n, \"seconds\": $(python3 -c "print($(date +%s.%N) - $t0)")}"
    fi
    if has gs; then
      phase "N=$n: gradsketch ivf-int8 build"
      $py timed "GradSketch ivf-int8" $((2 * k)) -- "$gs" index build "$work/store" --set base --name int8 --json
      phase "N=$n: gradsketch ivf-int8 search"
      search $py gs-search "$data" "$work/store" int8 "GradSketch ivf-int8"
      search $py gs-bench "$data" "$root/.build/release/gradsketch-bench" "$work/store" int8 "GradSketch ivf-int8 (Swift)"
    fi
    if [ $rq4 = 1 ]; then
      phase "N=$n: gradsketch ivf-rq4 build"
      $py timed "GradSketch ivf-rq4" $((2 * k)) -- "$gs" index build "$work/store" --set base --kind ivf-rq4 --name rq4 --json
      phase "N=$n: gradsketch ivf-rq4 search"
      search $py gs-search "$data" "$work/store" rq4 "GradSketch ivf-rq4"
      search $py gs-bench "$data" "$root/.build/release/gradsketch-bench" "$work/store" rq4 "GradSketch ivf-rq4 (Swift)"
    fi
    for kind in ivfpq hnsw; do
      has "faiss-$kind" || continue
      phase "N=$n: faiss $kind build"
      name="faiss IVF-PQ"; [ $kind = hnsw ] && name="faiss HNSW"
      $py timed "$name" 0 -- $py faiss-build "$data" "$kind" "$work/faiss-$kind.index"
      phase "N=$n: faiss $kind search"
      [ -f "$work/faiss-$kind.index" ] && search $py faiss-search "$data" "$kind" "$work/faiss-$kind.index"
      rm -f "$work/faiss-$kind.index"
    done
    if has lance-ivfpq || has lance-hnsw; then
      phase "N=$n: lance dataset"
      $py lance-write "$data" "$work/lance"
      for kind in ivf_pq ivf_hnsw_sq; do
        if [ $kind = ivf_pq ]; then has lance-ivfpq || continue; else has lance-hnsw || continue; fi
        phase "N=$n: lance $kind build"
        # IVF_PQ re-ranks (refine factor) from the dataset's float16 vectors; IVF_HNSW_SQ does not.
        if [ $kind = ivf_pq ]; then name="lance IVF_PQ"; read_bytes=$((2 * k)); else name="lance IVF_HNSW_SQ"; read_bytes=0; fi
        $py timed "$name" $read_bytes -- $py lance-build "$data" "$work/lance" "$kind"
        phase "N=$n: lance $kind search"
        search $py lance-search "$data" "$work/lance" "$kind"
      done
      rm -rf "$work/lance"
    fi
    if has gs || [ $rq4 = 1 ]; then
      phase "N=$n: 1 % update ($extra rows)"
      t0=$(date +%s.%N)
      "$gs" import "$work/store" npy "$data/extra.npy" --set base --ids "$data/extra-ids.txt" >/dev/null
      append_s=$(python3 -c "print($(date +%s.%N) - $t0)")
      if [ $rq4 = 1 ]; then
        $py timed "update ivf-rq4" 0 -- "$gs" index update "$work/store" --set base --name rq4 --json | \
          python3 -c "
import json, sys
u = json.loads(sys.stdin.read()); full = [json.loads(l) for l in open('$results') if '\"GradSketch ivf-rq4\"' in l and '\"build\"' in l][0]
print(json.dumps(dict(what='update', n=$n, system='GradSketch ivf-rq4', how='update', rows=$extra, append_s=$append_s,
                      index_s=u['build_s'], peak_rss=u.get('peak_rss'), full_build_s=full['build_s'])))"
      fi
      if has gs; then
        $py timed "rebuild ivf-int8" 0 -- "$gs" index build "$work/store" --set base --name int8 --json | \
          python3 -c "
import json, sys
u = json.loads(sys.stdin.read()); full = [json.loads(l) for l in open('$results') if '\"GradSketch ivf-int8\"' in l and '\"build\"' in l][0]
print(json.dumps(dict(what='update', n=$n, system='GradSketch ivf-int8', how='rebuild', rows=$extra, append_s=$append_s,
                      index_s=u['build_s'], peak_rss=u.get('peak_rss'), full_build_s=full['build_s'])))"
      fi
    fi
    echo "{\"what\": \"run-end\", \"n\": $n, \"load_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"seconds\": $((SECONDS - start))}"
  } | tee "$results"
  python3 - "$results" <<'PY'
import json, sys  # the end-of-run load average goes onto the run record, for the table
rs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
end = next((r for r in rs if r["what"] == "run-end"), {})
for r in rs:
    if r["what"] == "run":
        r["load_end"] = end.get("load_end")
open(sys.argv[1], "w").write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rs))
PY
  [ -n "${KEEP:-}" ] || rm -rf "$work"
  phase "N=$n: done"
done
$py table "$out"/scale-*.jsonl > "$out/scale.md"
cat "$out/scale.md"
