#!/usr/bin/env bash
# Independent writers (Spec/distributed.md §2.2): 64 `gradsketch append` processes, started
# together on one store, each commit their own version through the store's link(2) protocol.
# Checks: 64 new versions, one per writer, each adding its 10 rows; every row present exactly
# once and bit-equal to its input (read back with `gradsketch export`); `gradsketch verify`
# clean. Without --quick it also runs the same through MPI: 64 ranks of
# `gradsketch-mpi append --independent`.
#
# GRADSKETCH_COUNT_RETRIES=1 (needs strace) also counts the lost commit races: every commit
# attempt ends in one link(2) to versions/, and a lost race is that link failing with EEXIST.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/writers-lib.sh"

writers=64
rows=10
k=8
python3 - "$work" "$writers" "$rows" "$k" <<'PY'
import sys, numpy as np
work, writers, rows, k = sys.argv[1], *map(int, sys.argv[2:])
rng = np.random.default_rng(64)
for w in range(writers):
    np.save(f"{work}/part-{w}.npy", rng.standard_normal((rows, k)).astype(np.float32))
    with open(f"{work}/ids-{w}.txt", "w") as f:
        f.writelines(f"w{w}-{i}\n" for i in range(rows))
PY

# The store after the writers: versions 0..64, each of 1..64 an append of `rows` rows, every
# writer's rows present once.
check_store() {  # store
    local store="$1"
    "$GRADSKETCH" log "$store" --json > "$work/log.json"
    python3 - "$work/log.json" "$writers" "$rows" <<'PY'
import json, sys
log, writers, rows = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
versions = sorted(e["version"] for e in log)
assert versions == list(range(writers + 1)), f"expected versions 0..{writers}, found {versions}"
for entry in log:
    if entry["version"] == 0: continue
    assert entry["parent"] == entry["version"] - 1, entry
    assert entry["change"]["rows_added"] == rows, entry
print(f"  ok: {writers} new versions, each on its predecessor, each adding {rows} rows")
PY
    "$GRADSKETCH" export "$store" --set s --out "$work/export.npy" --ids-out "$work/export.ids" >/dev/null
    python3 - "$work" "$writers" <<'PY'
import sys, numpy as np
work, writers = sys.argv[1], int(sys.argv[2])
ids = open(f"{work}/export.ids").read().split("\n")[:-1]
rows = np.load(f"{work}/export.npy")
expected = {}
for w in range(writers):
    for i, row in enumerate(np.load(f"{work}/part-{w}.npy")):
        expected[f"w{w}-{i}"] = row
assert len(ids) == len(set(ids)), "an id appears twice"
assert set(ids) == set(expected), f"missing {sorted(set(expected) - set(ids))[:5]}, extra {sorted(set(ids) - set(expected))[:5]}"
assert all(np.array_equal(row, expected[i]) for i, row in zip(ids, rows)), "a row differs from its input"
print(f"  ok: {len(ids)} rows exported, every id once, every row bit-equal to its input")
PY
    "$GRADSKETCH" verify "$store" >/dev/null || fail "verify found problems in $store"
    check "gradsketch verify clean"
}

echo "$writers gradsketch append processes started together"
store="$work/processes"
"$GRADSKETCH" init "$store" >/dev/null
# Every writer waits for the start file, so the 64 commits race instead of trickling in.
trace=""
if [ "${GRADSKETCH_COUNT_RETRIES:-0}" = 1 ]; then
    command -v strace >/dev/null || fail "GRADSKETCH_COUNT_RETRIES=1 needs strace"
    trace="strace -f -qq -e trace=link -o"   # followed by the writer's own output file
fi
pids=()
for ((w = 0; w < writers; w++)); do
    (
        while [ ! -e "$work/go" ]; do sleep 0.01; done
        exec $trace ${trace:+"$work/links-$w"} "$GRADSKETCH" append "$store" --set s --rows "$work/part-$w.npy" --ids "$work/ids-$w.txt" --json > "$work/writer-$w.json" 2> "$work/writer-$w.err"
    ) &
    pids+=($!)
done
sleep 0.5
started=$(date +%s.%N)
touch "$work/go"
failures=0
for ((w = 0; w < writers; w++)); do
    wait "${pids[$w]}" || { failures=$((failures + 1)); echo "writer $w failed: $(cat "$work/writer-$w.err")" >&2; }
done
elapsed=$(python3 -c "import time; print(f'{time.time() - $started:.2f}')")
[ "$failures" = 0 ] || fail "$failures of $writers writers failed"
check "all $writers writers exited 0 in $elapsed s (wall, from the start signal)"
if [ -n "$trace" ]; then
    attempts=$(cat "$work"/links* | grep -c 'versions/v' || true)
    lost=$(cat "$work"/links* | grep 'versions/v' | grep -c EEXIST || true)
    check "$attempts commit attempts (link calls), $lost lost races ($(python3 -c "print(f'{$lost / $writers:.1f}')") per writer)"
fi
check_store "$store"

if [ "$QUICK" = 1 ]; then
    echo "(--quick: the 64-rank MPI run of --independent is skipped)"
    exit 0
fi

echo "$writers MPI ranks of gradsketch-mpi append --independent"
store="$work/ranks"
"$GRADSKETCH" init "$store" >/dev/null
rm -f "$work/go"
$MPIRUN -np "$writers" "$GRADSKETCH_MPI" append "$store" --set s --independent --rows "$work/part-{rank}.npy" --ids "$work/ids-{rank}.txt" --json > "$work/mpi.json"
python3 - "$work/mpi.json" "$writers" <<'PY'
import json, sys
out, writers = json.load(open(sys.argv[1])), int(sys.argv[2])
assert sorted(out["versions"]) == list(range(1, writers + 1)), out["versions"]
print(f"  ok: rank 0 reports {writers} distinct versions, {out['total_rows']} rows, {out['seconds']:.2f} s")
PY
check_store "$store"
