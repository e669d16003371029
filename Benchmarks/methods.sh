#!/usr/bin/env bash
# Cost of the selection and attribution methods at scale, each against one streaming pass over
# the same rows measured in the same run (ratios, not timed assertions):
#   select:  greedy SELECT with PICKS picks vs PICKS scans; density sampling (200 hashes × power 8)
#   methods: In-Run values over an N-row training log; GradEx (one read, 200-subset linear
#            ensemble, one logistic fit on N/20 rows); PASER (cosine IVF index, 10-NN graph through
#            it, spectral clustering) against the GEMM time the exact graph would take
# Usage: Benchmarks/methods.sh [N] [K] [PICKS]   (default 1 000 000 × 1024 float16, 1 000 picks;
# about 12 minutes and 8 GB of memory on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000000}"; k="${2:-1024}"; picks="${3:-1000}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
swift build -c release --product gradsketch-bench >&2
.build/release/gradsketch-bench select "$work/select" "$n" "$k" "$picks"
.build/release/gradsketch-bench methods "$work/methods" "$n" "$k"
