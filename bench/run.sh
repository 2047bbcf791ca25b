#!/usr/bin/env bash
# bench/run.sh: load benchmark of fwatchdog and the gateway against physical
# references.
#
#   1. fork mode   vs rawspawn (spawn + pipes + wait in a loop, no HTTP)
#   2. http mode   vs a direct call to the same upstream, and vs nginx
#   3. footprint   idle RSS, binary size, stream mode with a 1 GiB body
#   4. gateway     (process provider, one http-mode markdown replica) vs a
#                  direct call to that replica, and vs nginx in front of it;
#                  plus the same load through the Swarm stack when it is up
#                  (./build.sh up; this script never deploys it)
#   5. async       durable enqueue rate and latency, completion rate
#                  (bench/async.sh, also runnable alone)
#   6. scaling     time to the needed replicas under load, cold starts
#                  from zero, process provider and Swarm (bench/scaling.sh)
#   7. source      functions from source: `faas up` to the first call, the
#                  python warm runner vs Flask + waitress, a python
#                  function from zero on Swarm (bench/source.sh)
#   8. experiment  `faas experiment run` vs wrk against nginx: the runner's
#                  own cost per call and its rate (bench/experiment.sh)
#   9. protocols   CoAP and gRPC calls beside HTTP's, 1 and 32 clients
#                  (bench/protocols.sh)
#  10. instructions what one proxied call costs fwatchdog, the gateway and
#                  nginx, counted: instructions (callgrind) and system calls
#                  (strace) per call (bench/instructions.sh)
#
# Everything runs on 127.0.0.1 (and, for the Swarm part, Docker's own
# addresses), bounded in time (about 8 minutes). Raw outputs go to
# bench/out/ (gitignored); the summary is bench/RESULTS.md. Every process
# started here is stopped by the EXIT trap, even on failure.
#
# Knobs (environment): BENCH_DURATION (seconds per measured run, default 6),
# BENCH_WARMUP (seconds, default 2), BENCH_REPEAT (default 3),
# BENCH_PORT_BASE (default 39100), BENCH_PIN (1: also run section 1 with
# taskset, default 1 when there are at least 2 CPUs), BENCH_RESULTS (output
# file, default bench/RESULTS.md), BENCH_OUT (raw outputs, default bench/out),
# BENCH_SKIP (sections from 5 on not to run, e.g. "7 8").
set -euo pipefail

SCRIPT=bench/run.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
OUT=${BENCH_OUT:-$BENCH/out}
WARMUP=${BENCH_WARMUP:-2}
REPEAT=${BENCH_REPEAT:-3}
PORT_BASE=${BENCH_PORT_BASE:-39100}
HELLO_BODY=$'hello world\n'
MD_BODY=$'# Hello\n\nSome *text*.\n'
MD_HTML=$'<h1>Hello</h1>\n<p>Some <em>text</em>.</p>'
STREAM_BYTES=$((1024 * 1024 * 1024))

# Ports: each server gets its own.
P_FORK=$((PORT_BASE + 10))    # fwatchdog mode=fork
P_FORK_PIN=$((PORT_BASE + 20)) # fwatchdog mode=fork, pinned to CPU 0
P_FOOT=$((PORT_BASE + 30))    # fwatchdog mode=fork, fresh, for the footprint
P_HTTP=$((PORT_BASE + 40))    # fwatchdog mode=http
P_MD=$((PORT_BASE + 42))      # markdown (started by the http-mode fwatchdog)
P_NGINX=$((PORT_BASE + 50))   # nginx
P_STREAM=$((PORT_BASE + 60))  # fwatchdog mode=stream
P_GW=$((PORT_BASE + 70))      # gateway --provider process (its replica picks a free port)
P_NGINX_GW=$((PORT_BASE + 80)) # nginx in front of the gateway's replica
SWARM_URL=http://127.0.0.1:8080 # the Swarm stack's gateway (./build.sh up)


# --- process bookkeeping -----------------------------------------------------

PIDS=()       # servers we started, stopped first
CHILD_PIDS=() # their long-lived children (markdown; the gateway's replica), stopped if still alive

alive() { kill -0 "$1" 2>/dev/null; }

