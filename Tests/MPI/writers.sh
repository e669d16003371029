#!/usr/bin/env bash
# The collective commit (Spec/distributed.md §2.1): `gradsketch-mpi append` with 1, 2 and 4
# ranks commits ONE version holding every rank's rows, the same rows a one-process
# `gradsketch append` of the concatenated input commits; a rank given a bad input, or a commit
# the store refuses, commits nothing and leaves no segment behind.
#
# Oracle: the rows and ids numpy generated (each id's row compared exactly, float32 in and
# out), read back with `gradsketch export`, never with the counters gradsketch-mpi prints.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/writers-lib.sh"

k=12
python3 - "$work" "$k" <<'PY'
import sys, numpy as np
work, k = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(16)
for rank in range(4):
    rows = rng.standard_normal((20 + 7 * rank, k)).astype(np.float32)   # unequal parts
    np.save(f"{work}/part-{rank}.npy", rows)
    with open(f"{work}/ids-{rank}.txt", "w") as f:
        f.writelines(f"r{rank}-{i}\n" for i in range(len(rows)))
for ranks in (1, 2, 4):   # the one-process reference input: parts 0..ranks-1 concatenated
    np.save(f"{work}/all-{ranks}.npy", np.concatenate([np.load(f"{work}/part-{r}.npy") for r in range(ranks)]))
    with open(f"{work}/all-ids-{ranks}.txt", "w") as out:
        for r in range(ranks):
            out.write(open(f"{work}/ids-{r}.txt").read())
PY

# Compares a store's exported set with the generated parts 0..ranks-1 (and with a reference
# store's export when given): every id once, every row bit-equal to its source.
compare_export() {  # store ranks [reference-store]
    local store="$1" ranks="$2" reference="${3:-}"
    "$GRADSKETCH" export "$store" --set s --out "$store.npy" --ids-out "$store.ids" >/dev/null
    if [ -n "$reference" ]; then
        "$GRADSKETCH" export "$reference" --set s --out "$reference.npy" --ids-out "$reference.ids" >/dev/null
    fi
    python3 - "$work" "$store" "$ranks" "$reference" <<'PY'
import sys, numpy as np
work, store, ranks, reference = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
expected = {}
for r in range(ranks):
    rows = np.load(f"{work}/part-{r}.npy")
    for i, row in enumerate(rows):
        expected[f"r{r}-{i}"] = row
def read(path):
    ids = open(path + ".ids").read().split("\n")[:-1]
    return ids, np.load(path + ".npy")
ids, rows = read(store)
assert len(ids) == len(set(ids)), f"{store}: an id appears twice"
assert set(ids) == set(expected), f"{store}: ids differ from the input: missing {sorted(set(expected) - set(ids))[:5]}, extra {sorted(set(ids) - set(expected))[:5]}"
assert rows.dtype == np.float32 and rows.shape == (len(expected), rows.shape[1])
for id, row in zip(ids, rows):
    assert np.array_equal(row, expected[id]), f"{store}: row of {id} differs from its input"
if reference:
    ref_ids, ref_rows = read(reference)
    assert sorted(ref_ids) == sorted(ids), "the one-process append holds other ids"
    ref = dict(zip(ref_ids, ref_rows))
    assert all(np.array_equal(ref[i], r) for i, r in zip(ids, rows)), "a row differs from the one-process append's"
print(f"  ok: {len(ids)} rows, every id once, every row bit-equal to its input" + (" and to the one-process append" if reference else ""))
PY
}

# One version on top of version 0, adding `rows` rows (from the store's own log).
check_one_version() {  # store rows
    "$GRADSKETCH" log "$1" --json > "$work/log.json"
    python3 - "$work/log.json" "$2" <<'PY'
import json, sys
log, rows = json.load(open(sys.argv[1])), int(sys.argv[2])
versions = [e["version"] for e in log]
assert versions == [1, 0], f"expected versions [1, 0], found {versions}"
change = log[0]["change"]
assert change["rows_added"] == rows, f"version 1 adds {change['rows_added']} rows, expected {rows}"
print(f"  ok: exactly one new version (1, parent {log[0]['parent']}, {change['operation']}) adding {rows} rows")
PY
}

for ranks in 1 2 4; do
    echo "collective append, $ranks rank(s)"
    store="$work/np$ranks"
    reference="$work/ref$ranks"
    "$GRADSKETCH" init "$store" >/dev/null
    "$GRADSKETCH" init "$reference" >/dev/null
    "$GRADSKETCH" append "$reference" --set s --rows "$work/all-$ranks.npy" --ids "$work/all-ids-$ranks.txt" >/dev/null
    $MPIRUN -np "$ranks" "$GRADSKETCH_MPI" append "$store" --set s --rows "$work/part-{rank}.npy" --ids "$work/ids-{rank}.txt" --json > "$work/out$ranks.json"
    total=$(python3 -c "import numpy as np; print(sum(len(np.load('$work/part-%d.npy' % r)) for r in range($ranks)))")
    python3 - "$work/out$ranks.json" "$ranks" "$total" <<'PY'
