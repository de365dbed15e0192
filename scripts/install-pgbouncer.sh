#!/usr/bin/env bash
# The PgBouncer suite starts Debian's pgbouncer in transaction mode in front of the test
# database. Without it (no root, no apt-get) those tests are skipped, saying why.
set -euo pipefail
if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "pgbouncer is missing and cannot be installed here (need root + apt-get); the PgBouncer tests will be skipped" >&2
  exit 0
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null 2>&1 \
  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }
