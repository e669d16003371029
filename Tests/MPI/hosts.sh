#!/usr/bin/env bash
# mpi-test: helper
# "Separate hosts" on one machine: network namespaces joined by a bridge, talking over TCP.
#
# Source this file, then:
#   hosts_up N [WORK]    make hosts gs-host1..gs-hostN (N ≤ 8), each a network namespace with
#                        address 10.77.0.i/24 on a veth into bridge gs-br0 (root side
#                        10.77.0.254, where mpirun runs), loopback up, and its own directory
#                        WORK/hosti (WORK defaults to a new directory under /tmp).
#   hosts_mpirun ARGS…   mpirun over those hosts: hostfile of their addresses (2 slots each),
#                        launcher agent = ip netns exec, TCP only (btl tcp,self; oob and btl
#                        restricted to 10.77.0.0/24).
#   hosts_down           kill what runs in the namespaces, delete them and the bridge, remove
#                        WORK if hosts_up made it. Idempotent; call it from an EXIT trap.
#
# What each host sees (set up by the agent for every process OpenMPI starts there):
#   - its own network namespace (its own loopback, one interface 10.77.0.i);
#   - its own UTS namespace: `hostname` prints gs-hosti, so MPI_Get_processor_name differs;
#   - GRADSKETCH_HOST=gs-hosti (Collective.host reads it, contract §2); mpirun's own value is
#     unset so OpenMPI cannot forward one value to every host;
#   - its own mount namespace in which every OTHER host's directory WORK/hostj is covered by an
#     empty read-only tmpfs, and its own directory is also bound at WORK/local, so a shard map
#     can say either WORK/hosti/… (distinct paths) or WORK/local/… (the same path, a different
#     disk on every host, as node-local scratch is on a cluster). The rest of the filesystem
#     (the binaries, /tmp) stays shared: the hosts share the machine, not their data.
#
# Exported for scripts: HOSTS_WORK, HOSTS_COUNT, HOSTS_AGENT, HOSTS_FILE, HOSTS_MPIRUN_OPTIONS.
# One harness at a time per machine (the names and subnet are fixed): hosts_up takes the lock
# /run/lock/gradsketch-hosts.lock and waits up to 10 minutes for it.
# Requires root (CAP_NET_ADMIN, CAP_SYS_ADMIN), iproute2 and util-linux (unshare); fails with a
# message naming what is missing.

hosts__here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HOSTS_SUBNET_PREFIX="10.77.0"
HOSTS_BRIDGE="gs-br0"
HOSTS_COUNT=0
HOSTS_WORK=""
hosts__made_work=0
hosts__lock_fd=""

hosts__fail() { echo "hosts.sh: $*" >&2; return 1; }

