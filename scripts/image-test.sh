#!/usr/bin/env bash
# `make image-test`: build the image on a locally made base and run the stack end to end with
# host networking: a one-shot migrate, the API, two workers and a fake OpenAI server, all from
# the one image, against PostgreSQL on this machine. It checks the health checks, a job
# completed through the API, and that SIGTERM drains a busy worker (exit 0, its jobs done).
#
# PostgreSQL: a scratch database on IMAGE_TEST_DATABASE_URL (or DATABASE_URL) when set, else
# a throwaway cluster of this machine's own PostgreSQL binaries on a free loopback port.
# Needs root (dockerd, debootstrap). Everything it starts it stops; the images stay.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_TAG="${AIJOBS_BASE:-aijobs-base:bookworm}"
IMAGE="${AIJOBS_IMAGE:-aijobs:image-test}"
RUN_ID="aijobs-it-$$"
WORK=$(mktemp -d /var/tmp/aijobs-image-test.XXXXXX)
LATENCY_MS=3000   # each provider call: long enough that SIGTERM finds jobs running
STARTED_DOCKERD=""
CLUSTER_DIR=""
DB_ADMIN_URL=""
DB_NAME=""
CONTAINERS=()

step() { printf '\n== %s\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() { printf '   FAIL: %s\n' "$*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

cleanup() {
  local code=$?
  set +e
  for c in "${CONTAINERS[@]}"; do
    if [ "$code" != "0" ]; then
      echo "--- last log lines of $c" >&2
      docker logs --tail 15 "$c" 2>&1 | sed 's/^/   /' >&2
    fi
    docker rm -f "$c" >/dev/null 2>&1
  done
  if [ -n "$DB_NAME" ]; then
    psql "$DB_ADMIN_URL" -qc "drop database if exists $DB_NAME with (force)" >/dev/null 2>&1
  fi
  if [ -n "$CLUSTER_DIR" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$CLUSTER_DIR"
  fi
  if [ -n "$STARTED_DOCKERD" ]; then
    kill "$STARTED_DOCKERD" 2>/dev/null && wait "$STARTED_DOCKERD" 2>/dev/null
  fi
  rm -rf "$WORK"
  rm -f deploy/wheels/*.whl
  exit "$code"
}
trap cleanup EXIT

[ "$(id -u)" = "0" ] || fail "image-test needs root (dockerd, debootstrap)"

step "docker"
if ! command -v dockerd >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; }
fi
if ! docker info >/dev/null 2>&1; then
  dockerd >"$WORK/dockerd.log" 2>&1 &
  STARTED_DOCKERD=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log" >&2; fail "dockerd did not start"; }
  ok "started dockerd (pid $STARTED_DOCKERD), stopped again at the end"
else
  ok "dockerd is running"
fi

step "base image $BASE_TAG (debootstrap + docker import, once)"
scripts/make-base-image.sh "$BASE_TAG"

step "build $IMAGE"
start=$(date +%s)
# Wheels made here, with this machine's pip settings, so the build itself reaches no index.
# aijobs' own from a copy of the work tree's files (tracked and new, not ignored): an in-tree
# build would reuse ./build, where files deleted since an earlier build are still lying.
rm -f deploy/wheels/*.whl
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c '[ -e "$1" ] && printf "%s\0" "$1"' _ {} \
  | tar --null -T - -cf - | tar -xf - -C "$WORK/src"
python3 -m pip wheel --quiet --wheel-dir deploy/wheels "$WORK/src" >"$WORK/wheels.log" 2>&1 \
  || { tail -20 "$WORK/wheels.log" >&2; fail "pip wheel"; }
ok "$(ls deploy/wheels/*.whl | wc -l) wheels in deploy/wheels"
docker build --network none --build-arg BASE="$BASE_TAG" -t "$IMAGE" . >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log" >&2; fail "docker build"; }
ok "built in $(( $(date +%s) - start )) s, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
[ "$user" = "10001:10001" ] || fail "the image runs as '$user', not the aijobs user"
ok "runs as uid $user; entrypoint $(docker image inspect -f '{{json .Config.Entrypoint}}' "$IMAGE")"

step "PostgreSQL"
DB_ADMIN_URL="${IMAGE_TEST_DATABASE_URL:-${DATABASE_URL:-}}"
if [ -z "$DB_ADMIN_URL" ]; then
  PG_BIN=$(dirname "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb | tail -n1)")
  [ -x "$PG_BIN/postgres" ] || fail "no DATABASE_URL and no PostgreSQL server binaries on this machine"
  CLUSTER_DIR=$(mktemp -d /var/tmp/aijobs-it-pg.XXXXXX)
  chown postgres "$CLUSTER_DIR"
  pg_port=$(free_port)
  runuser -u postgres -- "$PG_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres --auth=trust >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $CLUSTER_DIR" start >/dev/null
  DB_ADMIN_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
  ok "throwaway cluster on 127.0.0.1:$pg_port"
fi
DB_NAME="aijobs_image_test_$$"
psql "$DB_ADMIN_URL" -qc "create database $DB_NAME" >/dev/null
DB_URL=$(python3 -c "import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p._replace(path='/'+sys.argv[2]).geturl())" "$DB_ADMIN_URL" "$DB_NAME")
ok "scratch database $DB_NAME"

API_PORT=$(free_port)
FAKE_PORT=$(free_port)
M1=$(free_port)
M2=$(free_port)
SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
ENV=(--network host -e DATABASE_URL="$DB_URL" -e JWT_SECRET="$SECRET" -e LOG_FORMAT=text
     -e LLM_PROVIDER=openai -e OPENAI_API_KEY=sk-image-test -e OPENAI_BASE_URL="http://127.0.0.1:$FAKE_PORT/v1"
     -e POLLING_INTERVAL=500 -e SHUTDOWN_GRACE_SECONDS=20)
run() { local name="$RUN_ID-$1"; shift; CONTAINERS+=("$name"); docker run -d --name "$name" "${ENV[@]}" "$@" >/dev/null; }

step "migrate (one-shot)"
CONTAINERS+=("$RUN_ID-migrate")
docker run --name "$RUN_ID-migrate" "${ENV[@]}" "$IMAGE" migrate | sed 's/^/   /'
[ "$(docker inspect -f '{{.State.ExitCode}}' "$RUN_ID-migrate")" = "0" ] || fail "migrate exited non-zero"
ok "migrate exited 0"

step "fake OpenAI, API and two workers"
run fake "$IMAGE" fake-openai --port "$FAKE_PORT" --latency-ms "$LATENCY_MS"
run api -e API_HOST=127.0.0.1 -e API_PORT="$API_PORT" "$IMAGE" api
run worker-1 -e WORKER_CONCURRENCY=4 -e METRICS_PORT="$M1" "$IMAGE" worker
run worker-2 -e WORKER_CONCURRENCY=4 -e METRICS_PORT="$M2" "$IMAGE" worker
health() { docker inspect -f '{{.State.Health.Status}}' "$RUN_ID-$1"; }
for _ in $(seq 1 90); do
  [ "$(health api)" = healthy ] && [ "$(health worker-1)" = healthy ] && [ "$(health worker-2)" = healthy ] && break
  sleep 1
done
for c in api worker-1 worker-2; do
  [ "$(health "$c")" = healthy ] || fail "$c is $(health "$c")"
done
ok "health checks: api healthy, worker-1 healthy, worker-2 healthy"
ready=$(curl -fsS "http://127.0.0.1:$API_PORT/readyz")
ok "GET /readyz: $ready"

step "a job through the API"
USER_ID=$(python3 -c 'import uuid; print(uuid.uuid4())')
docker exec "$RUN_ID-api" aijobs accounts create --user "$USER_ID" --credits 100 >/dev/null
TOKEN=$(docker exec "$RUN_ID-api" aijobs token --user "$USER_ID")
AUTH=(-H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json")
create() { curl -fsS "${AUTH[@]}" -d '{"type": "sentiment_analysis", "payload": {"text": "Lovely staff."}}' \
  "http://127.0.0.1:$API_PORT/api/jobs" | json 'd["id"]'; }
first=$(create)
status=$(curl -fsS "${AUTH[@]}" "http://127.0.0.1:$API_PORT/api/jobs/$first?wait=30" | json 'd["status"]')
for _ in $(seq 1 30); do
  [ "$status" = completed ] && break
  status=$(curl -fsS "${AUTH[@]}" "http://127.0.0.1:$API_PORT/api/jobs/$first?wait=30" | json 'd["status"]')
done
[ "$status" = completed ] || fail "job $first is $status"
provider=$(curl -fsS "${AUTH[@]}" "http://127.0.0.1:$API_PORT/api/jobs/$first" | json 'd["result"]["provider"]')
ok "job $first completed (provider $provider)"

step "SIGTERM drains a busy worker"
for _ in $(seq 1 12); do create >/dev/null; done
in_flight() { curl -fsS "http://127.0.0.1:$1/metrics" | awk '/^aijobs_worker_jobs_in_flight /{print int($2)}'; }
for _ in $(seq 1 40); do [ "$(in_flight "$M1")" -gt 0 ] && break; sleep 0.25; done
busy=$(in_flight "$M1")
[ "$busy" -gt 0 ] || fail "worker-1 never had a job running"
start=$(date +%s.%N)
docker stop --time 40 "$RUN_ID-worker-1" >/dev/null
took=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
code=$(docker inspect -f '{{.State.ExitCode}}' "$RUN_ID-worker-1")
logs=$(docker logs "$RUN_ID-worker-1" 2>&1)
[ "$code" = "0" ] || fail "worker-1 exited $code after SIGTERM"
grep -q "SIGTERM received" <<<"$logs" || fail "worker-1 did not log the SIGTERM"
grep -q "Handing back" <<<"$logs" && fail "worker-1 handed jobs back instead of finishing them"
grep -q "Worker .* stopped" <<<"$logs" || fail "worker-1 did not stop cleanly"
ok "worker-1 had $busy job(s) running; SIGTERM -> drained and exited 0 in ${took} s"
grep -E "SIGTERM received|Stopping: waiting|stopped" <<<"$logs" | sed 's/^/   | /'

count() { curl -fsS "${AUTH[@]}" "http://127.0.0.1:$API_PORT/api/jobs?status=$1&limit=100" | json 'len(d["items"])'; }
for _ in $(seq 1 60); do [ "$(count completed)" = 13 ] && break; sleep 1; done
[ "$(count completed)" = 13 ] || fail "$(count completed) of 13 jobs completed"
ok "13 of 13 jobs completed (worker-2 took the rest); failed: $(count failed)"

step "invariants and the last worker's SIGTERM"
docker exec "$RUN_ID-api" aijobs check | sed 's/^/   /'
balance=$(curl -fsS "${AUTH[@]}" "http://127.0.0.1:$API_PORT/api/me" | json 'd["balance"]')
[ "$balance" = 87 ] || fail "balance $balance, expected 100 - 13"
ok "balance 87 = 100 credits - 13 jobs of 1"
docker stop --time 40 "$RUN_ID-worker-2" "$RUN_ID-api" >/dev/null
for c in worker-2 api; do
  code=$(docker inspect -f '{{.State.ExitCode}}' "$RUN_ID-$c")
  [ "$code" = "0" ] || fail "$c exited $code after SIGTERM"
done
ok "worker-2 and api exited 0 on SIGTERM"

step "image-test passed"