import json, sys
out, ranks, total = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
assert out["version"] == 1 and out["ranks"] == ranks and out["total_rows"] == total, out
assert out["rows_per_rank"] == [20 + 7 * r for r in range(ranks)], out["rows_per_rank"]
print(f"  ok: rank 0 printed one JSON: version 1, rows per rank {out['rows_per_rank']}, {out['seconds']:.2f} s")
PY
    check_one_version "$store" "$total"
    compare_export "$store" "$ranks" "$reference"
    "$GRADSKETCH" verify "$store" >/dev/null || fail "verify found problems in $store"
    check "gradsketch verify clean"
done

# Failure injection on the 4-rank store (at version 1): nothing committed, nothing left.
store="$work/np4"
before="$(segment_files "$store")"

echo "failure: rank 2's rows file is not a .npy file"
mkdir "$work/bad"
for rank in 0 1 3; do cp "$work/part-$rank.npy" "$work/bad/part-$rank.npy"; done
echo "not an array" > "$work/bad/part-2.npy"
set +e
$MPIRUN -np 4 "$GRADSKETCH_MPI" append "$store" --set s --rows "$work/bad/part-{rank}.npy" --json > "$work/bad.out" 2> "$work/bad.err"
status=$?
set -e
[ "$status" -ne 0 ] || fail "a bad input on rank 2 exited 0"
check "exit status $status"
grep -q "rank 2 (write and prepare)" "$work/bad.err" || { cat "$work/bad.err" >&2; fail "the message does not name rank 2"; }
! grep -q "rank [013] (write" "$work/bad.err" || fail "a healthy rank is named as failing"
check "the message names rank 2 alone: $(grep -m1 'rank 2' "$work/bad.err")"
python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['error']; assert 'rank 2' in e['message'], e" "$work/bad.out"
check "--json printed one error object naming rank 2"
[ "$(latest_version "$store")" = 1 ] || fail "a version was committed"
check "latest version still 1"
[ "$(segment_files "$store")" = "$before" ] || fail "segments left behind: $(diff <(echo "$before") <(segment_files "$store"))"
check "every rank removed its own prepared segments"

echo "failure: the commit is refused (rank 3 repeats rank 1's ids)"
cp "$work/ids-1.txt" "$work/bad/ids-3.txt"
python3 -c "
import numpy as np
np.save('$work/bad/part-3.npy', np.load('$work/part-3.npy')[:27])   # as many rows as rank 1
"
for rank in 0 1 2; do cp "$work/ids-$rank.txt" "$work/bad/ids-$rank.txt"; cp "$work/part-$rank.npy" "$work/bad/part-$rank.npy"; done
# Fresh ids, so the only clash is between ranks 1 and 3 (not with version 1's rows).
for rank in 0 1 2 3; do sed -i 's/^r/x/' "$work/bad/ids-$rank.txt"; done
set +e
$MPIRUN -np 4 "$GRADSKETCH_MPI" append "$store" --set s --rows "$work/bad/part-{rank}.npy" --ids "$work/bad/ids-{rank}.txt" > "$work/refused.out" 2> "$work/refused.err"
status=$?
set -e
[ "$status" -ne 0 ] || fail "a refused commit exited 0"
grep -q "rank 0 (commit)" "$work/refused.err" || { cat "$work/refused.err" >&2; fail "the message does not say the commit failed"; }
grep -q "x1-0" "$work/refused.err" || { cat "$work/refused.err" >&2; fail "the message does not name the repeated id"; }
check "exit status $status; $(grep -m1 'rank 0 (commit)' "$work/refused.err" | cut -c1-160)"
[ "$(latest_version "$store")" = 1 ] || fail "a version was committed"
check "latest version still 1"
[ "$(segment_files "$store")" = "$before" ] || fail "segments left behind: $(diff <(echo "$before") <(segment_files "$store"))"
check "every rank removed its own prepared segments"

"$GRADSKETCH" vacuum "$store" --grace 0 --json > "$work/vacuum.json"
python3 -c "
import json, sys
report = json.load(open(sys.argv[1]))
assert report['removed_files'] == [], report
print('  ok: vacuum --grace 0 finds no leftover file')
" "$work/vacuum.json"
"$GRADSKETCH" verify "$store" >/dev/null || fail "verify found problems after the failed appends"
compare_export "$store" 4
check "gradsketch verify clean, version 1's rows intact"
