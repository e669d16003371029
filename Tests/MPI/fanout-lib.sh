# Shared by Tests/MPI/fanout*.sh: binaries, mpirun, a small store and its sharded copy.
# mpi-test: helper
# (sourced, not run; run.sh skips it)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [ -z "${GRADSKETCH:-}" ] || [ -z "${GRADSKETCH_MPI:-}" ]; then
    bin="$(cd "$root" && swift build -c release --show-bin-path)"
    GRADSKETCH="${GRADSKETCH:-$bin/gradsketch}"
    GRADSKETCH_MPI="${GRADSKETCH_MPI:-$bin/gradsketch-mpi}"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN="${MPIRUN:-mpirun --oversubscribe --mca mpi_yield_when_idle 1 --mca btl_vader_single_copy_mechanism none}"

work="$(mktemp -d "${TMPDIR:-/tmp}/gradsketch-fanout-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { echo "  ok: $*"; }

# make_source DIR: a store of 6 segments × 50 float32 rows (k = 16, seeded normal values, so
# no two scores tie), ids r<i>, labels l<i mod 3>; plus $work/q.npy and $work/qs.npy.
make_source() {
    local store="$1"
    "$GRADSKETCH" init "$store" >/dev/null
    python3 - "$work" <<'PY'
import sys, numpy as np
work = sys.argv[1]
rng = np.random.default_rng(16)
for s in range(6):
    rows = rng.standard_normal((50, 16)).astype(np.float32)
    np.save(f"{work}/seg{s}.npy", rows)
    with open(f"{work}/ids{s}.txt", "w") as f:
        f.write("".join(f"r{s * 50 + i}\n" for i in range(50)))
    with open(f"{work}/labels{s}.txt", "w") as f:
        f.write("".join(f"l{(s * 50 + i) % 3}\n" for i in range(50)))
np.save(f"{work}/q.npy", rng.standard_normal(16).astype(np.float32))
np.save(f"{work}/qs.npy", rng.standard_normal((3, 16)).astype(np.float32))
PY
    for s in 0 1 2 3 4 5; do
        "$GRADSKETCH" append "$store" --set g --rows "$work/seg$s.npy" --ids "$work/ids$s.txt" --labels "$work/labels$s.txt" >/dev/null
    done
}

# make_sharded MAP_DIR N [SHARD_DIR_0 HOST_0 SHARD_DIR_1 HOST_1 …]: the source's 6 segments
# dealt round robin into N shard stores (segment s to shard s mod N), and the shard map
# (Spec/format.md §11a) at MAP_DIR. Without the pairs, shard i is MAP_DIR/shard-i with no host;
# a pair gives shard i's directory (absolute) and host ("-" for none).
make_sharded() {
    local map="$1" count="$2"; shift 2
    mkdir -p "$map"
    local entries=() i directory host id
    for ((i = 0; i < count; i++)); do
        if [ $# -ge 2 ]; then directory="$1"; host="$2"; shift 2; else directory="$map/shard-$i"; host="-"; fi
        id="$("$GRADSKETCH" init "$directory" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["store_id"])')"
        entries+=("$i|$directory|$host|$id")
    done
    for s in 0 1 2 3 4 5; do
        i=$((s % count))
        directory="$(echo "${entries[$i]}" | cut -d'|' -f2)"
        "$GRADSKETCH" append "$directory" --set g --rows "$work/seg$s.npy" --ids "$work/ids$s.txt" --labels "$work/labels$s.txt" >/dev/null
    done
    python3 - "$map" "${entries[@]}" <<'PY'
import json, sys
shards = []
for entry in sys.argv[2:]:
    index, path, host, store_id = entry.split("|")
    shards.append({"name": f"s{index}", "host": None if host == "-" else host, "path": path, "store_id": store_id})
json.dump({"format": "gradsketch-shards", "version": 1, "shards": shards}, open(sys.argv[1] + "/gradsketch-shards.json", "w"), indent=2)
PY
}

# ids_scores FILE: "id score" per line of a query/select JSON (first result list or rows).
ids_scores() {
    python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
hits = d["results"][0] if "results" in d else d["rows"]
for h in hits:
    print(h["id"], repr(float(h["score"])))
PY
}
