#!/usr/bin/env bash
# The main job, end to end, on the embedded default config: start the
# daemon, boot a sandbox through the REST API, run a command in it and show
# its output, delete the sandbox, stop the daemon, and check nothing is left.
set -euo pipefail
cd "$(dirname "$0")/.."
slicer=./bin/slicer
data=$(mktemp -d /tmp/slicer-demo.XXXXXX)
port=8080
images=${SLICER_IMAGE_DIR:-/var/lib/slicer/images}
pid=

cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"; wait "$pid" || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT

echo "== checking this host (slicer doctor)"
# Stops here, with the table saying what to fix, when a check is a blocker.
if ! "$slicer" doctor --data-dir "$data" --image-dir "$images"; then
  echo "demo: stopped before starting the daemon: fix the FAIL rows above" >&2
  exit 1
fi

echo "== starting the daemon (first start builds the min image from Debian packages)"
# No config file: the embedded default (one sandbox group, count 0, the min
# image, API on 127.0.0.1:8080 with a token). --data-dir keeps its files here.
"$slicer" up --data-dir "$data" --image-dir "$images" 2>"$data/daemon.log" &
pid=$!
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/daemon.log"; exit 1; }
  sleep 0.5
done
export SLICER_URL="http://127.0.0.1:$port" SLICER_TOKEN_FILE="$data/auth/token"

echo "== launching a sandbox and waiting for its agent"
start=$(date +%s%N)
name=$("$slicer" vm add sandbox --wait --json | sed -n 's/.*"hostname": *"\([^"]*\)".*/\1/p')
echo "sandbox $name ready in $(( ($(date +%s%N) - start) / 1000000 )) ms"

echo "== running: uname -a"
"$slicer" vm exec "$name" -- uname -a

echo "== deleting $name"
"$slicer" vm delete "$name"
"$slicer" vm list

kill -TERM "$pid"; wait "$pid" || true; pid=
left=$(pgrep -fc "qemu-system.*$data" || true)
disks=$(find "$data/disks" -type f | wc -l)
echo "== done: $left qemu processes and $disks disks left"
[ "$left" = 0 ] && [ "$disks" = 0 ]
