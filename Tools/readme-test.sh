#!/usr/bin/env bash
# The README doc-test: runs every ```sh block of README.md, command by command and in order,
# in a fresh directory with the built `gradsketch` first on the PATH, and fails naming the first
# command that fails. A block preceded by `<!-- doc-test: skip (REASON) -->` is not run; the
# harness says which and why. A command is a line with its `\` continuations and here-document
# body; each runs in its own `bash -e -o pipefail` in the work directory (blocks must not rely
# on `cd` or `export` from an earlier command). Closes with "N passed, N failed".
#
# Usage: Tools/readme-test.sh [README]
#   GRADSKETCH_BIN_DIR=DIR  use the gradsketch in DIR instead of building the release product
#   KEEP=1                  keep the work directory
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
readme="$(cd "$(dirname "${1:-$root/README.md}")" && pwd)/$(basename "${1:-$root/README.md}")"

if [ -z "${GRADSKETCH_BIN_DIR:-}" ]; then
  (cd "$root" && swift build -c release --product gradsketch >&2)
  # `gradsketch serve` execs this sibling binary (README "Serving queries over HTTP").
  (cd "$root" && swift build -c release --product gradsketch-serve >&2)
  GRADSKETCH_BIN_DIR="$(cd "$root" && swift build -c release --show-bin-path)"
fi
[ -x "$GRADSKETCH_BIN_DIR/gradsketch" ] || { echo "readme-test: no gradsketch in $GRADSKETCH_BIN_DIR" >&2; exit 2; }
export PATH="$GRADSKETCH_BIN_DIR:$PATH"

work="$(mktemp -d)"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/commands"

# Split the README into commands: "<kind> <line>" records in $work/plan, one file per command.
python3 - "$readme" "$work" <<'PY'
import re, sys
readme, work = sys.argv[1], sys.argv[2]
lines = open(readme, encoding="utf-8").read().split("\n")
plan, count, i, skip = [], 0, 0, None
while i < len(lines):
    line = lines[i]
    marker = re.match(r"\s*<!--\s*doc-test:\s*skip\s*\((.*)\)\s*-->\s*$", line)
    if marker:
        skip = marker.group(1)
        i += 1
        continue
    if line.strip() != "```sh":
        if line.strip():
            skip = None  # a marker applies only to the block right after it
        i += 1
        continue
    start = i + 1
    end = start
    while end < len(lines) and lines[end].strip() != "```":
        end += 1
    if end == len(lines):
        sys.exit(f"readme-test: README.md:{i + 1}: unclosed ```sh block")
    if skip is not None:
        plan.append(f"skip {i + 1} {skip}")
        skip = None
        i = end + 1
        continue
    j = start
    while j < end:
        if not lines[j].strip() or lines[j].lstrip().startswith("#"):
            j += 1
            continue
        first, command = j, [lines[j]]
        while command[-1].endswith("\\") and j + 1 < end:
            j += 1
            command.append(lines[j])
        # A here-document runs to its delimiter line.
        heredoc = re.search(r"<<-?\s*(['\"]?)(\w+)\1", "\n".join(command))
        if heredoc:
            while j + 1 < end and lines[j + 1].strip() != heredoc.group(2):
                j += 1
                command.append(lines[j])
            j += 1
            command.append(lines[j] if j < end else "")
        j += 1
        count += 1
        with open(f"{work}/commands/{count}.sh", "w", encoding="utf-8") as f:
            f.write("\n".join(command) + "\n")
        plan.append(f"run {first + 1} {count}")
    i = end + 1
with open(f"{work}/plan", "w", encoding="utf-8") as f:
    f.write("".join(entry + "\n" for entry in plan))
PY

echo "readme-test: $(basename "$readme") in $work with $(command -v gradsketch)"
passed=0 failed=0 skipped=0 notrun=0
while read -r kind line rest; do
  if [ "$kind" = skip ]; then
    skipped=$((skipped + 1))
    echo "skip $(basename "$readme"):$line: block not run: $rest"
    continue
  fi
  file="$work/commands/$rest.sh"
  summary="$(head -n 1 "$file")"
  if [ "$failed" -gt 0 ]; then
    notrun=$((notrun + 1))
    continue
  fi
  started=$SECONDS
  if (cd "$work" && bash -e -o pipefail "$file") < /dev/null > "$work/output" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $(basename "$readme"):$line ($((SECONDS - started)) s): $summary"
  else
    status=$?
    failed=$((failed + 1))
    echo "FAIL $(basename "$readme"):$line (exit $status): $summary"
    tail -n 20 "$work/output" | sed 's/^/     | /'
  fi
done < "$work/plan"

[ "$skipped" -eq 0 ] || echo "readme-test: $skipped blocks skipped as marked"
[ "$notrun" -eq 0 ] || echo "readme-test: $notrun commands not run after the failure"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
