#!/usr/bin/env bash
# The one driver of the shell-level distributed tests (mpirun, namespaces): what CI calls.
#
#   Tests/MPI/run.sh [--quick] [--no-build] [--debug]
#
# Builds the release `gradsketch` and `gradsketch-mpi` (unless --no-build; --debug uses the
# debug build instead, for a developer who has one), checks the MPI
# transport, runs the writer tests (Tests/MPI/writers*.sh), then every other Tests/MPI/*.sh in
# name order. A script that exits nonzero fails the driver (the others still run, so one
# report shows every failure). --quick asks each script for its CI-sized variant
# (GRADSKETCH_TEST_QUICK=1). A script that is a helper, not a test, says so with a line
# `# mpi-test: helper` in its first 10 lines and is skipped.
#
# Environment the scripts get: GRADSKETCH, GRADSKETCH_MPI (the binaries), MPIRUN (mpirun with
# the options this machine needs), GRADSKETCH_TEST_QUICK (0 or 1), and OpenMPI's permission
# to run as root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
quick=0
build=1
configuration=release
for argument in "$@"; do
    case "$argument" in
        --quick) quick=1 ;;
        --no-build) build=0 ;;
        --debug) configuration=debug ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $argument (expected --quick, --no-build, --debug)" >&2; exit 64 ;;
    esac
done

command -v mpirun >/dev/null || { echo "run.sh: mpirun not found (Tools/setup.sh installs openmpi-bin)" >&2; exit 1; }
cd "$root"
if [ "$build" = 1 ]; then
    echo "== building $configuration gradsketch and gradsketch-mpi"
    swift build -c "$configuration" --product gradsketch
    swift build -c "$configuration" --product gradsketch-mpi
fi
bin="$(swift build -c "$configuration" --show-bin-path)"
export GRADSKETCH="$bin/gradsketch" GRADSKETCH_MPI="$bin/gradsketch-mpi" GRADSKETCH_TEST_QUICK="$quick"
for binary in "$GRADSKETCH" "$GRADSKETCH_MPI"; do
    [ -x "$binary" ] || { echo "run.sh: $binary is missing (run without --no-build)" >&2; exit 1; }
done

SECONDS=0  # from here on, the tests' own time
# CI containers run as root; OpenMPI refuses that unless told twice.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# More ranks than cores (4 or 64 ranks on 2): oversubscribe, and ranks yield while they wait.
# Single-copy shared memory (CMA, process_vm_readv) is often forbidden in containers.
export MPIRUN="mpirun --oversubscribe --mca mpi_yield_when_idle 1 --mca btl_vader_single_copy_mechanism none"

failed=()
passed=0
run_test() {  # name, command...
    local name="$1"; shift
    local started=$SECONDS
    echo
    echo "== $name"
    if "$@"; then
        echo "-- PASS $name ($((SECONDS - started)) s)"
        passed=$((passed + 1))
    else
        echo "-- FAIL $name (exit $?, $((SECONDS - started)) s)"
        failed+=("$name")
    fi
}

transport_check() {
    local ranks
    for ranks in 1 2 4; do
        echo "collective-check with $ranks rank(s): allGather of varying lengths, broadcast, allReduceSum, vote, barrier"
        $MPIRUN -np "$ranks" "$GRADSKETCH_MPI" collective-check || return 1
    done
}

run_test "transport (collective-check, np 1 2 4)" transport_check
# This slice's tests first, in a fixed order, then every other script by name.
own=(writers.sh writers-independent.sh)
for script in "${own[@]}"; do
    run_test "$script" bash "$here/$script"
done
for path in "$here"/*.sh; do
    script="$(basename "$path")"
    case " run.sh ${own[*]} " in *" $script "*) continue ;; esac
    if head -n 10 "$path" | grep -q '^# mpi-test: helper'; then continue; fi
    run_test "$script" bash "$path"
done

echo
echo "run.sh: tests took $SECONDS s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "run.sh: ${#failed[@]} failed, $passed passed: ${failed[*]}"
    exit 1
fi
echo "run.sh: all $passed passed"
