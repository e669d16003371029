#!/usr/bin/env bash
# Fan-out query and distributed selection on loopback: mpirun -np 1, 2, 4 over a store split
# into 3 shards print byte-identical JSON, equal (ids and scores) to one process over the
# unsharded source; the exec hook (`gradsketch query` on a sharded store) gives the same.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/fanout-lib.sh"

make_source "$work/source"
make_sharded "$work/sharded" 3
check "source of 300 rows in 6 segments split into 3 shards"

for np in 1 2 4; do
    $MPIRUN -np $np "$GRADSKETCH_MPI" query "$work/sharded" --set g --vector "$work/q.npy" -k 10 --json > "$work/query.$np.json"
    $MPIRUN -np $np "$GRADSKETCH_MPI" query "$work/sharded" --set g --vector "$work/qs.npy" -k 7 --metric cosine --json > "$work/cosine.$np.json"
    $MPIRUN -np $np "$GRADSKETCH_MPI" select "$work/sharded" --set g --vector "$work/q.npy" -k 8 --json > "$work/greedy.$np.json"
    $MPIRUN -np $np "$GRADSKETCH_MPI" select "$work/sharded" --set g --method density -k 8 --hashes 20 --buckets 100 --seed 3 --json > "$work/density.$np.json"
done
for kind in query cosine greedy density; do
    cmp "$work/$kind.1.json" "$work/$kind.2.json" || fail "$kind: 1 and 2 ranks differ"
    cmp "$work/$kind.1.json" "$work/$kind.4.json" || fail "$kind: 1 and 4 ranks differ"
done
check "query, cosine queries, greedy and density: byte-identical JSON with 1, 2 and 4 ranks"

"$GRADSKETCH" query "$work/source" --set g --vector "$work/q.npy" -k 10 --json > "$work/one.json"
diff <(ids_scores "$work/one.json") <(ids_scores "$work/query.1.json") || fail "fan-out differs from gradsketch query on the source"
check "fan-out equals gradsketch query on the unsharded source (ids and scores)"

"$GRADSKETCH" select "$work/source" --set g --vector "$work/q.npy" -k 8 --json > "$work/one-greedy.json"
diff <(ids_scores "$work/one-greedy.json") <(ids_scores "$work/greedy.4.json") || fail "distributed greedy differs from gradsketch select on the source"
check "distributed greedy equals gradsketch select on the source (ids and scores)"

$MPIRUN -np 2 "$GRADSKETCH_MPI" query "$work/source" --set g --vector "$work/q.npy" -k 10 --json > "$work/plain.json"
diff <(ids_scores "$work/one.json") <(ids_scores "$work/plain.json") || fail "2 ranks on the plain store differ from gradsketch query"
check "a plain store is one shard split between ranks"

# The exec hook: no launcher, a sharded store → gradsketch-mpi as a singleton.
"$GRADSKETCH" query "$work/sharded" --set g --vector "$work/q.npy" -k 10 --json > "$work/hook.json"
cmp "$work/hook.json" "$work/query.1.json" || fail "gradsketch query on a sharded store differs from gradsketch-mpi"
$MPIRUN -np 2 "$GRADSKETCH" query "$work/sharded" --set g --vector "$work/q.npy" -k 10 --json > "$work/hook2.json"
cmp "$work/hook2.json" "$work/query.1.json" || fail "mpirun gradsketch query differs from gradsketch-mpi"
check "gradsketch query on a sharded store, with and without mpirun, execs gradsketch-mpi"

# Refusals: query sources a distributed search does not support (index options: fanout-index.sh).
if "$GRADSKETCH_MPI" query "$work/sharded" --set g --id r3 2> "$work/refused.txt"; then fail "--id was accepted"; fi
grep -q "not supported" "$work/refused.txt" || fail "the --id refusal does not say why: $(cat "$work/refused.txt")"
check "--id refused with a reason"
echo "fanout: ok"