hosts_up() {
    local count="${1:?hosts_up N [WORK]}" work="${2:-}"
    [[ "$count" =~ ^[1-8]$ ]] || { hosts__fail "expected 1 to 8 hosts, found '$count'"; return 1; }
    [ "$(id -u)" = 0 ] || { hosts__fail "network namespaces need root, running as uid $(id -u)"; return 1; }
    local tool
    for tool in ip unshare nsenter mpirun flock; do
        command -v "$tool" >/dev/null || { hosts__fail "$tool not found (Tools/setup.sh installs iproute2 and openmpi-bin)"; return 1; }
    done
    mkdir -p /run/lock
    exec {hosts__lock_fd}>/run/lock/gradsketch-hosts.lock
    flock -w 600 "$hosts__lock_fd" || { hosts__fail "another harness holds /run/lock/gradsketch-hosts.lock (waited 600 s)"; return 1; }
    # Leftovers of a run that was killed before its trap ran.
    hosts__remove_namespaces

    if [ -z "$work" ]; then
        work="$(mktemp -d /tmp/gs-hosts.XXXXXX)"
        hosts__made_work=1
    fi
    HOSTS_WORK="$(cd "$work" && pwd)"
    HOSTS_COUNT="$count"
    mkdir -p "$HOSTS_WORK/local"

    if ! ip link add "$HOSTS_BRIDGE" type bridge 2>"$HOSTS_WORK/ip-error"; then
        hosts__fail "cannot create bridge $HOSTS_BRIDGE (network namespaces unavailable?): $(cat "$HOSTS_WORK/ip-error")"
        hosts_down; return 1
    fi
    ip addr add "$HOSTS_SUBNET_PREFIX.254/24" dev "$HOSTS_BRIDGE" && ip link set "$HOSTS_BRIDGE" up || { hosts__fail "cannot configure bridge"; hosts_down; return 1; }

    : > "$HOSTS_WORK/hostfile"
    : > "$HOSTS_WORK/hosts.map"
    local i
    for ((i = 1; i <= count; i++)); do
        local namespace="gs-host$i" address="$HOSTS_SUBNET_PREFIX.$i"
        if ! ip netns add "$namespace" 2>"$HOSTS_WORK/ip-error"; then
            hosts__fail "cannot create network namespace $namespace: $(cat "$HOSTS_WORK/ip-error")"
            hosts_down; return 1
        fi
        ip link add "gs-veth$i" type veth peer name eth0 netns "$namespace" \
            && ip link set "gs-veth$i" master "$HOSTS_BRIDGE" \
            && ip link set "gs-veth$i" up \
            && ip -n "$namespace" link set lo up \
            && ip -n "$namespace" addr add "$address/24" dev eth0 \
            && ip -n "$namespace" link set eth0 up \
            || { hosts__fail "cannot wire $namespace to $HOSTS_BRIDGE"; hosts_down; return 1; }
        mkdir -p "$HOSTS_WORK/host$i"
        echo "$address slots=2" >> "$HOSTS_WORK/hostfile"
        echo "$address $namespace $HOSTS_WORK/host$i" >> "$HOSTS_WORK/hosts.map"
    done
    # The bridge must forward between the veths even where br_netfilter sends bridged frames
    # through iptables (Docker hosts): allow the subnet explicitly when iptables is there.
    if command -v iptables >/dev/null; then
        iptables -C FORWARD -i "$HOSTS_BRIDGE" -j ACCEPT 2>/dev/null || iptables -I FORWARD -i "$HOSTS_BRIDGE" -j ACCEPT 2>/dev/null || true
    fi
    # Every host reaches the launcher before anything is started: a TCP connect to a closed
    # port answers "connection refused" at once when the path works, times out when not
    # (no ping on minimal machines).
    for ((i = 1; i <= count; i++)); do
        local answer
        answer="$(ip netns exec "gs-host$i" timeout 3 bash -c "exec 3<>/dev/tcp/$HOSTS_SUBNET_PREFIX.254/9" 2>&1 || true)"
        [[ "$answer" == *"refused"* ]] \
            || { hosts__fail "gs-host$i cannot reach $HOSTS_SUBNET_PREFIX.254 over $HOSTS_BRIDGE: ${answer:-timed out}"; hosts_down; return 1; }
    done

    HOSTS_AGENT="$hosts__here/hosts-agent.sh"
    HOSTS_FILE="$HOSTS_WORK/hostfile"
    HOSTS_MPIRUN_OPTIONS=(--hostfile "$HOSTS_FILE" --oversubscribe --bind-to none
        --mca plm_rsh_agent "$HOSTS_AGENT" --mca plm_rsh_no_tree_spawn 1
        --mca btl tcp,self --mca btl_tcp_if_include "$HOSTS_SUBNET_PREFIX.0/24"
        --mca oob_tcp_if_include "$HOSTS_SUBNET_PREFIX.0/24" --mca pml ob1)
    export HOSTS_WORK HOSTS_COUNT HOSTS_AGENT HOSTS_FILE
    # The agent finds the map through this (OpenMPI starts it with mpirun's environment).
    export GRADSKETCH_HOSTS_MAP="$HOSTS_WORK/hosts.map"
}

hosts_mpirun() {
    [ "$HOSTS_COUNT" -gt 0 ] || { hosts__fail "hosts_mpirun before hosts_up"; return 1; }
    # Unset so that nothing forwards the launcher's value: each host's agent sets its own.
    env -u GRADSKETCH_HOST OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        mpirun "${HOSTS_MPIRUN_OPTIONS[@]}" "$@"
}

hosts__remove_namespaces() {
    local namespace pid
    for namespace in $(ip netns list 2>/dev/null | awk '$1 ~ /^gs-host[0-9]+$/ {print $1}'); do
        for pid in $(ip netns pids "$namespace" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$namespace" 2>/dev/null || true
    done
    ip link del "$HOSTS_BRIDGE" 2>/dev/null || true
    if command -v iptables >/dev/null; then
        iptables -D FORWARD -i "$HOSTS_BRIDGE" -j ACCEPT 2>/dev/null || true
    fi
}

hosts_down() {
    hosts__remove_namespaces
    if [ "$hosts__made_work" = 1 ] && [ -n "$HOSTS_WORK" ]; then
        rm -rf "$HOSTS_WORK"
        hosts__made_work=0
    fi
    HOSTS_COUNT=0
    if [ -n "$hosts__lock_fd" ]; then
        exec {hosts__lock_fd}>&-
        hosts__lock_fd=""
    fi
    return 0
}
