#!/usr/bin/env bash
# mpi-test: helper
# OpenMPI's launcher agent for the namespace hosts of Tests/MPI/hosts.sh (--mca plm_rsh_agent):
# OpenMPI calls it as it would call ssh, `hosts-agent.sh [-options] HOST COMMAND…`, and it runs
# COMMAND (a shell command line, as ssh would) on HOST: inside that host's network namespace,
# in new UTS and mount namespaces where the hostname is the host's name, GRADSKETCH_HOST is
# set to it, the other hosts' directories are covered by empty read-only tmpfs mounts and the
# host's own directory is also bound at WORK/local.
set -euo pipefail
while [ $# -gt 0 ] && [[ "$1" == -* ]]; do shift; done
host="${1:?hosts-agent.sh: expected HOST COMMAND…}"
shift
map="${GRADSKETCH_HOSTS_MAP:?hosts-agent.sh: GRADSKETCH_HOSTS_MAP is not set (source hosts.sh and call hosts_up)}"
namespace="" own=""
while read -r address name directory; do
    if [ "$host" = "$address" ] || [ "$host" = "$name" ]; then namespace="$name"; own="$directory"; fi
done < "$map"
[ -n "$namespace" ] || { echo "hosts-agent.sh: host $host is not in $map" >&2; exit 255; }
work="$(dirname "$own")"
others=()
while read -r _ name directory; do
    [ "$name" = "$namespace" ] || others+=("$directory")
done < "$map"

# The inner script runs as root in the new namespaces; its arguments: host name, own
# directory, work directory, the command line, then the directories to hide.
inner='
set -e
name="$1"; own="$2"; work="$3"; command="$4"; shift 4
hostname "$name"
mount --bind "$own" "$work/local"
for hidden in "$@"; do mount -t tmpfs -o ro,size=4k,mode=0555 gs-hidden "$hidden"; done
export GRADSKETCH_HOST="$name"
exec /bin/sh -c "$command"
'
exec ip netns exec "$namespace" unshare --mount --uts --propagation private -- \
    /bin/bash -c "$inner" hosts-agent "$namespace" "$own" "$work" "$*" "${others[@]}"
