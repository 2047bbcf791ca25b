#!/usr/bin/env bash
# bench/experiment.sh: the experiment runner's own cost (issue 14).
#
# Two targets, each called by wrk and by `faas experiment run` side by
# side, repetitions alternating:
#
# - function: a trivial function on the platform, what an experiment
#   measures: the release gateway (process provider, --auth none, on
#   127.0.0.1) with one http-mode replica of the markdown sample. The
#   issue's targets are judged here.
# - nginx: nginx (one worker) answering every call with a fixed 2-byte
#   body (and the two management calls the runner makes first): nothing
#   behind it, so whatever a client adds shows. A harder reference,
#   reported beside.
#
# 1. One caller: wrk -t1 -c1 for BENCH_DURATION seconds, then `faas
#    experiment run` (threads 1) making as many calls as wrk made. The
#    runner's own cost per call is its wall time per call (first call's
#    start to last call's end, from calls.csv) minus wrk's (1 / its rate).
#    Target: at most 50 µs.
# 2. 32 callers: wrk -t1 -c32 against `faas experiment run` with threads
#    32, rates compared. Target: the runner sustains at least 90% of wrk's.
#
# Writes the section "## 8. Experiment runner" of bench/RESULTS.md. About
# 4 minutes. Knobs: BENCH_REPEAT (3), BENCH_DURATION (6), BENCH_EXPERIMENT_PORT
# (29410, and the next one for the gateway), BENCH_RESULTS, BENCH_OUT.
set -euo pipefail

