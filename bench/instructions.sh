#!/usr/bin/env bash
# bench/instructions.sh: what one proxied call costs the proxy, counted
# rather than timed (issue 16). Wall-clock figures on a shared 2-core
# machine move ±15 % between runs; these do not.
#
# Three proxies, each in front of the same kind of upstream, called by
# curl over one keep-alive connection, one call at a time:
#   - fwatchdog mode=http, in front of its own markdown process;
#   - the gateway (--provider process), in front of its one markdown
#     replica (an fwatchdog mode=http and its markdown);
#   - nginx (bench/nginx.conf: one worker, keep-alive upstream) in front of
#     each of those two upstreams, as the reference.
# For each:
#   - user-space instructions per call, by valgrind --tool=callgrind, with
#     instrumentation switched on only for a fixed number of calls after a
#     warm-up (the proxy alone runs under valgrind; its upstream and curl
#     run natively). The top functions by instruction count go to
#     bench/out/instructions/<name>.top.txt (callgrind_annotate);
#   - system calls per call, by strace -c -f attached to the natively
#     running proxy for the same number of calls.
# The binaries are the release build with its symbol table kept
# (CARGO_PROFILE_RELEASE_STRIP=false, in target/symbols): the same code as
# the shipped ones, with names for the profile.
#
# Writes the section "## 10. Instructions and system calls per call" of
# bench/RESULTS.md. About 3 minutes after the build. Knobs: BENCH_CALLS
# (calls counted, default 2000), BENCH_WARM_CALLS (500),
# BENCH_INSTR_PORT (29520, then +1..+9), BENCH_INSTR_BUILD (0: measure
# the binaries already in target/symbols), BENCH_RESULTS, BENCH_OUT.
set -euo pipefail

SCRIPT=bench/instructions.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT=${BENCH_OUT:-$BENCH/out}/instructions
CALLS=${BENCH_CALLS:-2000}
WARM=${BENCH_WARM_CALLS:-500}
PORT=${BENCH_INSTR_PORT:-29520}
MD_BODY=$'# Hello\n\nSome *text*.\n'
MD_HTML=$'<h1>Hello</h1>\n<p>Some <em>text</em>.</p>'

