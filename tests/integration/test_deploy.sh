#!/bin/bash
# test_deploy.sh HYDRAD ROOT - checks deploy/ with the tools Debian has:
#   1. shellcheck (warnings and errors) on every shell script of the repo;
#   2. deploy/hydrad.conf.example names every hydrad option (from --help) and
#      nothing else, and hydrad starts from it (paths pointed at a scratch
#      directory and the tiny test model) and answers /v1/health;
#   3. systemd-analyze verify on deploy/hydrad.service (ExecStart pointed at
#      the built hydrad);
#   4. the Kubernetes manifests (deploy/kubernetes) with check_k8s.py (no
#      kubeconform in Debian: object shapes, selectors, probes, GPU limits,
#      every referenced Secret/ConfigMap/claim defined).
# deploy/slurm/hydrad-workers.sh is shellchecked here and run, with two
# workers on the CPU, by the multinode test.
# The Containerfile has no checker in Debian 12 (no hadolint, no podman here).
set -u
hydrad=$1 root=$2
fail=0
ok() { echo "ok   $*"; }
bad() {
  echo "FAIL $*"
  fail=1
}
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
pid=0
cd "$root" || exit 1

# 1. shellcheck
if command -v shellcheck >/dev/null; then
  mapfile -t scripts < <(git ls-files '*.sh' .ci/run 2>/dev/null)
  if out=$(shellcheck -S warning "${scripts[@]}" 2>&1); then
    ok "shellcheck: ${#scripts[@]} scripts clean"
  else
    bad "shellcheck: $out"
  fi
else
  bad "shellcheck is not installed (Debian: shellcheck)"
fi

# 2. the example config
opts=$("$hydrad" --help 2>&1 | grep -o -- '--[a-z][a-z-]*' | sed 's/^--//' | sort -u | grep -vx config)
keys=$(sed -n 's/^#\{0,1\} *\([a-z][a-z-]*\) *=.*/\1/p' deploy/hydrad.conf.example | sort -u)
missing=$(comm -23 <(echo "$opts") <(echo "$keys") | tr '\n' ' ')
extra=$(comm -13 <(echo "$opts") <(echo "$keys") | tr '\n' ' ')
if [ -z "$missing" ] && [ -z "$extra" ]; then
  ok "hydrad.conf.example names all $(echo "$opts" | wc -l) options and nothing else"
else
  bad "hydrad.conf.example: options missing: [$missing], unknown keys: [$extra]"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "deploy-token-0123456789abcdef ci admin" >"$tmp/tokens"
sed -e "s|^model = .*|model = tiny=$root/tests/data/tiny-gpt2|" -e "s|^store = .*|store = $tmp/hydra.db|" \
  -e "s|^tokens = .*|tokens = $tmp/tokens|" -e "s|^port = .*|port = $port|" \
  -e "s|^threads = .*|threads = 1|" -e "s|^backend = .*|backend = cpu|" \
  deploy/hydrad.conf.example >"$tmp/hydrad.conf"
"$hydrad" --config "$tmp/hydrad.conf" 2>"$tmp/log" &
pid=$!
up=0
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1; then
    up=1
    break
  fi
  sleep 0.1
done
if [ $up = 1 ]; then
  ok "hydrad starts from hydrad.conf.example and answers /v1/health"
else
  bad "hydrad did not start from the example config: $(tail -5 "$tmp/log")"
fi
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null

# 3. the systemd unit
if command -v systemd-analyze >/dev/null; then
  sed "s|^ExecStart=/usr/local/bin/hydrad --config /etc/hydra/hydrad.conf|ExecStart=$hydrad --config $tmp/hydrad.conf|" \
    deploy/hydrad.service >"$tmp/hydrad.service"
  if out=$(systemd-analyze verify "$tmp/hydrad.service" 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify hydrad.service: clean"
  else
    bad "systemd-analyze verify hydrad.service: $out"
  fi
else
  bad "systemd-analyze is not installed (Debian: systemd)"
fi
# 4. Kubernetes
if python3 -c 'import yaml' 2>/dev/null; then
  if out=$(python3 tests/integration/check_k8s.py deploy/kubernetes/hydra.yaml \
    deploy/kubernetes/secret.example.yaml 2>&1); then
    ok "$out"
  else
    bad "kubernetes manifests: $out"
  fi
else
  bad "python3 yaml is not installed (Debian: python3-yaml)"
fi
echo "test_deploy: $([ $fail = 0 ] && echo ok || echo FAILED)"
exit $fail
