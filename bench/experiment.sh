#!/usr/bin/env bash
# bench/experiment.sh: the experiment runner's own cost (issue 14).
#
# The target is nginx (one worker) on 127.0.0.1 answering every function
# call with a fixed 2-byte body, and the two management calls `faas
# experiment run` makes before its calls: nothing behind it, so whatever a
# client adds shows. Side by side, repetitions alternating:
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
# 1 minute. Knobs: BENCH_REPEAT (3), BENCH_DURATION (6), BENCH_EXPERIMENT_PORT
# (29410), BENCH_RESULTS, BENCH_OUT.
set -euo pipefail

SCRIPT=bench/experiment.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT=${BENCH_OUT:-$BENCH/out}/experiment
REPEAT=${BENCH_REPEAT:-3}
PORT=${BENCH_EXPERIMENT_PORT:-29410}
URL=http://127.0.0.1:$PORT
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
[[ -x $BIN/faas ]] || release_build faas-cli
FAAS=$BIN/faas

rm -rf "$OUT"
mkdir -p "$OUT/raw" "$OUT/nginx/tmp"
NGINX_PID=
cleanup() {
    [[ -n $NGINX_PID ]] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    true
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
NGINX_PID=$!
for _ in $(seq 1 100); do
    [[ $(curl -s -m 2 -X POST "$URL/function/trivial" || true) == ok ]] && break
    sleep 0.05
done
[[ $(curl -s -m 2 -X POST "$URL/function/trivial" || true) == ok ]] || die "nginx did not start: $OUT/nginx/error.log"

cat >"$OUT/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "x"
EOF
TSV=$OUT/runs.tsv
: >"$TSV"
# wrk_run LABEL REP CONNS: one wrk run; its rate (column 3) and µs per
# call (column 4) into the TSV.
wrk_run() {
    local file=$OUT/raw/$1.$2.txt row
    wrk -t1 -c"$3" -d"${DURATION}s" --latency -s "$OUT/post.lua" "$URL/function/trivial" >"$file" 2>&1 || die "wrk failed: $file"
    row=$(benchstat wrk "$file")
    read -r _ _ _ rate errors <<<"$row"
    [[ $errors == 0 ]] || die "wrk saw $errors errors: $file"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$rate" "$(benchstat calc '%.4f' "1000000 / $rate")" >>"$TSV"
    log "$(printf '%-10s rep %s: %s/s' "$1" "$2" "$rate")"
    echo "$rate"
}
# runner_run LABEL REP THREADS RUNS: one `faas experiment run`; its rate
# (column 3), µs per call (4), mean client time in µs (5) and wall time
# (6) into the TSV.
runner_run() {
    local dir=$OUT/raw/$1.$2 file=$OUT/raw/$1.$2.yml n wall rate mean failures
    printf 'function: trivial\npayloads: [x]\nruns: %s\nthreads: %s\ntimeout: 10s\n' "$4" "$3" >"$file"
    FAAS_GATEWAY=$URL "$FAAS" experiment run "$file" --out "$dir" >"$dir.log" 2>&1 || die "faas experiment run failed: $dir.log"
    read -r n wall rate mean failures <<<"$(benchstat calls "$dir/calls.csv")"
    [[ $failures == 0 ]] || die "the runner saw $failures failed calls: $dir/calls.csv"
    [[ $n == "$4" ]] || die "the runner made $n calls, not $4: $dir/calls.csv"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$rate" "$(benchstat calc '%.4f' "1000000 / $rate")" "$mean" "$wall" >>"$TSV"
    log "$(printf '%-10s rep %s: %s/s over %s calls (%s s), client mean %s µs' "$1" "$2" "$rate" "$n" "$wall" "$mean")"
    rm -rf "$dir"
}

log "warming up"
wrk -t1 -c32 -d2s -s "$OUT/post.lua" "$URL/function/trivial" >/dev/null
for rep in $(seq 1 "$REPEAT"); do
    rate=$(wrk_run wrk-c1 "$rep" 1)
    runner_run runner-c1 "$rep" 1 "$(benchstat calc '%.0f' "$rate * $DURATION")"
    rate=$(wrk_run wrk-c32 "$rep" 32)
    runner_run runner-c32 "$rep" 32 "$(benchstat calc '%.0f' "$rate * $DURATION")"
done
cat >"$OUT/commands.log" <<EOF
wrk -t1 -c1|-c32 -d${DURATION}s --latency -s post.lua $URL/function/trivial
FAAS_GATEWAY=$URL faas experiment run run.yml --out DIR   # run.yml: function: trivial, payloads: [x], runs: <wrk's count>, threads: 1|32
EOF

W1=$(benchstat median "$TSV" wrk-c1 3)
R1=$(benchstat median "$TSV" runner-c1 3)
W32=$(benchstat median "$TSV" wrk-c32 3)
R32=$(benchstat median "$TSV" runner-c32 3)
CLIENT1=$(benchstat median "$TSV" runner-c1 5)
# The runner's own µs per call: its µs per call minus wrk's, per repetition.
OVERHEAD=$(benchstat paired "$TSV" runner-c1 wrk-c1 4 diff)
SPREAD_RUNNER=$(benchstat spread "$TSV" runner-c1 4)
SPREAD_WRK=$(benchstat spread "$TSV" wrk-c1 4)
RATIO=$(benchstat paired "$TSV" runner-c32 wrk-c32 3 ratio)
CORES=$(nproc)
CPU_MODEL=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)

