#!/usr/bin/env bash
# Fan-out query through per-shard indexes (Spec/distributed.md §3.3.1) on loopback: a store split
# into 3 shards, an ivf-int8 index built through the exec hook and an ivf-rq4 index built by
# `gradsketch-mpi index-build --kind ivf-rq4`, rows appended to one shard after the builds.
# For each index: mpirun -np 1, 2, 4 print byte-identical JSON, equal (ids and scores, every
# query) to the per-shard answers of `gradsketch query SHARD --index NAME --nprobe P` merged here
# by score, then shard index, then the shard's own order (the oracle: this script, not the code
# under test); probing every list with a large re-rank gives the exact fan-out's rows (recall 1.0
# exactly); a shard without the named index is an error naming it; without --index a shard with
# no index for the metric is scanned exactly and the JSON says so.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/fanout-lib.sh"

make_source "$work/source"
make_sharded "$work/sharded" 3
shards=("$work/sharded/shard-0" "$work/sharded/shard-1" "$work/sharded/shard-2")
check "source of 300 rows in 6 segments split into 3 shards"

# ivf-int8 through the hook (gradsketch index build on a sharded store execs gradsketch-mpi).
"$GRADSKETCH" index build "$work/sharded" --set g --name ip --lists 4 --iterations 5 --json > "$work/build-ip.json" 2>/dev/null
$MPIRUN -np 2 "$GRADSKETCH_MPI" index-build "$work/sharded" --set g --name rq --kind ivf-rq4 --lists 4 --groups 2 \
    --iterations 5 --json > "$work/build-rq.json"
python3 - "$work/build-ip.json" "$work/build-rq.json" <<'PY' || fail "index builds did not report their kind in every shard"
import json, sys
for path, kind in zip(sys.argv[1:], ["ivf-int8", "ivf-rq4"]):
    d = json.load(open(path))
    assert d["kind"] == kind, d["kind"]
    assert [s["kind"] for s in d["shards"]] == [kind] * 3, d["shards"]
    assert [s["shard_index"] for s in d["shards"]] == [0, 1, 2]
PY
for s in "${shards[@]}"; do
    "$GRADSKETCH" index info "$s" --set g --json | grep -q '"ivf-rq4"' || fail "$s has no ivf-rq4 index"
done
check "ivf-int8 built through the hook, ivf-rq4 by index-build --kind ivf-rq4 on 2 ranks, in every shard"

# Rows appended to shard 0 after the builds: not covered by its indexes, searched exactly.
python3 - "$work" <<'PY'
import sys, numpy as np
work = sys.argv[1]
rng = np.random.default_rng(61)
np.save(f"{work}/late.npy", rng.standard_normal((20, 16)).astype(np.float32))
open(f"{work}/late-ids.txt", "w").write("".join(f"late{i}\n" for i in range(20)))
PY
"$GRADSKETCH" append "${shards[0]}" --set g --rows "$work/late.npy" --ids "$work/late-ids.txt" >/dev/null

# merge_oracle OUT FILE_SHARD0 FILE_SHARD1 FILE_SHARD2: per-shard `gradsketch query` answers
# merged by score descending, then shard index, then rank within the shard; top 10 per query.
merge_oracle() {
    python3 - "$@" <<'PY'
import json, sys
out, files = sys.argv[1], sys.argv[2:]
answers = [json.load(open(f))["results"] for f in files]
merged = []
for q in range(len(answers[0])):
    hits = [(-h["score"], shard, place, h["id"], h["score"]) for shard, a in enumerate(answers) for place, h in enumerate(a[q])]
    merged.append([[h[3], h[4]] for h in sorted(hits)[:10]])
json.dump(merged, open(out, "w"))
PY
}
# fanout_hits FILE: the fan-out's results as [[id, score]] per query.
fanout_hits() {
    python3 -c 'import json, sys; print(json.dumps([[[h["id"], h["score"]] for h in r] for r in json.load(open(sys.argv[1]))["results"]]))' "$1"
}

