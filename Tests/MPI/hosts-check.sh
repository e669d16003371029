#!/usr/bin/env bash
# The namespace-hosts harness works: mpirun over 3 hosts (2 when GRADSKETCH_TEST_QUICK=1)
# starts ranks that each see a different network namespace (not the launcher's), a different
# hostname and GRADSKETCH_HOST, only their own host directory, and that exchange data over
# TCP (an MPI_Allgather of every rank's namespace id, compared rank by rank).
#
#   Tests/MPI/hosts-check.sh        (run.sh runs it; about 10 s)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/hosts.sh"
count=3
[ "${GRADSKETCH_TEST_QUICK:-0}" = 1 ] && count=2
command -v mpicc >/dev/null || { echo "hosts-check.sh: mpicc not found (libopenmpi-dev)" >&2; exit 1; }

trap hosts_down EXIT
hosts_up "$count"
for ((i = 1; i <= count; i++)); do echo "disk of host $i" > "$HOSTS_WORK/host$i/marker"; done

# A tiny MPI program: each rank gathers every rank's "netns hostname GRADSKETCH_HOST
# visible-host-directories" line, and rank 0 prints them all.
cat > "$HOSTS_WORK/hello.c" <<'C'
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char line[512], netns[64] = "", name[MPI_MAX_PROCESSOR_NAME] = "", visible[256] = "";
    ssize_t length = readlink("/proc/self/ns/net", netns, sizeof netns - 1);
    if (length > 0) netns[length] = 0;
    int nameLength = 0;
    MPI_Get_processor_name(name, &nameLength);
    const char *host = getenv("GRADSKETCH_HOST");
    const char *work = getenv("HOSTS_WORK");
    int hosts = atoi(getenv("HOSTS_COUNT"));
    for (int h = 1; h <= hosts; h++) {
        char path[300];
        snprintf(path, sizeof path, "%s/host%d/marker", work, h);
        if (access(path, R_OK) == 0) {
            char item[16];
            snprintf(item, sizeof item, "%shost%d", visible[0] ? "," : "", h);
            strncat(visible, item, sizeof visible - strlen(visible) - 1);
        }
    }
    char local[300];
    snprintf(local, sizeof local, "%s/local/marker", work);
    FILE *marker = fopen(local, "r");
    char localText[64] = "none";
    if (marker) { if (fgets(localText, sizeof localText, marker)) localText[strcspn(localText, "\n")] = 0; fclose(marker); }
    snprintf(line, sizeof line, "rank=%d netns=%s name=%s env=%s sees=%s local=%s", rank, netns, name,
             host ? host : "unset", visible[0] ? visible : "nothing", localText);
    char *all = malloc((size_t)size * sizeof line);
    MPI_Allgather(line, sizeof line, MPI_CHAR, all, sizeof line, MPI_CHAR, MPI_COMM_WORLD);
    if (rank == 0) for (int r = 0; r < size; r++) printf("%s\n", all + (size_t)r * sizeof line);
    free(all);
    MPI_Finalize();
    return 0;
}
C
mpicc -O1 -o "$HOSTS_WORK/hello" "$HOSTS_WORK/hello.c"

ranks=$((count * 2))
output="$(hosts_mpirun -np "$ranks" -x HOSTS_WORK -x HOSTS_COUNT "$HOSTS_WORK/hello")"
echo "$output"
root_netns="$(readlink /proc/self/ns/net)"
failures=0
fail() { echo "hosts-check.sh: FAIL: $*" >&2; failures=$((failures + 1)); }

[ "$(echo "$output" | grep -c '^rank=')" = "$ranks" ] || fail "expected $ranks rank lines"
# By-slot mapping fills host 1's two slots first: ranks 2h-2 and 2h-1 run on host h.
declare -A netns_of_host
for ((r = 0; r < ranks; r++)); do
    h=$((r / 2 + 1))
    line="$(echo "$output" | grep "^rank=$r ")" || { fail "no line for rank $r"; continue; }
    netns="$(sed -n 's/.* netns=\([^ ]*\) .*/\1/p' <<<"$line")"
    [ "$netns" != "$root_netns" ] || fail "rank $r runs in the launcher's network namespace"
    if [ -n "${netns_of_host[$h]:-}" ]; then
        [ "${netns_of_host[$h]}" = "$netns" ] || fail "ranks of host $h in two network namespaces"
    else
        netns_of_host[$h]="$netns"
    fi
    grep -q " name=gs-host$h " <<<"$line" || fail "rank $r: expected processor name gs-host$h: $line"
    grep -q " env=gs-host$h " <<<"$line" || fail "rank $r: expected GRADSKETCH_HOST=gs-host$h: $line"
    grep -q " sees=host$h " <<<"$line" || fail "rank $r: expected to see only host$h's directory: $line"
    grep -q " local=disk of host $h\$" <<<"$line" || fail "rank $r: expected WORK/local to be host $h's disk: $line"
done
distinct="$(printf '%s\n' "${netns_of_host[@]}" | sort -u | wc -l)"
[ "$distinct" = "$count" ] || fail "expected $count distinct network namespaces, found $distinct"
if [ "$failures" -gt 0 ]; then exit 1; fi
echo "hosts-check.sh: ok ($count hosts, $ranks ranks, TCP over $HOSTS_BRIDGE)"
