#!/usr/bin/env bash
# Fuzzes GradSketch's parsers with libFuzzer for a bounded time:
#   Tests/Fuzz/run.sh SECONDS [TARGET...]     TARGET: npy safetensors lines manifest torch (default: all)
# Builds gradsketch-fuzz with -sanitize=fuzzer,address (in .build/fuzz, apart from the normal
# build), runs each target for SECONDS starting from the checked-in corpus, prints executions
# and coverage per target, and exits non-zero if any target crashed, leaked past its limits or
# broke a check. Crashing inputs are kept in .build/fuzz-artifacts/<target>/; replay one with
#   .build/debug/gradsketch-fuzz TARGET FILE
# and check it in as Tests/Fuzz/corpus/<target>/refuse-<what> once fixed.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:?usage: Tests/Fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(npy safetensors lines manifest torch)

scratch=.build/fuzz
# swiftc honours only the last -sanitize= it is given, and SwiftPM passes --sanitize options as
# separate flags, which left the Swift code without coverage instrumentation: the combined flag
# at the end turns both on. (--sanitize still instruments the C targets.)
build=(swift build --scratch-path "$scratch" --product gradsketch-fuzz --sanitize fuzzer --sanitize address
       -Xswiftc -DFUZZING -Xswiftc -sanitize=fuzzer,address)
echo "fuzz: building gradsketch-fuzz with libFuzzer and AddressSanitizer" >&2
"${build[@]}" >&2
binary="$("${build[@]}" --show-bin-path)/gradsketch-fuzz"

failed=0
summary=()
for target in "${targets[@]}"; do
  [ -d "Tests/Fuzz/corpus/$target" ] || { echo "fuzz: no corpus for target $target" >&2; exit 2; }
  # New inputs go to a scratch copy: the checked-in corpus changes only by hand.
  work=$(mktemp -d)
  cp "Tests/Fuzz/corpus/$target/"* "$work/"
  artifacts=".build/fuzz-artifacts/$target"
  mkdir -p "$artifacts"
  log=".build/fuzz-artifacts/$target.log"
  dictionary=()
  [ -f "Tests/Fuzz/dictionaries/$target.dict" ] && dictionary=(-dict="Tests/Fuzz/dictionaries/$target.dict")
  status=0
  # detect_leaks=0: the Swift runtime keeps metadata caches that LeakSanitizer reports at exit.
  GRADSKETCH_FUZZ_TARGET=$target ASAN_OPTIONS=detect_leaks=0 "$binary" "${dictionary[@]}" \
    -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work" >"$log" 2>&1 || status=$?
  executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  coverage=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  corpus=$(ls "$work" | wc -l)
  if [ $status -ne 0 ]; then
    failed=1
    summary+=("$target: CRASHED after ${executions} executions (exit $status); see $log and $artifacts/")
    grep -E 'ERROR|Fatal error|VIOLATED|==[0-9]+==' "$log" | head -5 >&2 || true
  else
    summary+=("$target: ${executions} executions in ${seconds} s, ${coverage:-cov ?}, corpus ${corpus} inputs, no crash")
  fi
  rm -rf "$work"
done
printf 'fuzz: %s\n' "${summary[@]}"
crashed=$(printf '%s\n' "${summary[@]}" | grep -c 'CRASHED' || true)
echo "fuzz: $(( ${#summary[@]} - crashed )) passed, ${crashed} failed"
exit $failed
