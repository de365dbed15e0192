#!/usr/bin/env bash
# The benchmark's W5 (HTTP API) drives the API with Debian's wrk: a C load generator that
# leaves the two cores to the server and PostgreSQL. Without it W5 is skipped with a note.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "wrk is missing and cannot be installed here (need root + apt-get); bench W5 will be skipped" >&2
  exit 0
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 \
  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
