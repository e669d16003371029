# Shared by Tests/MPI/writers*.sh: binaries, mpirun, a scratch directory, small checks.
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
QUICK="${GRADSKETCH_TEST_QUICK:-0}"

work="$(mktemp -d "${TMPDIR:-/tmp}/gradsketch-mpi-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { echo "  ok: $*"; }

# The store's segment files, one per line, sorted (what a failed append must not change).
segment_files() { (cd "$1" && find segments -type f 2>/dev/null | sort); }

# The latest version of a store, from `gradsketch log --json` (newest first).
latest_version() {
    "$GRADSKETCH" log "$1" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["version"])'
}
