#!/usr/bin/env bash
# bench/scaling.sh: the built-in autoscaler, measured.
#
# 1. Process provider (a release gateway on 127.0.0.1, functions as local
#    fwatchdog processes):
#    - scale-up: wrk holds 8 calls of `sleep 0.5` in flight against a
#      function with faas.scale.target 1 and max 4; the time from the load's
#      start until 4 replicas are ready (the gateway's availableReplicas),
#      over BENCH_UP_TRIALS trials;
#    - cold start: a `cat` function with faas.scale.zero=true goes to zero
#      after 1 s idle; the first call's latency (curl, client side) over
#      BENCH_COLD_TRIALS trials, with a warm call to the same function as
#      the reference measured in the same run.
# 2. The real Swarm stack, when it is up (./build.sh up; this script never
#    deploys it): the same, with services created by `docker service
#    create` on the functions network (faas/sleep and faas/catservice), and
#    as a reference Docker's own time from `docker service scale X=1` to a
#    task it calls running (healthy), which is what a gateway that waits
#    for Docker's health check would see.
#
# Writes the section "## 6. Autoscaling" of bench/RESULTS.md, replacing it
# if present (bench/run.sh calls this script after writing the rest).
# Everything is bounded: about 6 minutes with the stack, 1.5 without.
# Knobs: BENCH_COLD_TRIALS (20), BENCH_UP_TRIALS (3), BENCH_RESULTS,
# BENCH_OUT, BENCH_SCALING_PORT (29290, below the ephemeral range).
set -euo pipefail

SCRIPT=bench/scaling.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT=${BENCH_OUT:-$BENCH/out}/scaling
COLD_TRIALS=${BENCH_COLD_TRIALS:-20}
UP_TRIALS=${BENCH_UP_TRIALS:-3}
PORT=${BENCH_SCALING_PORT:-29290}
URL=http://127.0.0.1:$PORT
SWARM_URL=http://127.0.0.1:8080
# Targets (issue 6): on Swarm, cold start p50 and time to the needed replicas.
COLD_TARGET=1.5
UP_TARGET=10
# The load: 8 calls in flight, 1 per replica wanted, at most 4 replicas.
CALLERS=8
NEEDED=4


command -v wrk >/dev/null || die "wrk is missing (bench/run.sh installs it)"
if [[ ! -x $BIN/gateway || ! -x $BIN/fwatchdog ]]; then
    # Apart: built together, the gateway's tokio features would reach fwatchdog.
    release_build watchdog
    release_build gateway
fi

