#!/bin/bash
# tests/bench/results_section.sh FILE HEADING NEW - puts the section NEW (a
# file starting with the line HEADING, a "## " heading) into the markdown
# FILE: replaces the section whose heading line starts with HEADING, up to the
# next "## " heading, and leaves every other section as it is; appends it at
# the end when FILE has no such section; creates FILE (with a "# Benchmarks"
# title) when missing. Used by the benchmark scripts of tests/bench/, each of
# which owns one section of RESULTS.md.
set -euo pipefail
file=$1 heading=$2 new=$3
[ -f "$file" ] || printf '# Benchmarks\n\nEach section is written by the script it names. Benchmarks report; they never gate.\n' >"$file"
tmp=$(mktemp "$file.XXXXXX")
awk -v h="$heading" -v nf="$new" '
  BEGIN { while ((getline line < nf) > 0) body = body line "\n"; sub(/\n+$/, "\n", body) }
  !done && index($0, h) == 1 { printf "%s", body; skip = 1; done = 1; next }
  skip && /^## / { skip = 0; print "" }
  !skip { print }
  END { if (!done) printf "\n%s", body }
' "$file" >"$tmp"
cat "$tmp" >"$file"
rm -f "$tmp"