MISSING=()
command -v valgrind >/dev/null || MISSING+=(valgrind)
command -v strace >/dev/null || MISSING+=(strace)
command -v curl >/dev/null || MISSING+=(curl)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || MISSING+=(nginx-light)
if ((${#MISSING[@]})); then
    log "installing ${MISSING[*]}"
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${MISSING[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# The release build with symbols, in a target directory of its own; the
# gateway in a cargo invocation of its own, as bench/run.sh does.
SYM_TARGET_DIR=$ROOT/target/symbols
SYM=$SYM_TARGET_DIR/$TARGET/release
symbols_build() {
    log "cargo build --release (symbols kept) ${*/#/-p }"
    CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked --target "$TARGET" \
        --target-dir "$SYM_TARGET_DIR" "${@/#/-p}"
}
release_build benchstat
if [[ ${BENCH_INSTR_BUILD:-1} != 0 ]]; then
    symbols_build watchdog markdown
    symbols_build gateway
fi

rm -rf "$OUT"
mkdir -p "$OUT/tmp" "$OUT/logs"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# calls URL N: N POSTs of the markdown document over one connection; all must be 200.
calls() {
    local ok
    ok=$(curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: text/markdown' \
        --data-binary "$MD_BODY" "$1?n=[1-$2]" | grep -c '^200$' || true)
    [[ $ok == "$2" ]] || die "$1: only $ok of $2 calls answered 200"
}

# wait_answer URL PID: until URL answers the markdown document (60 s: valgrind starts slowly).
wait_answer() {
    local i got
    for ((i = 0; i < 600; i++)); do
        got=$(curl -s --max-time 5 -H 'Content-Type: text/markdown' --data-binary "$MD_BODY" "$1" || true)
        [[ $got == "$MD_HTML" ]] && return 0
        kill -0 "$2" 2>/dev/null || die "the server for $1 exited; see $OUT/logs"
        sleep 0.1
    done
    die "$1 did not answer the markdown document within 60 s"
}

# The servers, by name: how to start each (its command after the tool),
# its URL, and the PID to watch once it runs.
# start NAME TOOL...: starts server NAME under TOOL (nothing: natively);
# sets SERVER_PID and SERVER_URL.
start() {
    local name=$1
    shift
    local log=$OUT/logs/$name.${RUN_KIND}.log
    case $name in
        fwatchdog)
            env "TMPDIR=$OUT/tmp" bind_address=127.0.0.1 "port=$((PORT + 1))" "metrics_port=$((PORT + 2))" \
                healthcheck_interval=0s mode=http "fprocess=$SYM/markdown" "PORT=$((PORT + 3))" \
                "upstream_url=http://127.0.0.1:$((PORT + 3))" "$@" "$SYM/fwatchdog" >"$log" 2>&1 &
            SERVER_URL=http://127.0.0.1:$((PORT + 1))/
            ;;
        gateway)
            cat >"$OUT/stack.yml" <<EOF
functions:
  markdown:
    fprocess: $SYM/markdown
    environment:
      mode: http
    labels:
      faas.scale.max: "1"
EOF
            env RUST_LOG=warn coap_port=off grpc_port=off "TMPDIR=$OUT/tmp" "$@" "$SYM/gateway" \
                --provider process -f "$OUT/stack.yml" --port "$((PORT + 4))" --bind-address 127.0.0.1 \
                --auth none --state-dir "$OUT/tmp/gateway-state-$RUN_KIND" >"$log" 2>&1 &
            SERVER_URL=http://127.0.0.1:$((PORT + 4))/function/markdown
            ;;
        nginx-md | nginx-replica)
            local prefix=$OUT/nginx/$name.$RUN_KIND upstream
            upstream=$([[ $name == nginx-md ]] && echo "$MD_PORT" || echo "$REPLICA_PORT")
            mkdir -p "$prefix/tmp"
            local listen=$((PORT + 5)) conf=$prefix/nginx.conf
            [[ $name == nginx-replica ]] && listen=$((PORT + 6))
            # One process: the worker's work, without a master to fork it.
            sed -e "s/@LISTEN_PORT@/$listen/" -e "s/@UPSTREAM_PORT@/$upstream/" \
                -e 's/^worker_processes 1;/worker_processes 1;\nmaster_process off;/' \
                "$BENCH/nginx.conf" >"$conf"
            "$@" "$NGINX" -p "$prefix/" -c nginx.conf -e error.log -g 'daemon off;' >"$log" 2>&1 &
            SERVER_URL=http://127.0.0.1:$listen/
            ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_answer "$SERVER_URL" "$SERVER_PID"
}

stop() {
    kill "$1" 2>/dev/null || true
    local i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# The upstreams the nginx references proxy to: a markdown of its own (like
# fwatchdog's), and a replica like the gateway's (an fwatchdog in http mode
# in front of markdown, started the way the process provider starts it).
MD_PORT=$((PORT + 7))
env "PORT=$MD_PORT" "$SYM/markdown" >"$OUT/logs/markdown.log" 2>&1 &
PIDS+=($!)
REPLICA_PORT=$((PORT + 8))
env "TMPDIR=$OUT/tmp" RUST_LOG=warn bind_address=127.0.0.1 "port=$REPLICA_PORT" "metrics_port=$((PORT + 9))" \
    healthcheck_interval=0s mode=http "fprocess=$SYM/markdown" \
    "$SYM/fwatchdog" >"$OUT/logs/replica.log" 2>&1 &
PIDS+=($!)
RUN_KIND=probe
wait_answer "http://127.0.0.1:$MD_PORT/" "${PIDS[0]}"
wait_answer "http://127.0.0.1:$REPLICA_PORT/" "${PIDS[1]}"

NAMES=(fwatchdog nginx-md gateway nginx-replica)
declare -A INSTR SYSCALLS TOP_SYSCALLS
for name in "${NAMES[@]}"; do
    # Instructions: valgrind, instrumentation on for CALLS calls only.
    RUN_KIND=callgrind
    out=$OUT/$name.callgrind.out
    # vgdb's pipes in a place of their own, whatever TMPDIR the server has.
    prefix=$OUT/vgdb-$name
    start "$name" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
        --trace-children=no --vgdb-prefix="$prefix"
    pid=$SERVER_PID
    calls "$SERVER_URL" "$WARM"
    callgrind_control --vgdb-prefix="$prefix" -i on "$pid" | grep -q OK ||
        die "callgrind_control could not switch on the counting in $name"
    calls "$SERVER_URL" "$CALLS"
    callgrind_control --vgdb-prefix="$prefix" -i off "$pid" | grep -q OK ||
        die "callgrind_control could not switch off the counting in $name"
    stop "$pid"
    [[ -s $out ]] || die "valgrind wrote no profile for $name ($out)"
    total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !t { gsub(",", "", $1); t = $1 } END { print t }')
    [[ $total =~ ^[0-9]+$ ]] || die "no instruction total in $out"
    INSTR[$name]=$((total / CALLS))
    callgrind_annotate --threshold=99 "$out" 2>/dev/null | sed -n '1,60p' >"$OUT/$name.top.txt"
    log "$name: ${INSTR[$name]} instructions per call"

    # System calls: strace on the native process (all its threads).
    RUN_KIND=strace
    start "$name"
    pid=$SERVER_PID
    calls "$SERVER_URL" "$WARM"
    strace -f -c -o "$OUT/$name.strace" -p "$pid" 2>"$OUT/logs/$name.strace.err" &
    tracer=$!
    # strace says when it has attached to every thread.
    for ((i = 0; i < 100; i++)); do
        grep -q 'Process .* attached' "$OUT/logs/$name.strace.err" && break
        sleep 0.05
    done
    sleep 0.2
    calls "$SERVER_URL" "$CALLS"
    kill -INT "$tracer"
    wait "$tracer" || true
    stop "$pid"
    # Columns: % time, seconds, usecs/call, calls, errors, syscall.
    total=$(awk '$NF == "total" { print $4 }' "$OUT/$name.strace")
    [[ $total =~ ^[0-9]+$ ]] || die "no total in $OUT/$name.strace"
    SYSCALLS[$name]=$(benchstat calc '%.2f' "$total / $CALLS")
    TOP_SYSCALLS[$name]=$(awk -v n="$CALLS" 'NR > 2 && $NF != "total" && $0 !~ /^-/ {
            if ($4 / n >= 0.05) printf "%s %.2f, ", $NF, $4 / n }' \
        "$OUT/$name.strace" | sed 's/, $//')
    log "$name: ${SYSCALLS[$name]} system calls per call (${TOP_SYSCALLS[$name]})"
done

ratio() { benchstat calc '%.2f' "$1 / $2"; }
CPU_MODEL=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
{
    cat <<EOF
## 10. Instructions and system calls per call

What one proxied call costs each proxy, counted rather than timed: the
figure to watch when a change's wall-clock effect is inside this
machine's noise. \`bench/instructions.sh\` calls each proxy with curl over
one keep-alive connection, one call at a time (the markdown document of
sections 2 and 4), ${WARM} calls of warm-up, then counts over ${CALLS}:

- **instructions**: user-space instructions of the proxy's process (all
  its threads) per call, by \`valgrind --tool=callgrind\` with
  instrumentation on only for the counted calls; the upstream and curl run
  natively and are not counted. Repeatable to a fraction of a percent for
  the same binaries. The kernel's side of each system call is not in it.
- **system calls**: per call, by \`strace -c -f\` attached to the natively
  running proxy for the same number of calls.

Release binaries built with their symbol table (\`target/symbols\`), on
${CPU_MODEL}. nginx is Debian's, one process (\`master_process off\`) with
\`bench/nginx.conf\`.

| proxy | upstream | instructions per call | vs nginx | system calls per call | vs nginx | most frequent system calls per call |
|---|---|---:|---:|---:|---:|---|
| fwatchdog \`mode=http\` | markdown | ${INSTR[fwatchdog]} | $(ratio "${INSTR[fwatchdog]}" "${INSTR[nginx-md]}")× | ${SYSCALLS[fwatchdog]} | $(ratio "${SYSCALLS[fwatchdog]}" "${SYSCALLS[nginx-md]}")× | ${TOP_SYSCALLS[fwatchdog]} |
| nginx | markdown | ${INSTR[nginx-md]} | 1× | ${SYSCALLS[nginx-md]} | 1× | ${TOP_SYSCALLS[nginx-md]} |
| gateway (process provider) | a replica (fwatchdog + markdown) | ${INSTR[gateway]} | $(ratio "${INSTR[gateway]}" "${INSTR[nginx-replica]}")× | ${SYSCALLS[gateway]} | $(ratio "${SYSCALLS[gateway]}" "${SYSCALLS[nginx-replica]}")× | ${TOP_SYSCALLS[gateway]} |
| nginx | a replica (fwatchdog + markdown) | ${INSTR[nginx-replica]} | 1× | ${SYSCALLS[nginx-replica]} | 1× | ${TOP_SYSCALLS[nginx-replica]} |

Where the instructions go: \`bench/out/instructions/<proxy>.top.txt\`
(\`callgrind_annotate\` of \`<proxy>.callgrind.out\`), summarised in
\`bench/ANALYSIS.md\`.
EOF
} >"$OUT/section.md"
benchstat splice "$RESULTS" "## 10. Instructions and system calls per call" "$OUT/section.md"
log "done: $RESULTS (section 10)"
