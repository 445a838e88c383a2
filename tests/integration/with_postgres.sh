#!/bin/bash
# with_postgres.sh CMD [ARGS...] - runs CMD against a private PostgreSQL
# cluster: initdb in a fresh temporary directory, the server on a free
# loopback port (trust authentication, no Unix socket outside the directory),
# HYDRA_TEST_POSTGRES set to its URL; the cluster is stopped and removed
# afterwards, whatever CMD does. PostgreSQL refuses to run as root, so as root
# the cluster runs as the "postgres" user (or "nobody"). fsync is off: the
# tests kill hydrad, never the database server. Exits 77 (a ctest skip) where
# no PostgreSQL server is installed, or 1 when HYDRA_REQUIRE_POSTGRES=1 (CI).
set -euo pipefail
bindir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "with_postgres: no PostgreSQL server here (apt-get install postgresql)"
  [ "${HYDRA_REQUIRE_POSTGRES:-0}" = 1 ] && exit 1
  exit 77
fi
dir=$(mktemp -d /tmp/hydra-pg-XXXXXX)
as=()
if [ "$(id -u)" = 0 ]; then
  user=postgres
  id -u "$user" >/dev/null 2>&1 || user=nobody
  chown "$user" "$dir"
  as=(runuser -u "$user" --)
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop() {
  "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
"${as[@]}" "$bindir/initdb" -D "$dir/data" -U hydra --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
  { cat "$dir/initdb.log"; exit 1; }
"${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null ||
  { cat "$dir/server.log"; exit 1; }
export HYDRA_TEST_POSTGRES="postgres://hydra@127.0.0.1:$port/postgres"
# How a test restarts the server mid-run: $HYDRA_TEST_POSTGRES_RESTART
# (pg_ctl restart -m immediate: every connection drops, nothing is lost).
HYDRA_TEST_POSTGRES_RESTART="${as[*]} $bindir/pg_ctl -D $dir/data -l $dir/server.log -m immediate -w -t 60 restart"
export HYDRA_TEST_POSTGRES_RESTART
echo "with_postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') at $HYDRA_TEST_POSTGRES"
set +e
"$@"
rc=$?
set -e
[ $rc = 0 ] || tail -20 "$dir/server.log" || true
exit $rc
