#!/bin/bash
# Fails when a C/CUDA source differs from what clang-format (with the
# committed .clang-format) would write.
set -u
root=${1:-.}
cd "$root" || exit 1
fmt=$(command -v clang-format || command -v clang-format-14 || true)
if [ -z "$fmt" ]; then
  echo "check-format: clang-format is not installed" >&2
  exit 1
fi
bad=0
while IFS= read -r f; do
  if ! "$fmt" --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "check-format: $f is not formatted (run: clang-format -i $f)"
    bad=1
  fi
done < <(git ls-files --cached --others --exclude-standard '*.c' '*.h' '*.cu' '*.cuh' 2>/dev/null || find common cpu cuda server clients tests -name '*.[ch]' -o -name '*.cu')
[ $bad -eq 0 ] && echo "check-format: all sources formatted"
exit $bad
