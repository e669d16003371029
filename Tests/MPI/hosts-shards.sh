#!/usr/bin/env bash
# A sharded store across namespace hosts (Tests/MPI/hosts.sh): the map lives in a directory
# every host reads, shard i on host gs-hosti's own directory. The map is made on the launcher
# (which names the remote shards without making them); `gradsketch shard create-local`, started
# by mpirun once per host, makes each host's shard with the store-id the map gives it; then
# on each host `shard list` opens its own shard and reports the others as on another host, and
# no host sees another host's shard directory.
#
#   Tests/MPI/hosts-shards.sh        (run.sh runs it; about 10 s; GRADSKETCH = the binary)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/hosts.sh"
gradsketch="${GRADSKETCH:-$(cd "$here/../.." && swift build --show-bin-path)/gradsketch}"
[ -x "$gradsketch" ] || { echo "hosts-shards.sh: no gradsketch binary at $gradsketch" >&2; exit 1; }
count=3
[ "${GRADSKETCH_TEST_QUICK:-0}" = 1 ] && count=2

trap hosts_down EXIT
hosts_up "$count"
map="$HOSTS_WORK/map"
arguments=()
for ((i = 1; i <= count; i++)); do arguments+=(--shard "s$i=$HOSTS_WORK/host$i/shard@gs-host$i"); done
"$gradsketch" shard create "$map" "${arguments[@]}" --host launcher > /dev/null

failures=0
fail() { echo "hosts-shards.sh: FAIL: $*" >&2; failures=$((failures + 1)); }

# One process per host (--map-by node), not an MPI program: mpirun is only the launcher here.
hosts_mpirun -np "$count" --map-by node "$gradsketch" shard create-local "$map" --json > "$HOSTS_WORK/created.json"
for ((i = 1; i <= count; i++)); do
    [ -f "$HOSTS_WORK/host$i/shard/gradsketch.h5" ] || fail "host $i's shard store was not made in its own directory"
done

# Each host lists the map: its shard ok, every other on another host.
hosts_mpirun -np "$count" --map-by node --output-filename "$HOSTS_WORK/list" "$gradsketch" shard list "$map" --json > /dev/null
python3 - "$HOSTS_WORK" "$count" <<'PY' || fail "shard list per host"
import glob, json, sys
work, count = sys.argv[1], int(sys.argv[2])
ids = [s["store_id"] for s in json.load(open(f"{work}/map/gradsketch-shards.json"))["shards"]]
seen = set()
for path in glob.glob(f"{work}/list/1/rank.*/stdout"):
    out = json.load(open(path))
    host = out["host"]
    seen.add(host)
    for shard in out["shards"]:
        mine = shard.get("host") == host
        assert shard["local"] == mine, (host, shard)
        if mine:
            assert shard.get("status") == "ok", (host, shard)
            assert shard["store_id"] == ids[shard["index"]]
        else:
            assert shard.get("status") is None, (host, shard)
assert seen == {f"gs-host{i}" for i in range(1, count + 1)}, seen
PY
# From host 1, host 2's shard directory is hidden: opening it as host 2 fails there.
if hosts_mpirun -np 1 --host "10.77.0.1" env GRADSKETCH_HOST=gs-host2 "$gradsketch" shard list "$map" --host gs-host2 --json > "$HOSTS_WORK/cross.json" 2>/dev/null; then
    python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['shards'][1]; assert 'missing' in s['status'], s" "$HOSTS_WORK/cross.json" \
        || fail "host 1 could open host 2's shard"
else
    fail "shard list on host 1 as host 2 failed instead of reporting the shard missing"
fi
if [ "$failures" -gt 0 ]; then exit 1; fi
echo "hosts-shards.sh: ok ($count hosts, one shard each, each made and opened on its own host)"