ranks=(1 2 4)
for case in "ip ivf-int8 1" "rq ivf-rq4 2"; do
    read -r name kind nprobe <<< "$case"
    for np in "${ranks[@]}"; do
        $MPIRUN -np "$np" "$GRADSKETCH_MPI" query "$work/sharded" --set g --vector "$work/qs.npy" -k 10 \
            --index "$name" --nprobe "$nprobe" --json > "$work/$name.$np.json"
    done
    cmp "$work/$name.1.json" "$work/$name.2.json" || fail "$name: 1 and 2 ranks differ"
    cmp "$work/$name.1.json" "$work/$name.4.json" || fail "$name: 1 and 4 ranks differ"
    for i in 0 1 2; do
        "$GRADSKETCH" query "${shards[$i]}" --set g --vector "$work/qs.npy" -k 10 --index "$name" --nprobe "$nprobe" --json > "$work/$name.shard$i.json"
    done
    merge_oracle "$work/$name.oracle.json" "$work/$name.shard0.json" "$work/$name.shard1.json" "$work/$name.shard2.json"
    diff <(python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$work/$name.oracle.json") \
        <(fanout_hits "$work/$name.2.json") || fail "$name: fan-out differs from the merged per-shard answers"
    python3 - "$work/$name.1.json" "$name" "$kind" "$nprobe" <<'PY' || fail "$name: the output does not say how each shard was searched"
import json, sys
d = json.load(open(sys.argv[1]))
name, kind, nprobe = sys.argv[2], sys.argv[3], int(sys.argv[4])
assert d["exact"] is False
assert [s["shard_index"] for s in d["search"]] == [0, 1, 2]
for s in d["search"]:
    assert (s["index"], s["kind"], s["nprobe"], s["lists"], s["exact"]) == (name, kind, nprobe, 4, False), s
assert d["search"][0]["exact_rows"] == 20 and d["search"][1]["exact_rows"] == 0, d["search"]
PY
    check "$name ($kind, nprobe $nprobe): byte-identical for 1, 2, 4 ranks; = merged gradsketch query per shard; JSON names index, kind, nprobe per shard"
done

# Recall against the exact fan-out: every list probed, every candidate re-ranked → the same rows.
$MPIRUN -np 2 "$GRADSKETCH_MPI" query "$work/sharded" --set g --vector "$work/qs.npy" -k 10 --json > "$work/exact.json"
grep -q '"exact" : true' "$work/exact.json" || fail "the exact fan-out does not say exact: true"
grep -q '"search"' "$work/exact.json" && fail "the exact fan-out reports per-shard index searches"
for name in ip rq; do
    $MPIRUN -np 2 "$GRADSKETCH_MPI" query "$work/sharded" --set g --vector "$work/qs.npy" -k 10 --index "$name" --nprobe 4 \
        --rerank 1000 --json > "$work/$name.all.json"
    python3 - "$work/exact.json" "$work/$name.all.json" "$work/$name.1.json" <<'PY' || fail "$name: recall against the exact fan-out"
import json, sys
exact, full, rough = ([[h["id"] for h in r] for r in json.load(open(p))["results"]] for p in sys.argv[1:])
recall = lambda found: sum(len(set(a) & set(b)) for a, b in zip(found, exact)) / sum(len(b) for b in exact)
assert full == exact, (full, exact)
assert recall(full) == 1.0
print(f"  recall@10 vs exact fan-out: {recall(full):.3f} at nprobe 4/4, {recall(rough):.3f} at the nprobe above")
PY
done
check "nprobe = all lists with --rerank 1000: recall 1.0 (the exact fan-out's rows, in order) for ivf-int8 and ivf-rq4"

# The exec hook passes the index options through.
"$GRADSKETCH" query "$work/sharded" --set g --vector "$work/qs.npy" -k 10 --index rq --nprobe 2 --json > "$work/hook.json"
cmp "$work/hook.json" "$work/rq.1.json" || fail "gradsketch query --index on a sharded store differs from gradsketch-mpi"
check "gradsketch query --index rq --nprobe 2 on the sharded store (exec hook) = gradsketch-mpi"

# A shard without the named index: an error naming the shard. Without --index: exact there.
"$GRADSKETCH" index build "${shards[0]}" --set g --name only0 --metric cosine --lists 4 --iterations 5 >/dev/null 2>&1
if $MPIRUN -np 2 "$GRADSKETCH_MPI" query "$work/sharded" --set g --vector "$work/q.npy" --index only0 --metric cosine \
    > /dev/null 2> "$work/missing.txt"; then
    fail "--index only0 was accepted though shards 1 and 2 lack it"
fi
grep -Eq 'shard s[12]: set g has no index "only0"' "$work/missing.txt" \
    || fail "the missing-index error does not name the shard: $(cat "$work/missing.txt")"
$MPIRUN -np 2 "$GRADSKETCH_MPI" query "$work/sharded" --set g --vector "$work/q.npy" --metric cosine --nprobe 2 --json > "$work/mixed.json"
python3 - "$work/mixed.json" <<'PY' || fail "without --index, shards lacking an index for the metric are not reported as scanned exactly"
import json, sys
d = json.load(open(sys.argv[1]))
s = d["search"]
assert d["exact"] is False
assert s[0]["index"] == "only0" and not s[0]["exact"] and s[0]["nprobe"] == 2, s[0]
assert all(x["exact"] and "index" not in x and "no index for metric cosine" in x["note"] for x in s[1:]), s[1:]
PY
check "--index NAME missing in a shard: error naming it; --nprobe without --index: shards without a cosine index scanned exactly, said per shard"

echo "fanout-index: ok"