SCRIPT=bench/experiment.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT=${BENCH_OUT:-$BENCH/out}/experiment
REPEAT=${BENCH_REPEAT:-3}
PORT=${BENCH_EXPERIMENT_PORT:-29410}
GW_PORT=$((PORT + 1))
NGINX_URL=http://127.0.0.1:$PORT
GW_URL=http://127.0.0.1:$GW_PORT
OVERHEAD_TARGET=50
RATE_TARGET=0.9

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
if ((${#missing[@]})); then
    log "installing Debian's ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for b in faas gateway fwatchdog markdown; do
    [[ -x $BIN/$b ]] || {
        release_build watchdog
        release_build gateway faas-cli markdown
        break
    }
done
FAAS=$BIN/faas

rm -rf "$OUT"
mkdir -p "$OUT/raw" "$OUT/nginx/tmp"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

cat >"$OUT/nginx/nginx.conf" <<EOF
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path tmp;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PORT;
        default_type application/json;
        location = /system/info {
            return 200 '{"provider":{"provider":"nginx","orchestration":"bench","version":{"release":"0","sha":""}},"version":{"release":"0","sha":""},"arch":"x86_64"}';
        }
        location = /system/function/trivial {
            return 200 '{"name":"trivial","image":"","replicas":1,"availableReplicas":1}';
        }
        location / {
            default_type text/plain;
            return 200 'ok';
        }
    }
}
EOF
"$NGINX" -p "$OUT/nginx/" -c nginx.conf -e error.log -g 'daemon off;' &
PIDS+=($!)
# answers URL BODY: until a POST to URL answers BODY (10 s).
answers() {
    for _ in $(seq 1 200); do
        [[ $(curl -s -m 2 -X POST -d x "$1" || true) == "$2"* ]] && return 0
        sleep 0.05
    done
    return 1
}
answers "$NGINX_URL/function/trivial" ok || die "nginx did not start: $OUT/nginx/error.log"

mkdir -p "$OUT/gateway/tmp"
cat >"$OUT/gateway/stack.yml" <<EOF
functions:
  trivial:
    fprocess: $BIN/markdown
    environment:
      mode: http
    labels:
      faas.scale.max: "1"
EOF
env coap_port=off grpc_port=off RUST_LOG=warn TMPDIR="$OUT/gateway/tmp" "$BIN/gateway" --provider process -f "$OUT/gateway/stack.yml" \
    --port "$GW_PORT" --bind-address 127.0.0.1 --auth none --state-dir "$OUT/gateway/state" >"$OUT/gateway/log" 2>&1 &
PIDS+=($!)
answers "$GW_URL/function/trivial" "<p>x</p>" || die "the gateway's function did not answer: $OUT/gateway/log"

cat >"$OUT/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "x"
EOF
TSV=$OUT/runs.tsv
: >"$TSV"
# wrk_run LABEL REP CONNS URL: one wrk run; its rate (column 3) and µs
# per call (column 4) into the TSV.
wrk_run() {
    local file=$OUT/raw/$1.$2.txt row
    wrk -t1 -c"$3" -d"${DURATION}s" --latency -s "$OUT/post.lua" "$4/function/trivial" >"$file" 2>&1 || die "wrk failed: $file"
    row=$(benchstat wrk "$file")
    read -r _ _ _ rate errors <<<"$row"
    [[ $errors == 0 ]] || die "wrk saw $errors errors: $file"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$rate" "$(benchstat calc '%.4f' "1000000 / $rate")" >>"$TSV"
    log "$(printf '%-10s rep %s: %s/s' "$1" "$2" "$rate")"
    echo "$rate"
}
# runner_run LABEL REP THREADS RUNS URL: one `faas experiment run`; its
# rate (column 3), µs per call (4), mean client time in µs (5) and wall
# time (6) into the TSV.
runner_run() {
    local dir=$OUT/raw/$1.$2 file=$OUT/raw/$1.$2.yml n wall rate mean failures
    printf 'function: trivial\npayloads: [x]\nruns: %s\nthreads: %s\ntimeout: 10s\n' "$4" "$3" >"$file"
    FAAS_GATEWAY=$5 "$FAAS" experiment run "$file" --out "$dir" >"$dir.log" 2>&1 || die "faas experiment run failed: $dir.log"
    read -r n wall rate mean failures <<<"$(benchstat calls "$dir/calls.csv")"
    [[ $failures == 0 ]] || die "the runner saw $failures failed calls: $dir/calls.csv"
    [[ $n == "$4" ]] || die "the runner made $n calls, not $4: $dir/calls.csv"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$rate" "$(benchstat calc '%.4f' "1000000 / $rate")" "$mean" "$wall" >>"$TSV"
    log "$(printf '%-10s rep %s: %s/s over %s calls (%s s), client mean %s µs' "$1" "$2" "$rate" "$n" "$wall" "$mean")"
    rm -rf "$dir"
}

log "warming up"
wrk -t1 -c32 -d2s -s "$OUT/post.lua" "$NGINX_URL/function/trivial" >/dev/null
wrk -t1 -c32 -d2s -s "$OUT/post.lua" "$GW_URL/function/trivial" >/dev/null
for rep in $(seq 1 "$REPEAT"); do
    for target in fn nginx; do
        url=$GW_URL
        [[ $target == nginx ]] && url=$NGINX_URL
        rate=$(wrk_run "$target-wrk-c1" "$rep" 1 "$url")
        runner_run "$target-runner-c1" "$rep" 1 "$(benchstat calc '%.0f' "$rate * $DURATION")" "$url"
        rate=$(wrk_run "$target-wrk-c32" "$rep" 32 "$url")
        runner_run "$target-runner-c32" "$rep" 32 "$(benchstat calc '%.0f' "$rate * $DURATION")" "$url"
    done
done
cat >"$OUT/commands.log" <<EOF
wrk -t1 -c1|-c32 -d${DURATION}s --latency -s post.lua $GW_URL/function/trivial   # the function through the gateway
wrk -t1 -c1|-c32 -d${DURATION}s --latency -s post.lua $NGINX_URL/function/trivial   # nginx
FAAS_GATEWAY=URL faas experiment run run.yml --out DIR   # run.yml: function: trivial, payloads: [x], runs: <wrk's count>, threads: 1|32
EOF

# figures TARGET: W1 R1 W32 R32 CLIENT1 OVERHEAD RATIO SPREAD_RUNNER SPREAD_WRK
figures() {
    W1=$(benchstat median "$TSV" "$1-wrk-c1" 3)
    R1=$(benchstat median "$TSV" "$1-runner-c1" 3)
    W32=$(benchstat median "$TSV" "$1-wrk-c32" 3)
    R32=$(benchstat median "$TSV" "$1-runner-c32" 3)
    CLIENT1=$(benchstat median "$TSV" "$1-runner-c1" 5)
    # The runner's own µs per call: its µs per call minus wrk's, per repetition.
    OVERHEAD=$(benchstat paired "$TSV" "$1-runner-c1" "$1-wrk-c1" 4 diff)
    RATIO=$(benchstat paired "$TSV" "$1-runner-c32" "$1-wrk-c32" 3 ratio)
    SPREAD_RUNNER=$(benchstat spread "$TSV" "$1-runner-c1" 4)
    SPREAD_WRK=$(benchstat spread "$TSV" "$1-wrk-c1" 4)
}
# row TARGET-NAME: the table rows of one target.
rows() {
    cat <<EOF
| $1: 1 caller, calls/s | $(benchstat calc '%.0f' "$W1") | $(benchstat calc '%.0f' "$R1") | $(benchstat calc '%.2f' "$R1 / $W1") |
| $1: 1 caller, µs per call | $(benchstat calc '%.1f' "1000000 / $W1") | $(benchstat calc '%.1f' "1000000 / $R1") (client_ms mean $(benchstat calc '%.1f' "$CLIENT1") µs) | |
| $1: 32 callers, calls/s | $(benchstat calc '%.0f' "$W32") | $(benchstat calc '%.0f' "$R32") | $(benchstat calc '%.2f' "$RATIO") |
EOF
}
figures nginx
NGINX_ROWS=$(rows nginx)
NGINX_OVERHEAD=$OVERHEAD
NGINX_RATIO=$RATIO
figures fn
FN_ROWS=$(rows "the function")
CORES=$(nproc)
CPU_MODEL=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)