stop_pids() {
    local pid i any
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
        any=0
        for pid in "$@"; do alive "$pid" && any=1; done
        ((any)) || return 0
        sleep 0.1
    done
    for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    ((${#PIDS[@]})) && stop_pids "${PIDS[@]}"
    ((${#CHILD_PIDS[@]})) && stop_pids "${CHILD_PIDS[@]}"
    wait 2>/dev/null
    if ((rc != 0)); then
        printf 'bench/run.sh: failed (exit %s); logs in %s\n' "$rc" "$OUT/logs" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- dependencies and build ----------------------------------------------------

install_deps() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
    [[ -x $BUSYBOX ]] || missing+=(busybox-static)
    command -v curl >/dev/null || missing+=(curl)
    command -v taskset >/dev/null || missing+=(util-linux)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get"
        local sudo=()
        ((EUID == 0)) || sudo=(sudo)
        "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

BUILD_CMD=(cargo build --release --locked --target "$TARGET" -p watchdog -p markdown -p rawspawn -p benchstat)
# The gateway in a cargo invocation of its own: built together, its tokio
# features (process, fs) would be unified into fwatchdog's build too.
BUILD_GW_CMD=(cargo build --release --locked --target "$TARGET" -p gateway)
build() {
    log "${BUILD_CMD[*]}"
    "${BUILD_CMD[@]}"
    log "${BUILD_GW_CMD[*]}"
    "${BUILD_GW_CMD[@]}"
    FWATCHDOG=$BIN/fwatchdog
    MARKDOWN=$BIN/markdown
    RAWSPAWN=$BIN/rawspawn
    GATEWAY=$BIN/gateway
    for b in "$FWATCHDOG" "$MARKDOWN" "$RAWSPAWN" "$GATEWAY"; do [[ -x $b ]] || die "$b was not built"; done
}

# --- servers -------------------------------------------------------------------

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_http URL [SECONDS]: until URL answers 2xx.
wait_http() {
    local url=$1 limit=${2:-15} pid=${3:-} i
    for ((i = 0; i < limit * 20; i++)); do
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        if [[ -n $pid ]] && ! alive "$pid"; then return 1; fi
        sleep 0.05
    done
    return 1
}

declare -A CMDS # label -> the exact command line, for RESULTS.md
record_cmd() {
    local label=$1
    shift
    [[ -n ${CMDS[$label]:-} ]] && return 0
    CMDS[$label]=$(printf '%q ' "$@")
    printf '%s: %s\n' "$label" "${CMDS[$label]}" >>"$OUT/commands.log"
}

# start_watchdog NAME PORT [taskset-cpu|-] VAR=VALUE...: starts fwatchdog,
# waits for /_/health, sets WD_PID.
start_watchdog() {
    local name=$1 port=$2 cpu=$3
    shift 3
    port_free "$port" || die "port $port is in use (set BENCH_PORT_BASE)"
    port_free $((port + 1)) || die "port $((port + 1)) is in use (set BENCH_PORT_BASE)"
    local tmp=$OUT/tmp/$name
    mkdir -p "$tmp"
    local cmd=(env "TMPDIR=$tmp" bind_address=127.0.0.1 "port=$port" "metrics_port=$((port + 1))"
        healthcheck_interval=0s "$@" "$FWATCHDOG")
    [[ $cpu != - ]] && cmd=(taskset -c "$cpu" "${cmd[@]}")
    record_cmd "server $name" "${cmd[@]}"
    "${cmd[@]}" >"$OUT/logs/$name.log" 2>&1 &
    WD_PID=$!
    PIDS+=("$WD_PID")
    wait_http "http://127.0.0.1:$port/_/health" 20 "$WD_PID" ||
        die "fwatchdog $name did not become healthy; see $OUT/logs/$name.log"
    grep -q 'listening addr=' "$OUT/logs/$name.log" || die "fwatchdog $name did not log its address"
}

# start_nginx NAME LISTEN-PORT UPSTREAM-PORT: bench/nginx.conf with the ports
# filled in, in its own prefix under bench/out; sets NGINX_PID.
start_nginx() {
    local name=$1 listen=$2 upstream=$3
    port_free "$listen" || die "port $listen is in use (set BENCH_PORT_BASE)"
    local prefix=$OUT/$name
    mkdir -p "$prefix/tmp"
    sed -e "s/@LISTEN_PORT@/$listen/" -e "s/@UPSTREAM_PORT@/$upstream/" \
        "$BENCH/nginx.conf" >"$prefix/nginx.conf"
    local cmd=("$NGINX" -p "$prefix/" -c nginx.conf -e error.log -g 'daemon off;')
    record_cmd "server $name" "${cmd[@]}"
    "${cmd[@]}" >"$OUT/logs/$name.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$listen/" 10 "$NGINX_PID" ||
        die "nginx $name did not start; see $prefix/error.log"
}

# children PID: the pids of PID's children (all its threads').
children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr -s ' ' '\n' | grep . || true; }

# check_echo URL BODY EXPECTED: one request must answer 200 with EXPECTED.
check_response() {
    local url=$1 body=$2 expected=$3 got
    got=$(curl -fsS --max-time 5 --data-binary "$body" "$url") || die "POST $url failed"
    [[ $got == "$expected" ]] || die "POST $url answered ${got@Q}, expected ${expected@Q}"
}

# kib PID FIELD: a /proc/PID/status field in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# --- measurements -------------------------------------------------------------

# One row per run: label rep p50_us p90_us p99_us rate errors
TSV=$OUT/results.tsv

# parse_wrk FILE: prints "p50 p90 p99 rps errors" (latencies in microseconds).
parse_wrk() { benchstat wrk "$1"; }

# wrk_run LABEL REP CONNS URL SCRIPT [taskset-cpu|-]
wrk_run() {
    local label=$1 rep=$2 conns=$3 url=$4 script=$5 cpu=${6:--}
    local cmd=(wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s "$script" "$url")
    [[ $cpu != - ]] && cmd=(taskset -c "$cpu" "${cmd[@]}")
    record_cmd "$label" "${cmd[@]}"
    local file=$OUT/raw/$label.$rep.txt
    "${cmd[@]}" >"$file" 2>&1 || die "wrk failed: $file"
    local row
    row=$(parse_wrk "$file") || die "cannot parse $file"
    printf '%s\t%s\t%s\n' "$label" "$rep" "${row// /$'\t'}" >>"$TSV"
    log "$(printf '%-22s rep %s: p50 %8.1f us  rate %9.1f/s  errors %s' "$label" "$rep" \
        "$(cut -d' ' -f1 <<<"$row")" "$(cut -d' ' -f4 <<<"$row")" "$(cut -d' ' -f5 <<<"$row")")"
}

wrk_warmup() {
    local conns=$1 url=$2 script=$3 cpu=${4:--}
    local cmd=(wrk -t1 -c"$conns" -d"${WARMUP}s" -s "$script" "$url")
    [[ $cpu != - ]] && cmd=(taskset -c "$cpu" "${cmd[@]}")
    "${cmd[@]}" >/dev/null 2>&1 || die "wrk warm-up against $url failed"
}

# raw_run LABEL REP THREADS [taskset-cpu|-]
raw_run() {
    local label=$1 rep=$2 threads=$3 cpu=${4:--}
    local cmd=("$RAWSPAWN" --threads "$threads" --duration "$DURATION" --warmup 1
        --body "$HELLO_BODY" "$BUSYBOX" cat)
    [[ $cpu != - ]] && cmd=(taskset -c "$cpu" "${cmd[@]}")
    record_cmd "$label" "${cmd[@]}"
    local file=$OUT/raw/$label.$rep.txt
    "${cmd[@]}" >"$file" 2>&1 || die "rawspawn failed: $file"
    get() { awk -F= -v k="$1" '$1 == k { print $2 }' "$file"; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$rep" "$(get p50_us)" "$(get p90_us)" \
        "$(get p99_us)" "$(get rate_per_s)" "$(get errors)" >>"$TSV"
    log "$(printf '%-22s rep %s: p50 %8.1f us  rate %9.1f/s' "$label" "$rep" "$(get p50_us)" "$(get rate_per_s)")"
}

# The analysis is bench/benchstat's (unit-tested there).
# med LABEL COLUMN: median over the repetitions (3=p50 4=p90 5=p99 6=rate 7=errors).
med() { benchstat median "$TSV" "$1" "$2"; }
# paired A B COLUMN ratio|diff: the median over the repetitions of A/B (or
# A-B), each run of A compared with the run of B of the same repetition,
# which ran right next to it.
paired() { benchstat paired "$TSV" "$1" "$2" "$3" "$4"; }
# spread LABEL COLUMN: "min–max" over the repetitions.
spread() { benchstat spread "$TSV" "$1" "$2"; }
# calc FORMAT EXPR: printf FORMAT of an arithmetic expression.
calc() { benchstat calc "$1" "$2"; }
# verdict "A OP B" [HOW-MUCH]: "**met**", or "**missed** (HOW-MUCH)".
verdict() { benchstat verdict "$1" "${2:-}"; }

# cpu_snapshot: "busy total steal" jiffies over all CPUs, from /proc/stat.
cpu_snapshot() {
    awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i
        print t - $5 - $6, t, $9; exit }' /proc/stat
}
# cpu_percent BEFORE AFTER FIELD: busy (1) or steal (3) as % of the elapsed CPU time.
cpu_percent() { benchstat cpu-percent "$1" "$2" "$3"; }

# --- main -------------------------------------------------------------------------

START=$(date +%s)
rm -rf "$OUT"
mkdir -p "$OUT/raw" "$OUT/logs" "$OUT/tmp"
: >"$OUT/commands.log"
printf 'label\trep\tp50_us\tp90_us\tp99_us\trate_per_s\terrors\n' >"$TSV"

install_deps
build

NPROC=$(nproc)
# How busy the machine is without us: other work would skew every figure.
QUIET_0=$(cpu_snapshot)
sleep 2
QUIET_BUSY=$(cpu_percent "$QUIET_0" "$(cpu_snapshot)" 1)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
((QUIET_BUSY < 20)) || log "warning: the machine is already ${QUIET_BUSY}% busy before the benchmark"
RUN_CPU_0=$(cpu_snapshot)
PIN=${BENCH_PIN:-$((NPROC >= 2 ? 1 : 0))}
HELLO_LUA=$BENCH/wrk/hello.lua
MD_LUA=$BENCH/wrk/markdown.lua

log "starting servers"
start_watchdog fork "$P_FORK" - mode=fork "fprocess=$BUSYBOX cat"
FORK_PID=$WD_PID
check_response "http://127.0.0.1:$P_FORK/" "$HELLO_BODY" "${HELLO_BODY%$'\n'}"
if ((PIN)); then
    start_watchdog fork-pinned "$P_FORK_PIN" 0 mode=fork "fprocess=$BUSYBOX cat"
    check_response "http://127.0.0.1:$P_FORK_PIN/" "$HELLO_BODY" "${HELLO_BODY%$'\n'}"
fi
start_watchdog http "$P_HTTP" - mode=http "fprocess=$MARKDOWN" "PORT=$P_MD" \
    "upstream_url=http://127.0.0.1:$P_MD"
HTTP_PID=$WD_PID
# The long-lived upstream it started: stopped by the trap too, if still alive.
# shellcheck disable=SC2013 # one pid per word
for kid in $(cat /proc/"$HTTP_PID"/task/*/children 2>/dev/null); do CHILD_PIDS+=("$kid"); done
check_response "http://127.0.0.1:$P_MD/" "$MD_BODY" "$MD_HTML"
check_response "http://127.0.0.1:$P_HTTP/" "$MD_BODY" "$MD_HTML"
start_nginx nginx "$P_NGINX" "$P_MD"
check_response "http://127.0.0.1:$P_NGINX/" "$MD_BODY" "$MD_HTML"
NGINX_WORKER=$(children "$NGINX_PID")
[[ $NGINX_WORKER =~ ^[0-9]+$ ]] || die "expected one nginx worker, found: ${NGINX_WORKER//$'\n'/ }"

# 1. fork mode vs rawspawn ------------------------------------------------------
# Repetitions interleave the reference and the system under test, so a slow
# phase of the machine hits both.
log "1. fork mode vs rawspawn (${REPEAT} x ${DURATION}s each)"
FORK_URL=http://127.0.0.1:$P_FORK/
wrk_warmup 1 "$FORK_URL" "$HELLO_LUA"
for ((r = 1; r <= REPEAT; r++)); do
    raw_run raw-t1 "$r" 1
    wrk_run fork-c1 "$r" 1 "$FORK_URL" "$HELLO_LUA"
done
wrk_warmup 8 "$FORK_URL" "$HELLO_LUA"
for ((r = 1; r <= REPEAT; r++)); do
    raw_run raw-t8 "$r" 8
    wrk_run fork-c8 "$r" 8 "$FORK_URL" "$HELLO_LUA"
done
if ((PIN)); then
    log "1b. the same, pinned: fwatchdog and rawspawn on CPU 0, wrk on CPU 1"
    PIN_URL=http://127.0.0.1:$P_FORK_PIN/
    wrk_warmup 1 "$PIN_URL" "$HELLO_LUA" 1
    for ((r = 1; r <= REPEAT; r++)); do
        raw_run raw-t1-pinned "$r" 1 0
        wrk_run fork-c1-pinned "$r" 1 "$PIN_URL" "$HELLO_LUA" 1
    done
    wrk_warmup 8 "$PIN_URL" "$HELLO_LUA" 1
    for ((r = 1; r <= REPEAT; r++)); do
        raw_run raw-t8-pinned "$r" 8 0
        wrk_run fork-c8-pinned "$r" 8 "$PIN_URL" "$HELLO_LUA" 1
    done
fi

# CPU time per request: for sections 2 and 4.
CLK_TCK=$(getconf CLK_TCK)
CPU_TSV=$OUT/cpu.tsv # label rep process-group cpu_us_per_request
printf 'label\trep\tprocess\tcpu_us_per_request\n' >"$CPU_TSV"
# The first group named in each run is its proxy: its figure again, alone,
# for the paired comparisons (label rep cpu_us_per_request).
PROXY_CPU_TSV=$OUT/proxy-cpu.tsv
printf 'label\trep\tcpu_us_per_request\n' >"$PROXY_CPU_TSV"

# cpu_ticks PID...: utime + stime of the processes (all their threads), in clock ticks.
cpu_ticks() {
    local p t=0 v
    for p in "$@"; do
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }') || v=0
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

# wrk_run_cpu LABEL REP CONNS URL SCRIPT NAME=PID[,PID...]...: wrk_run, and
# the CPU time each named group of processes used during it, per request.
wrk_run_cpu() {
    local label=$1 rep=$2 conns=$3 url=$4 script=$5
    shift 5
    local w i reqs pids=() before=() after=()
    for w in "$@"; do
        IFS=, read -ra pids <<<"${w#*=}"
        before+=("$(cpu_ticks "${pids[@]}")")
    done
    wrk_run "$label" "$rep" "$conns" "$url" "$script"
    i=0
    for w in "$@"; do
        IFS=, read -ra pids <<<"${w#*=}"
        after+=("$(cpu_ticks "${pids[@]}")")
    done
    reqs=$(awk '/ requests in / { print $1; exit }' "$OUT/raw/$label.$rep.txt")
    local per
    for w in "$@"; do
        per=$(calc '%.1f' "(${after[i]} - ${before[i]}) * 1e6 / $CLK_TCK / ${reqs:-0}")
        printf '%s\t%s\t%s\t%s\n' "$label" "$rep" "${w%%=*}" "$per" >>"$CPU_TSV"
        ((i == 0)) && printf '%s\t%s\t%s\n' "$label" "$rep" "$per" >>"$PROXY_CPU_TSV"
        i=$((i + 1))
    done
}

# 2. http mode vs direct and nginx ------------------------------------------------
log "2. http mode vs direct and nginx (${REPEAT} x ${DURATION}s each)"
DIRECT_URL=http://127.0.0.1:$P_MD/
HTTP_URL=http://127.0.0.1:$P_HTTP/
NGINX_URL=http://127.0.0.1:$P_NGINX/
for c in 1 32; do
    wrk_warmup "$c" "$DIRECT_URL" "$MD_LUA"
    wrk_warmup "$c" "$HTTP_URL" "$MD_LUA"
    wrk_warmup "$c" "$NGINX_URL" "$MD_LUA"
    for ((r = 1; r <= REPEAT; r++)); do
        wrk_run "direct-c$c" "$r" "$c" "$DIRECT_URL" "$MD_LUA"
        wrk_run_cpu "fwatchdog-c$c" "$r" "$c" "$HTTP_URL" "$MD_LUA" "fwatchdog=$HTTP_PID"
        wrk_run_cpu "nginx-c$c" "$r" "$c" "$NGINX_URL" "$MD_LUA" "nginx=$NGINX_WORKER"
    done
done

# 3. footprint --------------------------------------------------------------------
log "3. footprint"
sleep 2
FORK_RSS_LOADED=$(kib "$FORK_PID" VmRSS)
HTTP_RSS_LOADED=$(kib "$HTTP_PID" VmRSS)

start_watchdog footprint "$P_FOOT" - mode=fork "fprocess=$BUSYBOX cat"
FOOT_PID=$WD_PID
sleep 1
FOOT_RSS_START=$(kib "$FOOT_PID" VmRSS)
FOOT_CURL=(curl -sS -o /dev/null -w '%{http_code}\n' --data-binary "$HELLO_BODY"
    "http://127.0.0.1:$P_FOOT/?n=[1-1000]")
record_cmd "1000 requests" "${FOOT_CURL[@]}"
FOOT_OK=$("${FOOT_CURL[@]}" | grep -c '^200$' || true)
[[ $FOOT_OK == 1000 ]] || die "footprint: only $FOOT_OK of 1000 requests answered 200"
sleep 2
FOOT_RSS_IDLE=$(kib "$FOOT_PID" VmRSS)
FOOT_HWM=$(kib "$FOOT_PID" VmHWM)

BIN_SIZE=$(stat -c %s "$FWATCHDOG")
BIN_FILE=$(file -b "$FWATCHDOG" 2>/dev/null || echo "?")
BIN_STRIPPED_SIZE=$BIN_SIZE
if command -v strip >/dev/null; then
    cp "$FWATCHDOG" "$OUT/fwatchdog.stripped"
    strip "$OUT/fwatchdog.stripped"
    BIN_STRIPPED_SIZE=$(stat -c %s "$OUT/fwatchdog.stripped")
fi

log "3b. stream mode, 1 GiB through /bin/busybox cat"
start_watchdog stream "$P_STREAM" - mode=stream "fprocess=$BUSYBOX cat" \
    exec_timeout=120s read_timeout=120s write_timeout=120s
STREAM_PID=$WD_PID
check_response "http://127.0.0.1:$P_STREAM/" "$HELLO_BODY" "${HELLO_BODY%$'\n'}"
sleep 1
STREAM_RSS_BEFORE=$(kib "$STREAM_PID" VmRSS)
STREAM_HWM_BEFORE=$(kib "$STREAM_PID" VmHWM)
STREAM_CURL=(curl -sS -o /dev/null -T - -X POST -H 'Content-Type: application/octet-stream'
    -w '%{http_code} %{size_download} %{time_total}\n' "http://127.0.0.1:$P_STREAM/")
record_cmd "stream 1 GiB" head -c "$STREAM_BYTES" /dev/zero '|' "${STREAM_CURL[@]}"
# Sample VmRSS while the body flows, as a cross-check of VmHWM.
(
    max=0
    while v=$(kib "$STREAM_PID" VmRSS 2>/dev/null) && [[ -n $v ]]; do
        ((v > max)) && max=$v && echo "$max" >"$OUT/stream.rss.max"
        [[ -e $OUT/stream.done ]] && break
        sleep 0.02
    done
) &
SAMPLER=$!
STREAM_RESULT=$(head -c "$STREAM_BYTES" /dev/zero | "${STREAM_CURL[@]}")
touch "$OUT/stream.done"
wait "$SAMPLER" || true
STREAM_RSS_SAMPLED=$(cat "$OUT/stream.rss.max" 2>/dev/null || echo 0)
STREAM_HWM_AFTER=$(kib "$STREAM_PID" VmHWM)
STREAM_RSS_AFTER=$(kib "$STREAM_PID" VmRSS)
read -r STREAM_CODE STREAM_SIZE STREAM_TIME <<<"$STREAM_RESULT"
[[ $STREAM_CODE == 200 && $STREAM_SIZE == "$STREAM_BYTES" ]] ||
    die "stream: got HTTP $STREAM_CODE with $STREAM_SIZE bytes, expected 200 with $STREAM_BYTES"
# Reference: the same bytes through the same cat with a plain pipe.
PIPE_CMD="head -c $STREAM_BYTES /dev/zero | $BUSYBOX cat >/dev/null"
record_cmd "stream reference" bash -c "$PIPE_CMD"
PIPE_T0=$(date +%s.%N)
bash -c "$PIPE_CMD"
PIPE_TIME=$(calc '%.3f' "$(date +%s.%N) - $PIPE_T0")

# 4. the gateway ---------------------------------------------------------------------
# The gateway with the process provider runs one replica of markdown in http
# mode: an fwatchdog (the one beside the gateway) proxying to its own
# markdown. That replica is the upstream of every path here: called
# directly, through the gateway, and through nginx.
log "4. gateway vs direct and nginx (${REPEAT} x ${DURATION}s each), and the Swarm stack"

# wait_post URL BODY SECONDS PID: until a POST of BODY to URL answers 2xx.
wait_post() {
    local url=$1 body=$2 limit=$3 pid=$4 i
    for ((i = 0; i < limit * 10; i++)); do
        curl -fsS -o /dev/null --max-time 1 --data-binary "$body" "$url" 2>/dev/null && return 0
        alive "$pid" || return 1
        sleep 0.1
    done
    return 1
}

GW_STACK=$OUT/gateway/stack.yml
mkdir -p "$OUT/gateway" "$OUT/tmp/gateway"
cat >"$GW_STACK" <<EOF
version: 1.0
provider:
  name: faas
functions:
  markdown:
    fprocess: $MARKDOWN
    environment:
      mode: http
    labels:
      # One replica, like nginx's one upstream: no autoscaling here.
      faas.scale.max: "1"
EOF
port_free "$P_GW" || die "port $P_GW is in use (set BENCH_PORT_BASE)"
GW_CMD=(env coap_port=off grpc_port=off RUST_LOG=warn "TMPDIR=$OUT/tmp/gateway" "$GATEWAY" --provider process -f "$GW_STACK"
    --port "$P_GW" --bind-address 127.0.0.1 --state-dir "$OUT/tmp/gateway-state")
record_cmd "server gateway" "${GW_CMD[@]}"
"${GW_CMD[@]}" >"$OUT/logs/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
GW_URL=http://127.0.0.1:$P_GW/function/markdown
wait_post "$GW_URL" "$MD_BODY" 30 "$GW_PID" ||
    die "the gateway did not answer POST /function/markdown; see $OUT/logs/gateway.log"
# Its replica: the one child (an fwatchdog), which runs markdown. Stopped by
# the gateway, and by the trap if still alive.
REPLICA_WD=$(children "$GW_PID")
[[ $REPLICA_WD =~ ^[0-9]+$ ]] || die "expected one replica under the gateway, found: ${REPLICA_WD//$'\n'/ }"
REPLICA_MD=$(children "$REPLICA_WD")
[[ $REPLICA_MD =~ ^[0-9]+$ ]] || die "expected one markdown under the replica, found: ${REPLICA_MD//$'\n'/ }"
CHILD_PIDS+=("$REPLICA_WD" "$REPLICA_MD")
REPLICA_EXE=$(readlink "/proc/$REPLICA_WD/exe")
[[ $REPLICA_EXE == "$FWATCHDOG" ]] || log "warning: the replica runs $REPLICA_EXE, not $FWATCHDOG"
# It binds port 0 and writes the port it got to its port_file.
REPLICA_PORT_FILE=$(tr '\0' '\n' <"/proc/$REPLICA_WD/environ" | sed -n 's/^port_file=//p')
REPLICA_PORT=$(cat "$REPLICA_PORT_FILE" 2>/dev/null || true)
[[ $REPLICA_PORT =~ ^[0-9]+$ ]] ||
    die "cannot read the replica's port from its port_file (${REPLICA_PORT_FILE:-none in /proc/$REPLICA_WD/environ})"
REPLICA_URL=http://127.0.0.1:$REPLICA_PORT/
check_response "$REPLICA_URL" "$MD_BODY" "$MD_HTML"
check_response "$GW_URL" "$MD_BODY" "$MD_HTML"
start_nginx nginx-gateway "$P_NGINX_GW" "$REPLICA_PORT"
NGINX_GW_WORKER=$(children "$NGINX_PID")
[[ $NGINX_GW_WORKER =~ ^[0-9]+$ ]] || die "expected one nginx worker, found: ${NGINX_GW_WORKER//$'\n'/ }"
NGINX_GW_URL=http://127.0.0.1:$P_NGINX_GW/
check_response "$NGINX_GW_URL" "$MD_BODY" "$MD_HTML"
REPLICA_GROUP=replica=$REPLICA_WD,$REPLICA_MD

# The Swarm stack, if it is up (this script never deploys it).
SWARM=0
SWARM_PARTS=0
SWARM_CODE=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$SWARM_URL/healthz" || true)
if [[ $SWARM_CODE != 200 ]]; then
    SWARM_NOTE="not up: GET $SWARM_URL/healthz answered ${SWARM_CODE:-nothing}"
elif ! SWARM_GOT=$(curl -fsS --max-time 5 --data-binary "$MD_BODY" "$SWARM_URL/function/markdown" 2>&1); then
    SWARM_NOTE="not usable: POST $SWARM_URL/function/markdown failed (${SWARM_GOT})"
elif [[ $SWARM_GOT != "$MD_HTML" ]]; then
    SWARM_NOTE="not usable: POST $SWARM_URL/function/markdown answered ${SWARM_GOT@Q}"
else
    SWARM=1
    SWARM_NOTE=up
fi
log "Swarm stack: $SWARM_NOTE"

# swarm_container LABEL: the id of the one running container of the Swarm
# service carrying the service label LABEL (key=value).
swarm_container() {
    local svc name
    svc=$(timeout 10 docker service ls -q --filter "label=$1" 2>/dev/null | head -n1)
    [[ -n $svc ]] || return 1
    name=$(timeout 10 docker service inspect -f '{{.Spec.Name}}' "$svc") || return 1
    timeout 10 docker ps -q --filter "label=com.docker.swarm.service.name=$name" | head -n1 | grep .
}
# gwbridge_ip CONTAINER: its address on docker_gwbridge, the bridge every
# container on a Swarm overlay also gets for traffic leaving the overlay.
gwbridge_ip() {
    local sandbox
    sandbox=$(timeout 10 docker inspect -f '{{.NetworkSettings.SandboxID}}' "$1") || return 1
    timeout 10 docker network inspect docker_gwbridge \
        -f '{{range .Containers}}{{.Name}} {{.IPv4Address}}{{"\n"}}{{end}}' |
        awk -v n="gateway_${sandbox:0:12}" '$1 == n { sub(/\/.*/, "", $2); print $2 }' | grep .
}
SW_GROUPS=()
if ((SWARM)) && command -v docker >/dev/null; then
    # Who does what on the Swarm path, for the CPU accounting and to split
    # the path into parts: docker-proxy (127.0.0.1:8080 is published in host
    # mode, and Docker's userland proxy relays loopback connections), the
    # gateway container, and the overlay hop to the replica.
    if SW_GW_CT=$(swarm_container faas.role=gateway) && SW_MD_CT=$(swarm_container faas.function=markdown); then
        SW_GW_PID=$(timeout 10 docker inspect -f '{{.State.Pid}}' "$SW_GW_CT" || true)
        SW_MD_PID=$(timeout 10 docker inspect -f '{{.State.Pid}}' "$SW_MD_CT" || true)
        [[ $SW_GW_PID =~ ^[1-9][0-9]*$ ]] && SW_GROUPS+=("swarm-gateway=$SW_GW_PID")
        if [[ $SW_MD_PID =~ ^[1-9][0-9]*$ ]]; then
            SW_MD_KIDS=$(children "$SW_MD_PID" | paste -sd, -)
            SW_GROUPS+=("swarm-replica=$SW_MD_PID${SW_MD_KIDS:+,$SW_MD_KIDS}")
        fi
        if SW_GW_IP=$(gwbridge_ip "$SW_GW_CT") && SW_MD_IP=$(gwbridge_ip "$SW_MD_CT"); then
            SW_BRIDGE_URL=http://$SW_GW_IP:8080/function/markdown
            SW_REPLICA_URL=http://$SW_MD_IP:8080/
            if curl -fsS --max-time 5 --data-binary "$MD_BODY" "$SW_BRIDGE_URL" >/dev/null 2>&1 &&
                curl -fsS --max-time 5 --data-binary "$MD_BODY" "$SW_REPLICA_URL" >/dev/null 2>&1; then
                check_response "$SW_BRIDGE_URL" "$MD_BODY" "$MD_HTML"
                check_response "$SW_REPLICA_URL" "$MD_BODY" "$MD_HTML"
                SWARM_PARTS=1
            fi
        fi
    fi
    DOCKER_PROXY_PID=$(ss -Hltnp 'sport = :8080' 2>/dev/null |
        awk '$4 ~ /^(0\.0\.0\.0|127\.0\.0\.1):8080$/' | grep -o 'docker-proxy",pid=[0-9]*' | head -n1 | cut -d= -f2 || true)
    [[ -n $DOCKER_PROXY_PID ]] && SW_GROUPS+=("docker-proxy=$DOCKER_PROXY_PID")
    ((SWARM_PARTS)) || log "Swarm stack: cannot reach its containers over docker_gwbridge; measuring $SWARM_URL only"
fi

# Labels and URLs per connection count, interleaved like section 2.
for c in 1 32; do
    S4_LABELS=(replica gateway nginx-gw)
    S4_URLS=("$REPLICA_URL" "$GW_URL" "$NGINX_GW_URL")
    if ((SWARM)); then
        S4_LABELS+=(swarm)
        S4_URLS+=("$SWARM_URL/function/markdown")
        # The parts of the Swarm path: 1 connection only (latency), for time.
        if ((SWARM_PARTS && c == 1)); then
            S4_LABELS+=(swarm-bridge swarm-replica)
            S4_URLS+=("$SW_BRIDGE_URL" "$SW_REPLICA_URL")
        fi
    fi
    for i in "${!S4_URLS[@]}"; do wrk_warmup "$c" "${S4_URLS[i]}" "$MD_LUA"; done
    for ((r = 1; r <= REPEAT; r++)); do
        for i in "${!S4_LABELS[@]}"; do
            l=${S4_LABELS[i]}-c$c
            if ((c == 1)); then
                wrk_run "$l" "$r" "$c" "${S4_URLS[i]}" "$MD_LUA"
                continue
            fi
            case ${S4_LABELS[i]} in
            replica) wrk_run_cpu "$l" "$r" "$c" "${S4_URLS[i]}" "$MD_LUA" "$REPLICA_GROUP" ;;
            gateway) wrk_run_cpu "$l" "$r" "$c" "${S4_URLS[i]}" "$MD_LUA" "gateway=$GW_PID" "$REPLICA_GROUP" ;;
            nginx-gw) wrk_run_cpu "$l" "$r" "$c" "${S4_URLS[i]}" "$MD_LUA" "nginx=$NGINX_GW_WORKER" "$REPLICA_GROUP" ;;
            swarm) wrk_run_cpu "$l" "$r" "$c" "${S4_URLS[i]}" "$MD_LUA" "${SW_GROUPS[@]}" ;;
            esac
        done
    done
