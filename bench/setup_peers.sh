#!/usr/bin/env bash
# Create bench/.peers-venv with the peer job queues (pgqueuer, procrastinate).
# Idempotent: does nothing when the stamp file matches the pinned requirements.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.peers-venv"
PYTHON="${PYTHON:-python3}"
REQS=(
  "pgqueuer==1.6.0"
  "asyncpg"
  "procrastinate==3.10.0"
  "psycopg[binary]>=3.2,<4"
  "typer==0.19.*"
  "psutil"
)
WANT="$(printf '%s\n' "${REQS[@]}")"
STAMP="$VENV/.bench-stamp"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
echo "setting up peers venv in $VENV" >&2
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "${REQS[@]}"
printf '%s' "$WANT" > "$STAMP"
