#!/usr/bin/env bash
# Fan-out over separate hosts: 3 network-namespace hosts (Tests/MPI/hosts.sh), each shard in
# one host's own directory (hidden from the others), 2 ranks per host over TCP. The merged
# results equal those of the same shards read on loopback.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/fanout-lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/hosts.sh"
trap 'hosts_down; rm -rf "$work"' EXIT

hosts_up 3
make_source "$work/source"
# Shard i on host i+1, in that host's directory; the map itself where every host reads it.
make_sharded "$work/placed" 3 "$HOSTS_WORK/host1/s0" gs-host1 "$HOSTS_WORK/host2/s1" gs-host2 "$HOSTS_WORK/host3/s2" gs-host3
# The same shard stores with no host, read on loopback (the root namespace sees every directory).
mkdir -p "$work/shared"
python3 - "$work/placed/gradsketch-shards.json" "$work/shared/gradsketch-shards.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for s in m["shards"]: s["host"] = None
json.dump(m, open(sys.argv[2], "w"))
PY
check "3 shards, each in one host's directory"

results() { python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["results"]))' "$1"; }
hosts_mpirun -np 6 "$GRADSKETCH_MPI" query "$work/placed" --set g --vector "$work/q.npy" -k 10 --json > "$work/hosts.json"
$MPIRUN -np 2 "$GRADSKETCH_MPI" query "$work/shared" --set g --vector "$work/q.npy" -k 10 --json > "$work/loopback.json"
[ "$(results "$work/hosts.json")" = "$(results "$work/loopback.json")" ] || fail "hosts and loopback answers differ"
check "query: 6 ranks on 3 hosts = 2 ranks on loopback"

hosts_mpirun -np 6 "$GRADSKETCH_MPI" select "$work/placed" --set g --vector "$work/q.npy" -k 6 --json > "$work/hosts-greedy.json"
$MPIRUN -np 1 "$GRADSKETCH_MPI" select "$work/shared" --set g --vector "$work/q.npy" -k 6 --json > "$work/loopback-greedy.json"
rows() { python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["rows"]))' "$1"; }
[ "$(rows "$work/hosts-greedy.json")" = "$(rows "$work/loopback-greedy.json")" ] || fail "greedy on hosts and loopback differ"
check "greedy select: 6 ranks on 3 hosts = 1 rank on loopback"

# A host without ranks: the shard on host 3 has nobody to serve it (2 ranks fill host 1).
if hosts_mpirun -np 2 "$GRADSKETCH_MPI" query "$work/placed" --set g --vector "$work/q.npy" -k 3 > /dev/null 2> "$work/orphan.txt"; then
    fail "a shard no rank serves was accepted"
fi
grep -q "gs-host" "$work/orphan.txt" || fail "the error does not name the shard's host: $(cat "$work/orphan.txt")"
check "a shard whose host has no rank: an error naming its host"
echo "fanout-hosts: ok"