{
    cat <<EOF
## 8. Experiment runner

\`faas experiment run\` side by side with wrk, ${REPEAT} alternating
repetitions of ${DURATION} s of wrk and as many calls by the runner;
medians. Two targets: **the function**, a trivial function on the
platform (the release gateway, process provider, with one http-mode
replica of the markdown sample), which is what an experiment measures
and where the targets are judged; and **nginx** answering a fixed 2-byte
body (one worker, nothing behind it), where whatever a client adds
shows. The runner's figures are from its own \`calls.csv\`: its rate over
the span from the first call's start to the last call's end, so its
start-up (reading the gateway's info and the function's status) and its
CSV writing are not counted. Machine: ${CORES} × ${CPU_MODEL}; the
runner (a ${TARGET} release build), wrk and the target share its cores.

| | wrk | faas experiment run | runner / wrk |
|---|---:|---:|---:|
${FN_ROWS}
${NGINX_ROWS}

| target | measured | verdict |
|---|---|---|
| against a trivial function, the runner's own cost per call at 1 caller ≤ ${OVERHEAD_TARGET} µs (its µs per call − wrk's, per repetition) | $(benchstat calc '%.1f' "$OVERHEAD") µs (µs per call over the repetitions: runner ${SPREAD_RUNNER}, wrk ${SPREAD_WRK}) | $(benchstat verdict "$OVERHEAD <= $OVERHEAD_TARGET") |
| against a trivial function, the runner sustains ≥ $(benchstat calc '%.0f' "$RATE_TARGET * 100")% of wrk's rate at 32 callers | $(benchstat calc '%.0f' "$RATIO * 100")% | $(benchstat verdict "$RATIO >= $RATE_TARGET") |

Against nginx the runner's own cost per call at 1 caller is
$(benchstat calc '%.1f' "$NGINX_OVERHEAD") µs and at 32 callers it reaches
$(benchstat calc '%.0f' "$NGINX_RATIO * 100")% of wrk's rate: there the
client is the bottleneck, and each call costs the runner more CPU than
wrk (a row with the experiment's names, the replica's headers and
trailers parsed, the live percentiles' sample, hyper's connection task
and the caller's), on a machine whose two cores it shares with nginx and
wrk. A function on the platform takes far longer than that per call, so
the runner keeps up with it. Commands: \`bench/out/experiment/commands.log\`.
EOF
} >"$OUT/section.md"
benchstat splice "$RESULTS" "## 8. Experiment runner" "$OUT/section.md"
log "done: $RESULTS (section 8)"
