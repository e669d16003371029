#!/usr/bin/env bash
# The Python package's tests (python/tests, pytest) against this checkout: builds the release
# `gradsketch` and `gradsketch-serve` commands the tests drive next to the package, then runs
# pytest on the installed package (Tools/setup.sh installs it from python/ and reinstalls it
# when its sources change). Extra arguments go to pytest, e.g. `Tools/python-test.sh -k logra`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
swift build -c release --product gradsketch >&2
swift build -c release --product gradsketch-serve >&2
bin="$(swift build -c release --show-bin-path)"
export GRADSKETCH_CLI="$bin/gradsketch"
# Two cores: torch's own thread pool beside the engine's would only oversubscribe them.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
python3 -m pytest -q -p no:cacheprovider "$root/python/tests" "$@"
