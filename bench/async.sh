#!/usr/bin/env bash
# bench/async.sh: the async queue under load, with durability on.
#
# A release gateway (process provider, one `cat` function, its queue file
# on this machine's disk, every 202 fsynced by a group commit) takes
# `POST /async-function/echo` from wrk at 1, 16 and 64 connections; then
# the same function is called synchronously at 16 connections as the
# reference measured in the same run. After each async load, the gateway
# is timed until every accepted call has succeeded (from its own
# gateway_async_executions_total), which gives the end-to-end completion
# rate. Everything on 127.0.0.1, bounded in time (about 1.5 minutes).
#
# Writes the section "## 5. Async calls" of bench/RESULTS.md, replacing it
# if present (bench/run.sh calls this script after writing the rest).
# Knobs: BENCH_DURATION (seconds per run, default 6), BENCH_RESULTS,
# BENCH_OUT, BENCH_ASYNC_PORT (default 39190).
set -euo pipefail

SCRIPT=bench/async.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT=${BENCH_OUT:-$BENCH/out}/async
PORT=${BENCH_ASYNC_PORT:-39190}
URL=http://127.0.0.1:$PORT
TARGET_RATE=2000


command -v wrk >/dev/null || die "wrk is missing (bench/run.sh installs it)"
if [[ ! -x $BIN/gateway || ! -x $BIN/fwatchdog ]]; then
    # Apart: built together, the gateway's tokio features would reach fwatchdog.
    release_build watchdog
    release_build gateway
fi