done
# The replica and nginx's worker must be the ones measured from start to end.
if ! alive "$REPLICA_WD" || ! alive "$REPLICA_MD"; then die "the gateway's replica died during the runs"; fi
[[ $(children "$GW_PID") == "$REPLICA_WD" ]] || die "the gateway restarted its replica during the runs"

RUN_CPU_1=$(cpu_snapshot)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
RUN_STEAL=$(cpu_percent "$RUN_CPU_0" "$RUN_CPU_1" 3)

# Stop the servers now, so the report is written with the machine quiet.
stop_pids "${PIDS[@]}"
((${#CHILD_PIDS[@]})) && stop_pids "${CHILD_PIDS[@]}"
PIDS=()
CHILD_PIDS=()
ELAPSED=$(($(date +%s) - START))

# --- report -------------------------------------------------------------------------
log "writing $RESULTS"

MIB=$((1024 * 1024))
us() { calc '%.0f' "$1"; }
k() { calc '%.0f' "$1"; }

R1_RAW=$(med raw-t1 3)
R1_WD=$(med fork-c1 3)
R1_RATIO=$(calc '%.2f' "$(paired fork-c1 raw-t1 3 ratio)")
R8_RAW=$(med raw-t8 6)
R8_WD=$(med fork-c8 6)
R8_RATIO=$(calc '%.2f' "$(paired fork-c8 raw-t8 6 ratio)")

D1=$(med direct-c1 3)
W1=$(med fwatchdog-c1 3)
N1=$(med nginx-c1 3)
W_ADD=$(calc '%.1f' "$(paired fwatchdog-c1 direct-c1 3 diff)")
N_ADD=$(calc '%.1f' "$(paired nginx-c1 direct-c1 3 diff)")
D32=$(med direct-c32 6)
W32=$(med fwatchdog-c32 6)
N32=$(med nginx-c32 6)
T_RATIO=$(calc '%.2f' "$(paired fwatchdog-c32 nginx-c32 6 ratio)")

# rawspawn rows count failed spawns there; any would have stopped the run.
HTTP_ERRORS=$(awk -F'\t' 'NR > 1 { s += $7 } END { print s + 0 }' "$TSV")

STREAM_MIBS=$(calc '%.0f' "$STREAM_BYTES / $MIB / $STREAM_TIME")
PIPE_MIBS=$(calc '%.0f' "$STREAM_BYTES / $MIB / $PIPE_TIME")
STREAM_GROWTH=$((STREAM_HWM_AFTER - STREAM_RSS_BEFORE))

# Verdicts: "met", or "missed (by how much)".
V_R1=$(verdict "$R1_RATIO <= 1.25" "by $(calc '%.0f' "$R1_WD - 1.25 * $R1_RAW") µs over 1.25× = $(calc '%.0f' "1.25 * $R1_RAW") µs")
V_R8=$(verdict "$R8_RATIO >= 0.8" "by $(calc '%.0f' "0.8 * $R8_RAW - $R8_WD")/s under 0.8× = $(calc '%.0f' "0.8 * $R8_RAW")/s")
V_WADD=$(verdict "$W_ADD <= 40" "by $(calc '%.1f' "$W_ADD - 40") µs")
V_T32=$(verdict "$T_RATIO >= 1.0" "by $(calc '%.0f' "100 * (1 - $T_RATIO)")%")
# Issue 16's targets against nginx: added p50 at 1 connection, p99 and
# CPU per call (the proxy's own process) at 32.
W_VS_N1=$(calc '%.1f' "$(paired fwatchdog-c1 nginx-c1 3 diff)")
W_P99=$(med fwatchdog-c32 5)
N_P99=$(med nginx-c32 5)
W_P99_RATIO=$(calc '%.2f' "$(paired fwatchdog-c32 nginx-c32 5 ratio)")
W_CPU=$(benchstat median "$PROXY_CPU_TSV" fwatchdog-c32 3)
N_CPU=$(benchstat median "$PROXY_CPU_TSV" nginx-c32 3)
W_CPU_RATIO=$(calc '%.2f' "$(benchstat paired "$PROXY_CPU_TSV" fwatchdog-c32 nginx-c32 3 ratio)")
V_WVSN=$(verdict "$W_VS_N1 <= 0" "by $W_VS_N1 µs")
V_WP99=$(verdict "$W_P99_RATIO <= 1.0" "by $(calc '%.0f' "100 * ($W_P99_RATIO - 1)")%")
V_WCPU=$(verdict "$W_CPU_RATIO <= 1.0" "by $(calc '%.0f' "100 * ($W_CPU_RATIO - 1)")%")
V_RSS0=$(verdict "$FOOT_RSS_START <= 4096" "by $(calc '%.2f' "($FOOT_RSS_START - 4096) / 1024") MiB")
V_RSS1=$(verdict "$FOOT_RSS_IDLE <= 4096" "by $(calc '%.2f' "($FOOT_RSS_IDLE - 4096) / 1024") MiB")
V_RSS2=$(verdict "$FORK_RSS_LOADED <= 4096" "by $(calc '%.2f' "($FORK_RSS_LOADED - 4096) / 1024") MiB")
V_RSS3=$(verdict "$HTTP_RSS_LOADED <= 4096" "by $(calc '%.2f' "($HTTP_RSS_LOADED - 4096) / 1024") MiB")
V_BIN=$(verdict "$BIN_SIZE <= 3 * $MIB" "by $(calc '%.2f' "($BIN_SIZE - 3 * $MIB) / $MIB") MiB")
V_BIN2=$(verdict "$BIN_STRIPPED_SIZE <= 3 * $MIB" "by $(calc '%.2f' "($BIN_STRIPPED_SIZE - 3 * $MIB) / $MIB") MiB")
V_STREAM=$(verdict "$STREAM_GROWTH <= 4096" "by $(calc '%.2f' "($STREAM_GROWTH - 4096) / 1024") MiB")
if ((PIN)); then
    P1_RAW=$(med raw-t1-pinned 3)
    P1_WD=$(med fork-c1-pinned 3)
    P1_RATIO=$(calc '%.2f' "$(paired fork-c1-pinned raw-t1-pinned 3 ratio)")
    P8_RAW=$(med raw-t8-pinned 6)
    P8_WD=$(med fork-c8-pinned 6)
    P8_RATIO=$(calc '%.2f' "$(paired fork-c8-pinned raw-t8-pinned 6 ratio)")
    V_P1=$(verdict "$P1_RATIO <= 1.25" "by $(calc '%.0f' "$P1_WD - 1.25 * $P1_RAW") µs over 1.25× = $(calc '%.0f' "1.25 * $P1_RAW") µs")
    V_P8=$(verdict "$P8_RATIO >= 0.8" "by $(calc '%.0f' "0.8 * $P8_RAW - $P8_WD")/s under 0.8× = $(calc '%.0f' "0.8 * $P8_RAW")/s")
fi

# 4. gateway
G_R1=$(med replica-c1 3)
G_G1=$(med gateway-c1 3)
G_N1=$(med nginx-gw-c1 3)
G_ADD=$(calc '%.1f' "$(paired gateway-c1 replica-c1 3 diff)")
GN_ADD=$(calc '%.1f' "$(paired nginx-gw-c1 replica-c1 3 diff)")
G_G32=$(med gateway-c32 6)
G_N32=$(med nginx-gw-c32 6)
G_R32=$(med replica-c32 6)
G_T_RATIO=$(calc '%.2f' "$(paired gateway-c32 nginx-gw-c32 6 ratio)")
G_P99_G=$(med gateway-c32 5)
G_P99_N=$(med nginx-gw-c32 5)
G_P99_RATIO=$(calc '%.2f' "$(paired gateway-c32 nginx-gw-c32 5 ratio)")
G_P99_DIFF=$(calc '%.0f' "$(paired gateway-c32 nginx-gw-c32 5 diff)")
V_GADD=$(verdict "$G_ADD <= 50" "by $(calc '%.1f' "$G_ADD - 50") µs")
V_GT=$(verdict "$G_T_RATIO >= 1.0" "by $(calc '%.0f' "100 * (1 - $G_T_RATIO)")%")
V_GP99=$(verdict "$G_P99_RATIO <= 1.0" "by $G_P99_DIFF µs, +$(calc '%.0f' "100 * ($G_P99_RATIO - 1)")%")
G_VS_N1=$(calc '%.1f' "$(paired gateway-c1 nginx-gw-c1 3 diff)")
G_CPU=$(benchstat median "$PROXY_CPU_TSV" gateway-c32 3)
GN_CPU=$(benchstat median "$PROXY_CPU_TSV" nginx-gw-c32 3)
G_CPU_RATIO=$(calc '%.2f' "$(benchstat paired "$PROXY_CPU_TSV" gateway-c32 nginx-gw-c32 3 ratio)")
V_GVSN=$(verdict "$G_VS_N1 <= 0" "by $G_VS_N1 µs")
V_GCPU=$(verdict "$G_CPU_RATIO <= 1.0" "by $(calc '%.0f' "100 * ($G_CPU_RATIO - 1)")%")
# cpu LABEL PROCESS: "median µs (min–max)" of the CPU per request, or "–".
cpu() { benchstat summary "$CPU_TSV" "$1" "$2" 4; }
if ((SWARM)); then
    S_1=$(med swarm-c1 3)
    S_VS_G1=$(calc '%+.0f' "$(paired swarm-c1 gateway-c1 3 diff)")
    S_32=$(med swarm-c32 6)
    S_T_VS_G=$(calc '%.2f' "$(paired swarm-c32 gateway-c32 6 ratio)")
    S_T_VS_N=$(calc '%.2f' "$(paired swarm-c32 nginx-gw-c32 6 ratio)")
    S_P99=$(med swarm-c32 5)
    S_P99_VS_G=$(calc '%.2f' "$(paired swarm-c32 gateway-c32 5 ratio)")
    S_P99_VS_N=$(calc '%.2f' "$(paired swarm-c32 nginx-gw-c32 5 ratio)")
    if ((SWARM_PARTS)); then
        S_ADD=$(calc '%.1f' "$(paired swarm-c1 swarm-replica-c1 3 diff)")
        S_DP=$(calc '%.1f' "$(paired swarm-c1 swarm-bridge-c1 3 diff)")
        S_GWOV=$(calc '%.1f' "$(paired swarm-bridge-c1 swarm-replica-c1 3 diff)")
        S_REPL_VS_LOCAL=$(calc '%+.1f' "$(paired swarm-replica-c1 replica-c1 3 diff)")
    fi
fi

{
    cat <<EOF
# faas benchmark results: fwatchdog and the gateway

Produced by \`./bench/run.sh\` (or \`./build.sh bench\`) on $(date -u '+%Y-%m-%d %H:%M UTC'), in ${ELAPSED} s.
Raw outputs: \`bench/out/\` (gitignored): one file per run in \`raw/\`, all rows in
\`results.tsv\`, the exact command lines in \`commands.log\`, server logs in \`logs/\`.
Where fwatchdog and the gateway spend their time, and what could close the gaps: \`bench/ANALYSIS.md\`
(hand-written from profiling; not regenerated by this script).

## Summary

| target | measured | result |
|---|---|---|
| fork mode p50 at 1 connection ≤ 1.25 × rawspawn p50 | ${R1_RATIO}× | $V_R1 |
| fork mode throughput at 8 connections ≥ 0.8 × rawspawn | ${R8_RATIO}× | $V_R8 |
| http mode adds ≤ 40 µs p50 at 1 connection (nginx adds +${N_ADD} µs) | +${W_ADD} µs | $V_WADD |
| http mode throughput at 32 connections ≥ nginx | ${T_RATIO}× | $V_T32 |
| http mode added p50 at 1 connection ≤ nginx's | $(calc '%+.1f' "$W_VS_N1") µs vs nginx | $V_WVSN |
| http mode p99 at 32 connections ≤ nginx | ${W_P99_RATIO}× ($(us "$W_P99") vs $(us "$N_P99") µs) | $V_WP99 |
| http mode CPU per call at 32 connections ≤ nginx's worker | ${W_CPU_RATIO}× ($W_CPU vs $N_CPU µs) | $V_WCPU |
| idle RSS ≤ 4 MiB (after 1000 requests) | $(calc '%.2f' "$FOOT_RSS_IDLE / 1024") MiB | $V_RSS1 |
| static binary ≤ 3 MiB | $(calc '%.2f' "$BIN_SIZE / $MIB") MiB | $V_BIN |
| stream mode, 1 GiB body: memory growth a few MiB (≤ 4 MiB) | $(calc '%.2f' "$STREAM_GROWTH / 1024") MiB | $V_STREAM |
EOF
    if ((PIN)); then
        cat <<EOF
| pinned: fork mode p50 at 1 connection ≤ 1.25× | ${P1_RATIO}× | $V_P1 |
| pinned: fork mode throughput at 8 connections ≥ 0.8× | ${P8_RATIO}× | $V_P8 |
EOF
    fi
    cat <<EOF
| gateway adds ≤ 50 µs p50 at 1 connection over direct (nginx adds +${GN_ADD} µs) | +${G_ADD} µs | $V_GADD |
| gateway throughput at 32 connections ≥ nginx | ${G_T_RATIO}× | $V_GT |
| gateway p99 at 32 connections ≤ nginx | ${G_P99_RATIO}× ($(us "$G_P99_G") vs $(us "$G_P99_N") µs) | $V_GP99 |
| gateway added p50 at 1 connection ≤ nginx's | $(calc '%+.1f' "$G_VS_N1") µs vs nginx | $V_GVSN |
| gateway CPU per call at 32 connections ≤ nginx's worker | ${G_CPU_RATIO}× ($G_CPU vs $GN_CPU µs) | $V_GCPU |
EOF
    if ((SWARM)); then
        cat <<EOF
| Swarm stack (no target): p50 at 1 connection; rate and p99 at 32 | $(us "$S_1") µs; $(k "$S_32")/s, $(us "$S_P99") µs | recorded |
EOF
    else
        cat <<EOF
| Swarm stack (no target) | not measured: $SWARM_NOTE | – |
EOF
    fi
    cat <<EOF

## Machine

| | |
|---|---|
| CPUs (nproc) | $NPROC |
| CPU model | $(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2; exit }') |
| Hypervisor | $(lscpu | awk -F: '/^Hypervisor vendor/ { gsub(/^ +/, "", $2); print $2; exit }' | grep . || echo none) |
| Memory | $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) |
| Kernel | $(uname -srm) |
| OS | $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release) |
| Rust | $(rustc --version) |
| Source | $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" status --porcelain -- watchdog gateway common sample-functions/markdown 2>/dev/null | grep -q . && echo " plus uncommitted changes in watchdog/, gateway/, common/ or sample-functions/markdown/") |
| Build | \`${BUILD_CMD[*]}\`, then \`${BUILD_GW_CMD[*]}\` |
| wrk | $(wrk -v 2>&1 | head -n1 | awk '{ print $1, $2 }') |
| nginx | $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') |
| busybox | $("$BUSYBOX" 2>&1 | head -n1 | awk '{ print $1, $2 }') (static) |
| Background load | ${QUIET_BUSY}% of all CPUs busy during the 2 s before the run; load average ${LOAD_START} at the start, ${LOAD_END} at the end |
| Steal time | ${RUN_STEAL}% of CPU time during the run (hypervisor) |

## Method

- Every figure is the **median of $REPEAT runs** of ${DURATION} s (range over the runs in
  parentheses). Runs of the reference and of the system under test are interleaved
  (A, B, A, B, …) so a slow phase of the machine hits both; each server got a
  ${WARMUP} s wrk warm-up first, rawspawn a 1 s warm-up inside each run.
- Ratios and differences (and so the verdicts) are **paired**: each run is compared
  with the reference run of the same repetition, right before or after it, and the
  median of those $REPEAT ratios is reported. This is more robust to other load on
  the machine than a ratio of medians, which can pair runs from different moments.
- Latency percentiles come from \`wrk --latency\` (units us/ms/s converted to µs);
  rawspawn sorts its own per-spawn samples. wrk always runs with **one thread**
  (\`-t1\`) and HTTP/1.1 keep-alive; one wrk thread is enough for these rates and
  leaves more of the second core to the server.
- **The load generator shares the machine.** With $NPROC CPUs, wrk competes for the
  same cores as fwatchdog, its children and the upstream, while rawspawn needs no
  load generator at all. The main tables report that honestly, as measured.
  Section 1 is also run pinned (\`taskset\`): fwatchdog (with the children it
  forks) and rawspawn each get CPU 0 alone, wrk gets CPU 1, so both sides spend
  the same single core and the comparison is of CPU work per spawn.
  Sections 2 and 4 are not pinned: proxy, upstream and wrk would have to share
  cores either way, and nginx and the system under test see exactly the same
  conditions.
- Bodies: fork mode posts \`hello world\\n\` (12 bytes; rawspawn writes the same to
  \`$BUSYBOX cat\`); http mode posts \`# Hello\\n\\nSome *text*.\\n\` to the
  \`markdown\` sample function, which answers \`<h1>Hello</h1>…\`. Every response was
  checked once before the load; non-2xx answers and socket errors over all wrk
  runs: **$HTTP_ERRORS**.
- fwatchdog runs with \`bind_address=127.0.0.1 healthcheck_interval=0s\`, its own
  \`TMPDIR\`, default \`RUST_LOG\` (info: no per-request logs). nginx uses
  \`bench/nginx.conf\`: \`worker_processes 1\`, upstream \`keepalive 64\`,
  \`proxy_http_version 1.1\`, \`proxy_set_header Connection ""\`, \`access_log off\`,
  and \`keepalive_requests 1000000\` on both sides so that, like hyper, it never
  closes a keep-alive connection during a run.
- The gateway (section 4) runs \`--provider process\` with \`RUST_LOG=warn\`
  and a stack file of one function, written to \`bench/out/gateway/stack.yml\`:

  \`\`\`yaml
$(sed 's/^/  /' "$GW_STACK")
  \`\`\`

  Its replica inherits \`RUST_LOG=warn\` and gets \`healthcheck_interval=0s\`
  from the provider.

## 1. fork mode vs the physical limit (rawspawn)

fwatchdog \`mode=fork fprocess="$BUSYBOX cat"\` driven by wrk, against
\`rawspawn\` spawning the same static cat with stdin/stdout/stderr piped, writing
the same body, reading stdout to EOF and waiting, in a loop, no HTTP at all.

| measurement | fwatchdog | reference (rawspawn) | ratio (paired median) | target | result |
|---|---|---|---|---|---|
| p50 latency, 1 connection (\`wrk -t1 -c1\`) vs \`--threads 1\` | $(us "$R1_WD") µs ($(spread fork-c1 3)) | $(us "$R1_RAW") µs ($(spread raw-t1 3)) | ${R1_RATIO}× | ≤ 1.25× | $V_R1 |
| throughput, 8 connections (\`wrk -t1 -c8\`) vs \`--threads 8\` | $(k "$R8_WD")/s ($(spread fork-c8 6)) | $(k "$R8_RAW")/s ($(spread raw-t8 6)) | ${R8_RATIO}× | ≥ 0.8× | $V_R8 |

Other percentiles (medians, µs):

| run | p50 | p90 | p99 | rate/s |
|---|---|---|---|---|
EOF
    for l in raw-t1 fork-c1 raw-t8 fork-c8; do
        printf '| %s | %s | %s | %s | %s |\n' "$l" "$(us "$(med "$l" 3)")" "$(us "$(med "$l" 4)")" \
            "$(us "$(med "$l" 5)")" "$(k "$(med "$l" 6)")"
    done
    if ((PIN)); then
        cat <<EOF

Pinned (fwatchdog and its children, or rawspawn, on CPU 0; wrk on CPU 1):

| measurement | fwatchdog | reference (rawspawn) | ratio (paired median) | target | result |
|---|---|---|---|---|---|
| p50 latency, 1 connection | $(us "$P1_WD") µs ($(spread fork-c1-pinned 3)) | $(us "$P1_RAW") µs ($(spread raw-t1-pinned 3)) | ${P1_RATIO}× | ≤ 1.25× | $V_P1 |
| throughput, 8 connections | $(k "$P8_WD")/s ($(spread fork-c8-pinned 6)) | $(k "$P8_RAW")/s ($(spread raw-t8-pinned 6)) | ${P8_RATIO}× | ≥ 0.8× | $V_P8 |
EOF
    fi
    cat <<EOF

## 2. http mode vs a direct call and vs nginx

The same \`markdown\` upstream process (started by the http-mode fwatchdog, port
$P_MD) is called directly, through fwatchdog \`mode=http\`, and through nginx.

| measurement | fwatchdog (added: paired median) | reference | ratio / difference (paired median) | target | result |
|---|---|---|---|---|---|
| added p50 latency, 1 connection | +$W_ADD µs ($(us "$W1") µs vs direct $(us "$D1") µs) | nginx: +$N_ADD µs ($(us "$N1") µs) | $(calc '%+.1f' "$W_ADD - $N_ADD") µs vs nginx | ≤ 40 µs | $V_WADD |
| added p50 latency, 1 connection, vs nginx's | $(calc '%+.1f' "$W_VS_N1") µs (paired p50 difference) | nginx | | ≤ nginx's | $V_WVSN |
| throughput, 32 connections (\`wrk -t1 -c32\`) | $(k "$W32")/s ($(spread fwatchdog-c32 6)) | nginx: $(k "$N32")/s ($(spread nginx-c32 6)) | ${T_RATIO}× nginx | ≥ 1.0× nginx | $V_T32 |
| p99 latency, 32 connections | $(us "$W_P99") µs ($(spread fwatchdog-c32 5)) | nginx: $(us "$N_P99") µs ($(spread nginx-c32 5)) | ${W_P99_RATIO}× nginx | ≤ 1.0× nginx | $V_WP99 |
| CPU per call, 32 connections (the proxy's process: fwatchdog's threads; nginx's worker) | $W_CPU µs ($(benchstat spread "$PROXY_CPU_TSV" fwatchdog-c32 3)) | nginx: $N_CPU µs ($(benchstat spread "$PROXY_CPU_TSV" nginx-c32 3)) | ${W_CPU_RATIO}× nginx | ≤ 1.0× nginx | $V_WCPU |

All runs (medians):

| run | p50 µs | p90 µs | p99 µs | rate/s | p50 range µs | rate range/s |
|---|---|---|---|---|---|---|
EOF
    for l in direct-c1 fwatchdog-c1 nginx-c1 direct-c32 fwatchdog-c32 nginx-c32; do
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$l" "$(us "$(med "$l" 3)")" "$(us "$(med "$l" 4)")" \
            "$(us "$(med "$l" 5)")" "$(k "$(med "$l" 6)")" "$(spread "$l" 3)" "$(spread "$l" 6)"
    done
    cat <<EOF

Direct at 32 connections, $(k "$D32")/s, is the upstream's own ceiling on this machine
with wrk beside it; a proxy adds a hop that needs CPU from the same two cores.

## 3. Footprint

| measurement | value | target | result |
|---|---|---|---|
| idle RSS, fresh \`mode=fork\` instance, 1 s after start | $(calc '%.2f' "$FOOT_RSS_START / 1024") MiB | ≤ 4 MiB | $V_RSS0 |
| idle RSS, same instance after 1000 requests + 2 s idle | $(calc '%.2f' "$FOOT_RSS_IDLE / 1024") MiB (VmHWM $(calc '%.2f' "$FOOT_HWM / 1024") MiB) | ≤ 4 MiB | $V_RSS1 |
| idle RSS, the section-1 fork instance after all its load + 2 s | $(calc '%.2f' "$FORK_RSS_LOADED / 1024") MiB | ≤ 4 MiB | $V_RSS2 |
| idle RSS, the section-2 http instance after all its load + 2 s | $(calc '%.2f' "$HTTP_RSS_LOADED / 1024") MiB | ≤ 4 MiB | $V_RSS3 |
| binary size, \`fwatchdog\` as built (static, release profile \`strip = true\`) | $(calc '%.2f' "$BIN_SIZE / $MIB") MiB ($BIN_SIZE bytes) | ≤ 3 MiB | $V_BIN |
| binary size after \`strip\` again | $(calc '%.2f' "$BIN_STRIPPED_SIZE / $MIB") MiB ($BIN_STRIPPED_SIZE bytes) | ≤ 3 MiB | $V_BIN2 |

\`file\`: $BIN_FILE

Stream mode (\`mode=stream fprocess="$BUSYBOX cat"\`), a 1 GiB body sent chunked
by curl from \`head -c 1G /dev/zero\`, all of it echoed back (checked: $STREAM_SIZE bytes):

| measurement | value | target | result |
|---|---|---|---|
| VmRSS before / VmHWM before | $(calc '%.2f' "$STREAM_RSS_BEFORE / 1024") / $(calc '%.2f' "$STREAM_HWM_BEFORE / 1024") MiB | | |
| VmHWM after | $(calc '%.2f' "$STREAM_HWM_AFTER / 1024") MiB | | |
| growth (VmHWM after − VmRSS before) | $(calc '%.2f' "$STREAM_GROWTH / 1024") MiB | ≤ 4 MiB | $V_STREAM |
| highest VmRSS sampled every 20 ms during the request | $(calc '%.2f' "$STREAM_RSS_SAMPLED / 1024") MiB | | |
| VmRSS after | $(calc '%.2f' "$STREAM_RSS_AFTER / 1024") MiB | | |
| throughput, 1 GiB in and 1 GiB out | $STREAM_MIBS MiB/s ($(calc '%.2f' "$STREAM_TIME") s) | | |
| reference: \`head -c 1G /dev/zero \| busybox cat >/dev/null\` | $PIPE_MIBS MiB/s ($PIPE_TIME s) | | |

fwatchdog resets its own peak-RSS counter (\`/proc/self/clear_refs\`) at every
spawn so that children's \`X-Max-Rss-Bytes\` is accurate; "VmHWM after" therefore
covers the streamed request itself, which is what the growth line needs. The
throughput includes curl and head, which run on the same two cores.

## 4. The gateway vs a direct call and vs nginx

\`gateway --provider process\` (release build, \`RUST_LOG=warn\`) runs one
replica of the \`markdown\` function from a generated stack file
(\`fprocess: $MARKDOWN\`, \`mode: http\`): an fwatchdog ($REPLICA_EXE, port
$REPLICA_PORT) proxying to its own markdown. That replica is called directly,
through the gateway (\`POST /function/markdown\`), and through a second nginx
(\`bench/nginx.conf\`: one worker, keep-alive upstream) in front of the same
port. "Direct" here is therefore the watchdog and markdown together, unlike
section 2's direct call to markdown alone.

| measurement | gateway | reference | ratio / difference (paired median) | target | result |
|---|---|---|---|---|---|
| added p50 latency, 1 connection | +$G_ADD µs ($(us "$G_G1") µs vs direct $(us "$G_R1") µs) | nginx: +$GN_ADD µs ($(us "$G_N1") µs) | $(calc '%+.1f' "$G_ADD - $GN_ADD") µs vs nginx | ≤ 50 µs over direct | $V_GADD |
| throughput, 32 connections (\`wrk -t1 -c32\`) | $(k "$G_G32")/s ($(spread gateway-c32 6)) | nginx: $(k "$G_N32")/s ($(spread nginx-gw-c32 6)) | ${G_T_RATIO}× nginx | ≥ 1.0× nginx | $V_GT |
| p99 latency, 32 connections | $(us "$G_P99_G") µs ($(spread gateway-c32 5)) | nginx: $(us "$G_P99_N") µs ($(spread nginx-gw-c32 5)) | ${G_P99_RATIO}× nginx ($(calc '%+.0f' "$G_P99_DIFF") µs) | ≤ 1.0× nginx | $V_GP99 |
| added p50 latency, 1 connection, vs nginx's | $(calc '%+.1f' "$G_VS_N1") µs (paired p50 difference) | nginx | | ≤ nginx's | $V_GVSN |
| CPU per call, 32 connections (the gateway; nginx's worker) | $G_CPU µs ($(benchstat spread "$PROXY_CPU_TSV" gateway-c32 3)) | nginx: $GN_CPU µs ($(benchstat spread "$PROXY_CPU_TSV" nginx-gw-c32 3)) | ${G_CPU_RATIO}× nginx | ≤ 1.0× nginx | $V_GCPU |

CPU time per request during the 32-connection runs (utime + stime of all the
process's threads from \`/proc/PID/stat\`, before and after each run, divided
by wrk's request count; median and range over the runs):

| process | during \`replica-c32\` | during \`gateway-c32\` | during \`nginx-gw-c32\` |
|---|---|---|---|
| the proxy (gateway; nginx's worker) | | $(cpu gateway-c32 gateway) | $(cpu nginx-gw-c32 nginx) |
| the replica (fwatchdog + markdown) | $(cpu replica-c32 replica) | $(cpu gateway-c32 replica) | $(cpu nginx-gw-c32 replica) |

All runs (medians):

| run | p50 µs | p90 µs | p99 µs | rate/s | p50 range µs | rate range/s |
|---|---|---|---|---|---|---|
EOF
    S4_ALL=(replica-c1 gateway-c1 nginx-gw-c1 swarm-c1 swarm-bridge-c1 swarm-replica-c1
        replica-c32 gateway-c32 nginx-gw-c32 swarm-c32)
    for l in "${S4_ALL[@]}"; do
        grep -q "^$l"$'\t' "$TSV" || continue
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$l" "$(us "$(med "$l" 3)")" "$(us "$(med "$l" 4)")" \
            "$(us "$(med "$l" 5)")" "$(k "$(med "$l" 6)")" "$(spread "$l" 3)" "$(spread "$l" 6)"
    done
    cat <<EOF

Direct at 32 connections, $(k "$G_R32")/s, is the replica's own ceiling here with
wrk beside it; either proxy adds a hop that needs CPU from the same two cores.

### The Swarm stack

EOF
    if ((SWARM)); then
        cat <<EOF
The same load against the stack deployed by \`./build.sh up\`, in the same
repetitions as the table above (so the comparisons are paired):
\`$SWARM_URL/function/markdown\`. That port is published in \`host\` mode, so a
call goes wrk → Docker's userland proxy (\`docker-proxy\`, which relays
loopback connections) → the gateway container → the \`functions\` overlay →
the markdown task (fwatchdog + markdown). No target; recorded for comparison.

| measurement | Swarm stack | process-provider gateway | Swarm vs process (paired median) |
|---|---|---|---|
| p50 latency, 1 connection | $(us "$S_1") µs ($(spread swarm-c1 3)) | $(us "$G_G1") µs | $S_VS_G1 µs |
| throughput, 32 connections | $(k "$S_32")/s ($(spread swarm-c32 6)) | $(k "$G_G32")/s | ${S_T_VS_G}× (${S_T_VS_N}× nginx) |
| p99 latency, 32 connections | $(us "$S_P99") µs ($(spread swarm-c32 5)) | $(us "$G_P99_G") µs | ${S_P99_VS_G}× (${S_P99_VS_N}× nginx) |
EOF
        if ((SWARM_PARTS)); then
            cat <<EOF

Where the Swarm path's latency goes, 1 connection (each container also sits
on \`docker_gwbridge\`, which the host can reach directly): the gateway
container at $SW_BRIDGE_URL skips docker-proxy; the markdown task at
$SW_REPLICA_URL skips the gateway and the overlay.

| part (paired median of p50 differences) | added p50 |
|---|---|
| whole Swarm path over a direct call to its task (\`swarm-c1\` − \`swarm-replica-c1\`) | +$S_ADD µs |
| docker-proxy (\`swarm-c1\` − \`swarm-bridge-c1\`) | +$S_DP µs |
| gateway container and overlay hop (\`swarm-bridge-c1\` − \`swarm-replica-c1\`) | +$S_GWOV µs |
| for comparison: the process-provider gateway on loopback (\`gateway-c1\` − \`replica-c1\`) | +$G_ADD µs |
| for comparison: the Swarm task over docker_gwbridge vs the local replica on loopback | $S_REPL_VS_LOCAL µs |
EOF
        fi
        if ((${#SW_GROUPS[@]})); then
            cat <<EOF

CPU time per request during \`swarm-c32\` (as above):

| process | CPU per request |
|---|---|
EOF
            for w in "${SW_GROUPS[@]}"; do
                printf '| %s | %s |\n' "${w%%=*}" "$(cpu swarm-c32 "${w%%=*}")"
            done
        fi
    else
        cat <<EOF
Not measured: the stack is $SWARM_NOTE. \`./build.sh up\` deploys it (this
script never does); run the benchmark again once it answers.
EOF
    fi
    cat <<EOF

## Commands

Exactly as run (shell-quoted; the repetitions repeat the same line):

\`\`\`
EOF
    for label in "server fork" "server fork-pinned" "server http" "server nginx" \
        raw-t1 fork-c1 raw-t8 fork-c8 raw-t1-pinned fork-c1-pinned raw-t8-pinned fork-c8-pinned \
        direct-c1 fwatchdog-c1 nginx-c1 direct-c32 fwatchdog-c32 nginx-c32 \
        "server footprint" "1000 requests" "server stream" "stream 1 GiB" "stream reference" \
        "server gateway" "server nginx-gateway" "${S4_ALL[@]}"; do
        [[ -n ${CMDS[$label]:-} ]] && printf '# %s\n%s\n' "$label" "${CMDS[$label]}"
    done
    cat <<EOF
\`\`\`

Paths: \`$TARGET_DIR\` is the cargo target directory, \`$OUT\` is \`bench/out\`.

## How to reproduce

\`\`\`
./bench/run.sh          # or: ./build.sh bench
\`\`\`

It installs wrk, nginx-light and busybox-static with apt when missing, builds
the release binaries with \`cargo build --release --locked\`, runs everything
above (about 8 minutes) and rewrites this file. \`BENCH_DURATION\`,
\`BENCH_WARMUP\`, \`BENCH_REPEAT\`, \`BENCH_PORT_BASE\` and \`BENCH_PIN=0\` adjust it.
The Swarm rows need the stack (\`./build.sh up\`); without it they are skipped
and the section says so.
EOF
} >"$RESULTS"

# Sections 5 to 10 are scripts of their own, each rewriting its section of
# $RESULTS; BENCH_SKIP (section numbers, e.g. "7 8") leaves a section as
# the last run that made it wrote it.
wanted() { [[ " ${BENCH_SKIP:-} " != *" $1 "* ]]; }
# 5. async calls: their own script, which adds its section to $RESULTS.
wanted 5 && BENCH_RESULTS=$RESULTS BENCH_OUT=$OUT BENCH_DURATION=$DURATION "$BENCH/async.sh"
# 6. autoscaling: scale-up time and cold starts (Swarm rows when the stack is up).
wanted 6 && BENCH_RESULTS=$RESULTS BENCH_OUT=$OUT "$BENCH/scaling.sh"
# 7. functions from source: source to first call, the python runner, from zero.
wanted 7 && BENCH_RESULTS=$RESULTS BENCH_OUT=$OUT BENCH_DURATION=$DURATION "$BENCH/source.sh"
# 8. the experiment runner against wrk: its own script, its own section.
wanted 8 && BENCH_RESULTS=$RESULTS BENCH_OUT=$OUT BENCH_DURATION=$DURATION "$BENCH/experiment.sh"
# 9. CoAP and gRPC beside HTTP: its own script, its own section.
wanted 9 && BENCH_RESULTS=$RESULTS BENCH_OUT=$OUT BENCH_DURATION=$DURATION "$BENCH/protocols.sh"
# 10. instructions and system calls per call: its own script, its own section.
wanted 10 && BENCH_RESULTS=$RESULTS BENCH_OUT=$OUT "$BENCH/instructions.sh"

log "done in ${ELAPSED}s: $RESULTS"