{
    cat <<EOF
## 8. Experiment runner

\`faas experiment run\` against nginx answering every call with a fixed
2-byte body (one worker, 127.0.0.1: nothing behind it, so what a client
adds shows), side by side with wrk, ${REPEAT} alternating repetitions of
${DURATION} s of wrk and as many calls by the runner; medians. The
runner's figures are from its own \`calls.csv\`: its rate over the span
from the first call's start to the last call's end, so its start-up
(reading the gateway's info and the function's status) and its CSV
writing are not counted. Machine: ${CORES} × ${CPU_MODEL}; the runner
(a ${TARGET} release build), wrk and nginx share its cores.

| | wrk | faas experiment run | runner / wrk |
|---|---:|---:|---:|
| 1 caller: calls/s | $(benchstat calc '%.0f' "$W1") | $(benchstat calc '%.0f' "$R1") | $(benchstat calc '%.2f' "$R1 / $W1") |
| 1 caller: µs per call | $(benchstat calc '%.1f' "1000000 / $W1") | $(benchstat calc '%.1f' "1000000 / $R1") (client_ms mean $(benchstat calc '%.1f' "$CLIENT1") µs) | |
| 32 callers: calls/s | $(benchstat calc '%.0f' "$W32") | $(benchstat calc '%.0f' "$R32") | $(benchstat calc '%.2f' "$RATIO") |

| target | measured | verdict |
|---|---|---|
| the runner's own cost per call at 1 caller ≤ ${OVERHEAD_TARGET} µs (its µs per call − wrk's, per repetition) | $(benchstat calc '%.1f' "$OVERHEAD") µs (µs per call over the repetitions: runner ${SPREAD_RUNNER}, wrk ${SPREAD_WRK}) | $(benchstat verdict "$OVERHEAD <= $OVERHEAD_TARGET") |
| the runner sustains ≥ $(benchstat calc '%.0f' "$RATE_TARGET * 100")% of wrk's rate at 32 callers | $(benchstat calc '%.0f' "$RATIO * 100")% | $(benchstat verdict "$RATIO >= $RATE_TARGET") |

What each call costs the runner beyond wrk: a row (the experiment's
names, the payload, the replica's headers and trailers parsed), the
live percentiles' sample, a tokio task hop per call; wrk keeps a
histogram and nothing else. Commands: \`bench/out/experiment/commands.log\`.
EOF
} >"$OUT/section.md"
benchstat splice "$RESULTS" "## 8. Experiment runner" "$OUT/section.md"
log "done: $RESULTS (section 8)"
