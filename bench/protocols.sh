#!/usr/bin/env bash
# bench/protocols.sh: CoAP and gRPC calls beside HTTP (issue 15).
#
# One release gateway (process provider, --auth none, on 127.0.0.1) with
# one http-mode replica of the markdown sample as a trivial function,
# called by bench/protoload over each protocol in turn, repetitions
# alternating: HTTP/1.1 keep-alive (POST /function/trivial), CoAP (a
# confirmable POST coap://…/trivial per call), gRPC (faas.v1.Functions/Call)
# and tinyFaaS's gRPC service (TinyFaaS/Request). Every client has its own
# connection (or UDP socket) and makes one call at a time; 1 and 32
# clients. The same load generator drives every protocol, so what differs
# is the protocol's path through the gateway.
#
# Targets: each protocol within 1.2x of HTTP's p50 latency and of its
# throughput (paired per repetition, medians).
#
# Writes the section "## 9. CoAP and gRPC beside HTTP" of bench/RESULTS.md.
# About 2 minutes. Knobs: BENCH_REPEAT (3), BENCH_DURATION (6),
# BENCH_PROTOCOLS_PORT (29420, then +1 CoAP, +2 gRPC), BENCH_RESULTS,
# BENCH_OUT.
set -euo pipefail

SCRIPT=bench/protocols.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT=${BENCH_OUT:-$BENCH/out}/protocols
REPEAT=${BENCH_REPEAT:-3}
PORT=${BENCH_PROTOCOLS_PORT:-29420}
COAP_PORT=$((PORT + 1))
GRPC_PORT=$((PORT + 2))
TARGET_RATIO=1.2
PROTOCOLS=(http coap grpc tinyfaas)

# What is measured is the source as it is (cargo does nothing when the
# binaries are fresh).
release_build watchdog
release_build gateway markdown protoload

rm -rf "$OUT"
mkdir -p "$OUT/raw" "$OUT/gateway/tmp"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

cat >"$OUT/gateway/stack.yml" <<EOF
functions:
  trivial:
    fprocess: $BIN/markdown
    environment:
      mode: http
    labels:
      faas.scale.max: "1"
EOF
env RUST_LOG=warn TMPDIR="$OUT/gateway/tmp" "$BIN/gateway" --provider process -f "$OUT/gateway/stack.yml" \
    --port "$PORT" --coap-port "$COAP_PORT" --grpc-port "$GRPC_PORT" --bind-address 127.0.0.1 \
    --auth none --state-dir "$OUT/gateway/state" >"$OUT/gateway/log" 2>&1 &
PIDS+=($!)
ready=
for _ in $(seq 1 200); do
    if [[ $(curl -s -m 2 -X POST -d x "http://127.0.0.1:$PORT/function/trivial" || true) == "<p>x</p>"* ]]; then
        ready=1
        break
    fi
    sleep 0.05
done
[[ -n $ready ]] || die "the gateway's function did not answer: $OUT/gateway/log"

addr() {
    case $1 in
        http) echo "127.0.0.1:$PORT" ;;
        coap) echo "127.0.0.1:$COAP_PORT" ;;
        *) echo "127.0.0.1:$GRPC_PORT" ;;
    esac
}

TSV=$OUT/runs.tsv
: >"$TSV"
GW_PID=${PIDS[0]}
# ticks PID: a process's CPU time so far, user + system, in clock ticks.
ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    read -r -a f <<<"$stat"
    echo $((f[11] + f[12]))
}
HZ=$(getconf CLK_TCK)
# load PROTO CLIENTS REP: one protoload run; rate (column 3), p50 (4),
# p99 (5), the gateway's CPU µs per call (6) and the load generator's (7)
# into the TSV as PROTO-cCLIENTS. CPU includes the 1 s warm-up, so per call
# it is divided by the calls of warm-up and run (the run's rate times 1 s
# more).
load() {
    local file=$OUT/raw/$1-c$2.$3.txt proto clients calls rate p50 p90 p99 errors cpu before after made
    before=$(ticks "$GW_PID")
    "$BIN/protoload" "$1" "$(addr "$1")" trivial "$2" "$DURATION" 1 >"$file" 2>"$file.err" ||
        die "protoload $1 failed: $file.err"
    after=$(ticks "$GW_PID")
    read -r proto clients calls _ rate p50 p90 p99 errors cpu <"$file"
    [[ $errors == 0 ]] || die "protoload $1 saw $errors errors: $file.err"
    made=$(benchstat calc '%.0f' "$calls + $rate")
    printf '%s-c%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$rate" "$p50" "$p99" \
        "$(benchstat calc '%.1f' "($after - $before) / $HZ * 1000000 / $made")" \
        "$(benchstat calc '%.1f' "$cpu * 1000000 / $made")" >>"$TSV"
    log "$(printf '%-9s %2s clients rep %s: %8s/s p50 %5s µs p90 %5s µs p99 %5s µs (%s calls)' "$proto" "$clients" "$3" "$rate" "$p50" "$p90" "$p99" "$calls")"
}