rm -rf "$OUT"
mkdir -p "$OUT/raw"
GW_PID=
cleanup() {
    if [[ -n $GW_PID ]] && kill -0 "$GW_PID" 2>/dev/null; then
        kill "$GW_PID" 2>/dev/null || true
        wait "$GW_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

cat >"$OUT/stack.yml" <<EOF
version: 1.0
provider:
  name: faas
functions:
  echo:
    fprocess: $ROOT/bench/out/async/cat.sh
    labels:
      faas.async.concurrency: "8"
      # One replica, as measured before the autoscaler existed.
      faas.scale.max: "1"
EOF
# busybox cat when present (as the watchdog benchmark), else the system's.
CAT=/bin/busybox
if [[ -x $CAT ]]; then
    printf '#!/bin/sh\nexec /bin/busybox cat\n' >"$OUT/cat.sh"
else
    printf '#!/bin/sh\nexec cat\n' >"$OUT/cat.sh"
fi
chmod +x "$OUT/cat.sh"

GW_CMD=(env coap_port=off grpc_port=off RUST_LOG=warn PATH="$BIN:$PATH" "$BIN/gateway" --provider process -f "$OUT/stack.yml"
    --port "$PORT" --bind-address 127.0.0.1 --queue-path "$OUT/queue.redb" --state-dir "$OUT/state")
log "${GW_CMD[*]}"
"${GW_CMD[@]}" >"$OUT/gateway.log" 2>&1 &
GW_PID=$!
for _ in $(seq 1 200); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' -d x "$URL/function/echo" || true) == 200 ]] && break
    sleep 0.05
done
[[ $(curl -s -o /dev/null -w '%{http_code}' -d x "$URL/function/echo") == 200 ]] || die "the gateway did not come up: $OUT/gateway.log"

cat >"$OUT/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "hello world\n"
wrk.headers["Content-Type"] = "text/plain"
EOF

# wrk FILE → "p50 p99 rate errors"
parse() {
    local p50 p99 rate bad
    read -r p50 _ p99 rate bad < <(benchstat wrk "$1")
    echo "$p50 $p99 $rate $bad"
}
succeeded() {
    curl -s "$URL/metrics" | awk '/^gateway_async_executions_total/ && /status="succeeded"/ { n += $NF } END { print n + 0 }'
}
not_succeeded() {
    curl -s "$URL/metrics" | awk '/^gateway_async_executions_total/ && !/status="succeeded"/ { n += $NF } END { print n + 0 }'
}

ROWS=()
DRAIN_ROWS=()
for conns in 1 16 64; do
    before=$(succeeded)
    file=$OUT/raw/async-c$conns.txt
    cmd=(wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s "$OUT/post.lua" "$URL/async-function/echo")
    echo "${cmd[*]}" >>"$OUT/commands.log"
    start=$(date +%s.%N)
    "${cmd[@]}" >"$file" 2>&1 || die "wrk failed: $file"
    read -r p50 p99 rate bad < <(parse "$file")
    accepted=$(awk '/requests in/ { print $1 }' "$file")
    accepted=$((accepted - bad))
    # Until every accepted call of this run has succeeded (bounded).
    deadline=$(($(date +%s) + 120))
    while (($(succeeded) - before < accepted)) && (($(date +%s) < deadline)); do sleep 0.1; done
    done_at=$(date +%s.%N)
    completed=$(($(succeeded) - before))
    total=$(benchstat calc '%.2f' "$done_at - $start")
    completion=$(benchstat calc '%.0f' "$completed / $total")
    log "async c$conns: $rate accepted/s, p50 ${p50} us, p99 ${p99} us, errors $bad; $completed of $accepted succeeded after ${total}s"
    ROWS+=("| $conns | $rate | $p50 | $p99 | $bad |")
    DRAIN_ROWS+=("| $conns | $accepted | $completed | $total s | $completion/s |")
    if [[ $conns == 16 ]]; then RATE16=$rate; fi
    if [[ $conns == 64 ]]; then RATE64=$rate; fi
done

file=$OUT/raw/sync-c16.txt
cmd=(wrk -t1 -c16 -d"${DURATION}s" --latency -s "$OUT/post.lua" "$URL/function/echo")
echo "${cmd[*]}" >>"$OUT/commands.log"
"${cmd[@]}" >"$file" 2>&1 || die "wrk failed: $file"
read -r sp50 sp99 srate _ < <(parse "$file")
log "sync c16: $srate/s, p50 $sp50 us"
failed=$(not_succeeded)
if [[ $(benchstat verdict "$RATE16 > $RATE64") == "**met**" ]]; then BEST=$RATE16; else BEST=$RATE64; fi
VERDICT=$(benchstat verdict "$BEST >= $TARGET_RATE" "by $(benchstat calc '%d' "$TARGET_RATE - $BEST")/s")
SIZE=$(stat -c %s "$OUT/queue.redb")

SECTION=$(
    cat <<EOF
## 5. Async calls: durable enqueue and completion

Produced by \`bench/async.sh\` (also run by \`bench/run.sh\`) on $(date -u '+%Y-%m-%d %H:%M UTC'),
source $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown).
A release gateway (process provider, \`RUST_LOG=warn\`) with one function,
\`echo\` (\`busybox cat\` in fork mode, \`faas.async.concurrency: 8\`),
its queue in \`bench/out/async/queue.redb\` on this machine's disk: every
202 is sent only after the group commit holding its call has been fsynced.
wrk posts \`hello world\\n\` to \`/async-function/echo\` for ${DURATION} s per
run; the workers run the calls meanwhile, on the same two cores.

| target | measured | result |
|---|---|---|
| ≥ $TARGET_RATE accepted calls/s, every 202 durable | $BEST/s (best of 16 and 64 connections) | $VERDICT |

| connections | accepted/s | enqueue p50 µs | enqueue p99 µs | errors |
|---|---|---|---|---|
$(printf '%s\n' "${ROWS[@]}")

Reference in the same run: the same function called synchronously
(\`/function/echo\`, 16 connections): $srate calls/s, p50 $sp50 µs, p99
$sp99 µs. An async call costs its durable enqueue plus the same run later.

End to end: from the start of each load until every call it got accepted
had succeeded (the gateway's \`gateway_async_executions_total\`).
"Accepted" is wrk's count of 202s; a call whose 202 was still on its way
when wrk stopped is accepted (and run) too, so "succeeded" can be a few
higher:

| connections | accepted | succeeded | time | completion rate |
|---|---|---|---|---|
$(printf '%s\n' "${DRAIN_ROWS[@]}")

Calls that did not succeed over all runs: $failed. Queue file after the
runs: $((SIZE / 1048576)) MiB (records are kept for \`async_retention\`).
Commands: \`bench/out/async/commands.log\`.
EOF
)

printf '%s\n' "$SECTION" >"$OUT/section.md"
touch "$RESULTS"
benchstat splice "$RESULTS" "## 5. Async calls" "$OUT/section.md"
log "async section written to $RESULTS"
