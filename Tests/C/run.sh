#!/usr/bin/env bash
# Builds libgradsketch-c.so, checks that it exports exactly the functions gradsketch.h declares,
# compiles Tests/C/test_gradsketch.c against the header alone (-Wall -Wextra -Werror -std=c11),
# links it with the library and runs it: under valgrind when installed (leaks of the test's own
# allocations and invalid accesses fail), else with AddressSanitizer on the C side.
# Usage: Tests/C/run.sh [debug|release]   (default debug)
# GRADSKETCH_C_CHECKER=asan forces the AddressSanitizer run even where valgrind is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

configuration="${1:-debug}"
header_dir=Sources/CGradSketchABI/include
header="$header_dir/gradsketch.h"

swift build -c "$configuration" --product gradsketch-c >&2
bin="$(swift build -c "$configuration" --show-bin-path)"
library="$bin/libgradsketch-c.so"
[ -f "$library" ] || { echo "run.sh: $library was not built" >&2; exit 1; }

# The exported C symbols must be exactly the header's functions: a declaration without a
# definition fails at link time for callers, a definition without a declaration is a hidden ABI.
declared="$(cc -E -P -std=c11 "$header" | grep -oE '\bgs_[a-z0-9_]+[[:space:]]*\(' | tr -d '( \t' | sort -u)"
exported="$(nm -D --defined-only "$library" | awk '$2 == "T" { print $3 }' | grep -E '^gs_' | sort -u)"
if [ "$declared" != "$exported" ]; then
  echo "run.sh: the library's gs_* symbols differ from the header's declarations:" >&2
  diff <(echo "$declared") <(echo "$exported") >&2 || true
  exit 1
fi
echo "run.sh: $(echo "$exported" | wc -l) exported gs_* functions match gradsketch.h" >&2

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
flags=(-Wall -Wextra -Werror -std=c11 -pthread -I"$header_dir")
link=(-L"$bin" -l:libgradsketch-c.so -Wl,-rpath,"$bin" -lm -pthread)

if [ "${GRADSKETCH_C_CHECKER:-}" != asan ] && command -v valgrind >/dev/null 2>&1; then
  # Valgrind cannot read the DWARF 5 the Swift toolchain writes ("possibly corrupted
  # debuginfo"), so the test links a copy without debug sections; symbols remain for stacks.
  objcopy --strip-debug "$library" "$work/libgradsketch-c.so"
  link=(-L"$work" -l:libgradsketch-c.so -Wl,-rpath,"$work" -lm -pthread)
  cc "${flags[@]}" -g -O1 Tests/C/test_gradsketch.c -o "$work/test_gradsketch" "${link[@]}"
  # Definite leaks and invalid reads/writes are errors; the Swift runtime's one-time
  # allocations (metadata caches, reachable at exit) are not the ABI's leaks.
  valgrind --quiet --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite "$work/test_gradsketch"
else
  echo "run.sh: running with AddressSanitizer on the C side (valgrind not installed or not chosen)" >&2
  cc "${flags[@]}" -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer Tests/C/test_gradsketch.c \
    -o "$work/test_gradsketch" "${link[@]}"
  ASAN_OPTIONS=detect_leaks=1 "$work/test_gradsketch"
fi