log "warming up"
for proto in "${PROTOCOLS[@]}"; do
    "$BIN/protoload" "$proto" "$(addr "$proto")" trivial 8 1 0 >/dev/null
done
for rep in $(seq 1 "$REPEAT"); do
    for clients in 1 32; do
        for proto in "${PROTOCOLS[@]}"; do
            load "$proto" "$clients" "$rep"
        done
    done
done
cat >"$OUT/commands.log" <<EOF
protoload http|coap|grpc|tinyfaas 127.0.0.1:PORT trivial 1|32 $DURATION 1   # http $PORT, coap $COAP_PORT, grpc $GRPC_PORT
EOF

ROWS=
VERDICTS=
CPU_ROWS=
for clients in 1 32; do
    HTTP_RATE=$(benchstat median "$TSV" "http-c$clients" 3)
    HTTP_P50=$(benchstat median "$TSV" "http-c$clients" 4)
    for proto in "${PROTOCOLS[@]}"; do
        rate=$(benchstat median "$TSV" "$proto-c$clients" 3)
        p50=$(benchstat median "$TSV" "$proto-c$clients" 4)
        p99=$(benchstat median "$TSV" "$proto-c$clients" 5)
        gw_cpu=$(benchstat median "$TSV" "$proto-c$clients" 6)
        client_cpu=$(benchstat median "$TSV" "$proto-c$clients" 7)
        CPU_ROWS+="| $proto | $clients | $(benchstat calc '%.0f' "$gw_cpu") | $(benchstat calc '%.0f' "$client_cpu") |"$'\n'
        if [[ $proto == http ]]; then
            ROWS+="| HTTP/1.1 | $clients | $(benchstat calc '%.0f' "$rate") | $(benchstat calc '%.0f' "$p50") | $(benchstat calc '%.0f' "$p99") | | |"$'\n'
            continue
        fi
        lat=$(benchstat paired "$TSV" "$proto-c$clients" "http-c$clients" 4 ratio)
        thr=$(benchstat paired "$TSV" "http-c$clients" "$proto-c$clients" 3 ratio)
        ROWS+="| $proto | $clients | $(benchstat calc '%.0f' "$rate") | $(benchstat calc '%.0f' "$p50") | $(benchstat calc '%.0f' "$p99") | $(benchstat calc '%.2f' "$lat") | $(benchstat calc '%.2f' "$thr") |"$'\n'
        VERDICTS+="| $proto, $clients client(s): p50 ≤ ${TARGET_RATIO}× HTTP's | $(benchstat calc '%.2f' "$lat")× | $(benchstat verdict "$lat <= $TARGET_RATIO") |"$'\n'
        VERDICTS+="| $proto, $clients client(s): throughput ≥ HTTP's / ${TARGET_RATIO} | HTTP / $proto = $(benchstat calc '%.2f' "$thr") | $(benchstat verdict "$thr <= $TARGET_RATIO") |"$'\n'
    done
    : "$HTTP_RATE" "$HTTP_P50"
done
CORES=$(nproc)
CPU_MODEL=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)

{
    cat <<EOF
## 9. CoAP and gRPC beside HTTP

A trivial function (the release gateway, process provider, one
http-mode replica of the markdown sample) called over each protocol by
the same load generator (\`bench/protoload\`, one connection or UDP socket
per client, one call at a time), ${REPEAT} alternating repetitions of
${DURATION} s after 1 s of warm-up; medians. \`coap\` is a confirmable
POST per call (\`coap://…/trivial\`), \`grpc\` is \`faas.v1.Functions/Call\`,
\`tinyfaas\` is tinyFaaS's \`TinyFaaS/Request\`, each client on its own
HTTP/2 connection. Ratios are paired per repetition: p50 against HTTP's,
and HTTP's rate over the protocol's. Machine: ${CORES} × ${CPU_MODEL};
the gateway, its function and the load generator share its cores.

| protocol | clients | calls/s | p50 µs | p99 µs | p50 / HTTP's | HTTP's rate / this |
|---|---:|---:|---:|---:|---:|---:|
${ROWS}
| target | measured | verdict |
|---|---|---|
${VERDICTS}
Where the time goes: CPU per call (user + system, from \`/proc\`, the
warm-up's calls included), of the gateway and of the load generator.
Every call also costs the function (the same for every protocol).

| protocol | clients | gateway µs/call | load generator µs/call |
|---|---:|---:|---:|
${CPU_ROWS}
Commands: \`bench/out/protocols/commands.log\`.
EOF
} >"$OUT/section.md"
benchstat splice "$RESULTS" "## 9. CoAP and gRPC beside HTTP" "$OUT/section.md"
log "done: $RESULTS (section 9)"