rm -rf "$OUT"
mkdir -p "$OUT/raw"
GW_PID=
SERVICES=()
cleanup() {
    if [[ -n $GW_PID ]] && kill -0 "$GW_PID" 2>/dev/null; then
        kill "$GW_PID" 2>/dev/null || true
        wait "$GW_PID" 2>/dev/null || true
    fi
    for s in "${SERVICES[@]}"; do
        docker service rm "$s" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { benchstat calc '%.3f' "$(now) - $1"; }
# FILE → "p50 p95 min max n" (seconds, one value per line)
stats() { benchstat stats "$1"; }
# FILE → its p50 (the lower middle), or "-"
median() { benchstat stats "$1" | cut -d' ' -f1; }
# VALUE LIMIT → met when VALUE was measured and is at most LIMIT
verdict() {
    if [[ $1 == - ]]; then echo "**missed**"; else benchstat verdict "$1 <= $2"; fi
}

cat >"$OUT/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "0.5"
EOF

# ---- 1. process provider -------------------------------------------------

CAT="cat"
[[ -x /bin/busybox ]] && CAT="/bin/busybox cat"
cat >"$OUT/stack.yml" <<EOF
version: 1.0
provider:
  name: faas
functions:
  sleep:
    fprocess: sh $ROOT/sample-functions/sleep/handler.sh
    labels:
      faas.scale.target: "1"
      faas.scale.max: "$NEEDED"
      faas.scale.window: "3s"
  echo:
    fprocess: $CAT
    labels:
      faas.scale.zero: "true"
      faas.scale.zero-after: "1s"
EOF
GW_CMD=(env coap_port=off grpc_port=off RUST_LOG=info PATH="$BIN:$PATH" "$BIN/gateway" --provider process -f "$OUT/stack.yml"
    --port "$PORT" --bind-address 127.0.0.1 --queue-path "$OUT/queue.redb"
    --state-dir "$OUT/state" --auth none) # loopback only; it reads /system/function
echo "${GW_CMD[*]}" >"$OUT/commands.log"
log "${GW_CMD[*]}"
"${GW_CMD[@]}" >"$OUT/gateway.log" 2>&1 &
GW_PID=$!
for _ in $(seq 1 300); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz" || true) == 200 ]] && break
    kill -0 "$GW_PID" 2>/dev/null || die "the gateway exited: $(tail -n 3 "$OUT/gateway.log")"
    sleep 0.05
done
[[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz") == 200 ]] || die "the gateway did not come up: $OUT/gateway.log"

# field NAME KEY: a number from /system/function/NAME
field() {
    curl -s "$URL/system/function/$1" | python3 -c "import json, sys; print(json.load(sys.stdin)['$2'])"
}
# wait_process NAME N LIMIT: until N replicas are wanted and available
wait_process() {
    local deadline=$(($(date +%s) + $3))
    while (($(date +%s) < deadline)); do
        [[ $(field "$1" replicas) == "$2" && $(field "$1" availableReplicas) == "$2" ]] && return 0
        sleep 0.05
    done
    return 1
}

: >"$OUT/process-up.txt"
for trial in $(seq 1 "$UP_TRIALS"); do
    wait_process sleep 1 30 || die "process: sleep is not back at 1 replica"
    start=$(now)
    wrk -t1 -c"$CALLERS" -d10s -s "$OUT/post.lua" "$URL/function/sleep" >"$OUT/raw/process-up-$trial.txt" 2>&1 &
    WRK=$!
    if wait_process sleep "$NEEDED" 10; then
        t=$(since "$start")
        echo "$t" >>"$OUT/process-up.txt"
        log "process: $NEEDED replicas ready ${t}s after the load started (trial $trial)"
    else
        log "process: not $NEEDED replicas within 10s (trial $trial)"
        echo 999 >>"$OUT/process-up.txt"
    fi
    wait "$WRK"
    grep -q 'Non-2xx' "$OUT/raw/process-up-$trial.txt" && die "process: failed calls under load: $OUT/raw/process-up-$trial.txt"
done
echo "wrk -t1 -c$CALLERS -d10s -s post.lua $URL/function/sleep  # body 0.5" >>"$OUT/commands.log"

: >"$OUT/process-cold.txt"
: >"$OUT/process-warm.txt"
for trial in $(seq 1 "$COLD_TRIALS"); do
    wait_process echo 0 30 || die "process: echo did not go to zero"
    t=$(curl -s -o "$OUT/raw/process-cold-body" -w '%{time_total}' -d "cold $trial" "$URL/function/echo")
    [[ $(cat "$OUT/raw/process-cold-body") == "cold $trial" ]] || die "process: wrong cold answer: $(cat "$OUT/raw/process-cold-body")"
    echo "$t" >>"$OUT/process-cold.txt"
    # The reference: the same function, warm, right after.
    curl -s -o /dev/null -w '%{time_total}\n' -d warm "$URL/function/echo" >>"$OUT/process-warm.txt"
done
read -r PC50 PC95 PCMIN PCMAX _ < <(stats "$OUT/process-cold.txt")
read -r PW50 _ _ _ _ < <(stats "$OUT/process-warm.txt")
PUP=$(median "$OUT/process-up.txt")
PROCESS_UPS=$(paste -sd' ' "$OUT/process-up.txt")
log "process: cold start p50 ${PC50}s p95 ${PC95}s (warm ${PW50}s); scale-up median ${PUP}s"
kill "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
GW_PID=

# ---- 2. Swarm ------------------------------------------------------------

SWARM=0
SWARM_NOTE=
if ! command -v docker >/dev/null; then
    SWARM_NOTE="no docker CLI"
elif [[ $(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null) != active ]]; then
    SWARM_NOTE="Docker is not in Swarm mode"
elif [[ $(curl -s -o /dev/null -m 3 -w '%{http_code}' "$SWARM_URL/healthz" || true) != 200 ]]; then
    SWARM_NOTE="no stack gateway answers at $SWARM_URL (./build.sh up)"
else
    SWARM=1
fi

# ready_swarm NAME: the stack gateway's ready replicas of NAME
ready_swarm() {
    curl -s "$SWARM_URL/metrics" | awk -v f="function_name=\"$1\"" '/^gateway_service_count/ && index($0, f) { print $NF }'
}
spec_replicas() { docker service inspect --format '{{.Spec.Mode.Replicated.Replicas}}' "$1"; }
containers() { docker ps -q --filter "label=com.docker.swarm.service.name=$1" | wc -l; }
wait_swarm() {
    local deadline=$(($(date +%s) + $3))
    while (($(date +%s) < deadline)); do
        [[ $(ready_swarm "$1") == "$2" ]] && return 0
        sleep 0.1
    done
    return 1
}
create() {
    local name=$1 image=$2
    shift 2
    docker service create --detach --quiet --network functions --endpoint-mode dnsrr \
        --name "$name" --env healthcheck_interval=1s "$@" "$image" >/dev/null
    SERVICES+=("$name")
    echo "docker service create --detach --network functions --endpoint-mode dnsrr --name $name --env healthcheck_interval=1s $* $image" >>"$OUT/commands.log"
}

if ((SWARM)); then
    SLEEP_SVC=bench-scale-sleep
    COLD_SVC=bench-scale-cold
    REF_SVC=bench-scale-docker
    for s in $SLEEP_SVC $COLD_SVC $REF_SVC; do docker service rm "$s" >/dev/null 2>&1 || true; done
    sleep 2
    create $SLEEP_SVC faas/sleep:latest --label faas.scale.target=1 --label faas.scale.max=$NEEDED \
        --label faas.scale.window=5s
    wait_swarm $SLEEP_SVC 1 60 || die "swarm: $SLEEP_SVC never became ready"

    : >"$OUT/swarm-up.txt"
    for trial in $(seq 1 "$UP_TRIALS"); do
        wait_swarm $SLEEP_SVC 1 60 || die "swarm: $SLEEP_SVC is not back at 1 replica"
        start=$(now)
        wrk -t1 -c"$CALLERS" -d14s -s "$OUT/post.lua" "$SWARM_URL/function/$SLEEP_SVC" >"$OUT/raw/swarm-up-$trial.txt" 2>&1 &
        WRK=$!
        if wait_swarm $SLEEP_SVC "$NEEDED" 14; then
            t=$(since "$start")
            echo "$t" >>"$OUT/swarm-up.txt"
            log "swarm: $NEEDED replicas ready ${t}s after the load started (trial $trial)"
        else
            log "swarm: not $NEEDED replicas within 14s (trial $trial)"
            echo 999 >>"$OUT/swarm-up.txt"
        fi
        wait "$WRK"
        grep -q 'Non-2xx' "$OUT/raw/swarm-up-$trial.txt" && die "swarm: failed calls under load: $OUT/raw/swarm-up-$trial.txt"
    done
    echo "wrk -t1 -c$CALLERS -d14s -s post.lua $SWARM_URL/function/$SLEEP_SVC  # body 0.5" >>"$OUT/commands.log"
    docker service rm $SLEEP_SVC >/dev/null

    create $COLD_SVC faas/catservice:latest --label faas.scale.zero=true --label faas.scale.zero-after=1s
    wait_swarm $COLD_SVC 1 60 || die "swarm: $COLD_SVC never became ready"
    : >"$OUT/swarm-cold.txt"
    : >"$OUT/swarm-warm.txt"
    for trial in $(seq 1 "$COLD_TRIALS"); do
        deadline=$(($(date +%s) + 60))
        # At zero, with its last task gone: a true cold start.
        until [[ $(spec_replicas $COLD_SVC) == 0 && $(containers $COLD_SVC) == 0 ]]; do
            (($(date +%s) < deadline)) || die "swarm: $COLD_SVC did not go to zero"
            sleep 0.1
        done
        t=$(curl -s -o "$OUT/raw/swarm-cold-body" -w '%{time_total}' -d "cold $trial" "$SWARM_URL/function/$COLD_SVC")
        [[ $(cat "$OUT/raw/swarm-cold-body") == "cold $trial" ]] || die "swarm: wrong cold answer: $(cat "$OUT/raw/swarm-cold-body")"
        echo "$t" >>"$OUT/swarm-cold.txt"
        log "swarm: cold start ${t}s (trial $trial)"
        curl -s -o /dev/null -w '%{time_total}\n' -d warm "$SWARM_URL/function/$COLD_SVC" >>"$OUT/swarm-warm.txt"
    done
    COLD_HIST=$(curl -s "$SWARM_URL/metrics" | awk -v f="function_name=\"$COLD_SVC\"" '
        /^gateway_cold_start_seconds_sum/ && index($0, f) { s = $NF }
        /^gateway_cold_start_seconds_count/ && index($0, f) { n = $NF }
        END { if (n) printf "%.3f", s / n; else print "-" }')
    docker service rm $COLD_SVC >/dev/null

    # Docker's own time to a running (healthy) task: not a function (no
    # functions network, no label), so no gateway touches it.
    docker service create --detach --quiet --name $REF_SVC --replicas 0 faas/catservice:latest >/dev/null
    SERVICES+=("$REF_SVC")
    echo "docker service create --detach --name $REF_SVC --replicas 0 faas/catservice:latest; docker service scale -d $REF_SVC=1" >>"$OUT/commands.log"
    : >"$OUT/swarm-docker.txt"
    for trial in $(seq 1 5); do
        until [[ $(containers $REF_SVC) == 0 ]]; do sleep 0.1; done
        start=$(now)
        docker service scale -d $REF_SVC=1 >/dev/null 2>&1
        deadline=$(($(date +%s) + 30))
        until docker service ps $REF_SVC --filter desired-state=running --format '{{.CurrentState}}' | grep -q '^Running'; do
            (($(date +%s) < deadline)) || die "swarm: $REF_SVC never ran"
            sleep 0.05
        done
        since "$start" >>"$OUT/swarm-docker.txt"
        echo >>"$OUT/swarm-docker.txt"
        docker service scale -d $REF_SVC=0 >/dev/null 2>&1
    done
    sed -i '/^$/d' "$OUT/swarm-docker.txt"
    docker service rm $REF_SVC >/dev/null

    read -r SC50 SC95 SCMIN SCMAX SCN < <(stats "$OUT/swarm-cold.txt")
    read -r SW50 _ _ _ _ < <(stats "$OUT/swarm-warm.txt")
    read -r SD50 _ SDMIN SDMAX SDN < <(stats "$OUT/swarm-docker.txt")
    SUP=$(median "$OUT/swarm-up.txt")
    SWARM_UPS=$(paste -sd' ' "$OUT/swarm-up.txt")
    log "swarm: cold start p50 ${SC50}s p95 ${SC95}s (warm ${SW50}s, Docker to running ${SD50}s); scale-up median ${SUP}s"
fi

# ---- results -------------------------------------------------------------

if ((SWARM)); then
    SWARM_ROWS=$(
        cat <<EOF
| Swarm: cold start from zero, p50 ≤ $COLD_TARGET s | p50 $SC50 s, p95 $SC95 s ($SCN trials) | $(verdict "$SC50" "$COLD_TARGET") |
| Swarm: the needed replicas ($NEEDED) ready ≤ $UP_TARGET s after the load starts | median $SUP s (trials: $SWARM_UPS) | $(verdict "$SUP" "$UP_TARGET") |
EOF
    )
    SWARM_TABLE=$(
        cat <<EOF
| Swarm stack | $SC50 | $SC95 | $SCMIN | $SCMAX | $SW50 | $SUP |
EOF
    )
    SWARM_TEXT=$(
        cat <<EOF
On Swarm the gateway's own figure for the same cold starts (from its
decision to scale up until the first replica was ready,
\`gateway_cold_start_seconds\`) averaged $COLD_HIST s (a mean, outliers
included). Reference measured in the same run:
Docker alone takes $SD50 s (p50 of $SDN; $SDMIN–$SDMAX s) from \`docker
service scale X=1\` to a task it calls running, because a task with a
HEALTHCHECK only turns running after its first check, one interval (2 s for
our images) after the container starts. The gateway does not wait for that:
it probes a starting task's watchdog (\`/_/health\`, the same check) on its
overlay address and routes to it as soon as it answers. OpenFaaS reports
about 3 s for a cold start on Swarm, and 1–1.5 s tuned.
EOF
    )
else
    SWARM_ROWS="| Swarm (cold start p50 ≤ $COLD_TARGET s; needed replicas ≤ $UP_TARGET s) | not measured: $SWARM_NOTE | – |"
    SWARM_TABLE="| Swarm stack | not measured: $SWARM_NOTE | | | | | |"
    SWARM_TEXT=
fi

SECTION=$(
    cat <<EOF
## 6. Autoscaling: scale-up and cold starts

Produced by \`bench/scaling.sh\` (also run by \`bench/run.sh\`) on $(date -u '+%Y-%m-%d %H:%M UTC'),
source $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown).
Scale-up: wrk keeps $CALLERS calls of \`sleep 0.5\` in flight against a function
labelled \`faas.scale.target: 1\`, \`faas.scale.max: $NEEDED\`; the time is from
the load's start until the gateway has $NEEDED ready replicas. Cold start: a
\`cat\` function labelled \`faas.scale.zero: true\`, \`faas.scale.zero-after: 1s\`
is left to go to zero (on Swarm: until its last container is gone), then
called once with curl; the time is curl's, client side. The reference is
the same function called warm right after each cold call.

| target | measured | result |
|---|---|---|
$SWARM_ROWS

| engine | cold p50 s | cold p95 s | cold min s | cold max s | warm p50 s | scale-up to $NEEDED, median s |
|---|---|---|---|---|---|---|
| process provider | $PC50 | $PC95 | $PCMIN | $PCMAX | $PW50 | $PUP |
$SWARM_TABLE

Scale-up trials, seconds: process $PROCESS_UPS$( ((SWARM)) && echo "; Swarm $SWARM_UPS"). Every call made under
load answered 200 (the script stops otherwise).
$SWARM_TEXT
Commands: \`bench/out/scaling/commands.log\`; raw figures in \`bench/out/scaling/\`.
EOF
)

printf '%s\n' "$SECTION" >"$OUT/section.md"
touch "$RESULTS"
benchstat splice "$RESULTS" "## 6. Autoscaling" "$OUT/section.md"
log "scaling section written to $RESULTS"
