#!/usr/bin/env bash
# bench/source.sh: functions from source (issue 13), measured.
#
# 1. Source to the first successful call: `faas up` of a python hello
#    function then curl until it answers, timed from the command's start.
#    Cold: a function never built (the base image and the build cache of
#    the template's shared steps are there, as after `./build.sh`); warm:
#    `faas up` again with the source unchanged. On the process provider (a
#    release gateway on 127.0.0.1) and, when the stack is up, on Swarm.
# 2. The python warm runner against Flask + waitress (the stack OpenFaaS's
#    python3-http template serves handlers with; both from PyPI here), the
#    same trivial handler, each called directly on 127.0.0.1: p50 at 1
#    connection and throughput at 32 (wrk), repetitions alternating.
# 3. Scale from zero of a python function on Swarm (when the stack is up):
#    labelled to go to zero after 1 s idle; once its containers are gone,
#    one call; curl's time, client side.
#
# Writes the section "## 7. Functions from source" of bench/RESULTS.md.
# Bounded: about 4 minutes with the stack, 2 without. Knobs: BENCH_REPEAT
# (source trials, 5), BENCH_RUNNER_REPEAT (3), BENCH_COLD_TRIALS (10),
# BENCH_DURATION (seconds per wrk run, 6), BENCH_SOURCE_PORT (29390),
# BENCH_RESULTS, BENCH_OUT.
set -euo pipefail

SCRIPT=bench/source.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT=${BENCH_OUT:-$BENCH/out}/source
TRIALS=${BENCH_REPEAT:-5}
RUNNER_REPEAT=${BENCH_RUNNER_REPEAT:-3}
COLD_TRIALS=${BENCH_COLD_TRIALS:-10}
PORT=${BENCH_SOURCE_PORT:-29390}
URL=http://127.0.0.1:$PORT
P_RUNNER=$((PORT + 1))
P_FLASK=$((PORT + 2))
SWARM_URL=http://127.0.0.1:8080
# Targets (issue 13, section 5).
COLD_TARGET=10
WARM_TARGET=2
RATE_TARGET=2
ZERO_TARGET=1

if ! command -v wrk >/dev/null; then
    log "installing Debian's wrk"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq wrk >/dev/null
fi
for b in gateway fwatchdog faas; do
    [[ -x $BIN/$b ]] || {
        release_build watchdog
        release_build gateway faas-cli
        break
    }
done
FAAS=$BIN/faas

rm -rf "$OUT"
mkdir -p "$OUT/raw" "$OUT/work"
PIDS=()
SWARM_FUNCTIONS=()
cleanup() {
    local pid name
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for name in "${SWARM_FUNCTIONS[@]}"; do
        swarm_faas remove "$name" >/dev/null 2>&1 || true
    done
    # Their images, once their containers have drained and stopped.
    for _ in $(seq 1 60); do
        local left=0
        for name in "${SWARM_FUNCTIONS[@]}"; do
            [[ -n $(docker ps -q --filter "label=com.docker.swarm.service.name=$name") ]] && left=1
        done
        ((left)) || break
        sleep 0.5
    done
    for name in "${SWARM_FUNCTIONS[@]}"; do
        docker image ls -q "faas/$name" | xargs -r docker rmi -f >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { benchstat calc '%.3f' "$(now) - $1"; }
stats() { benchstat stats "$1"; }
verdict() {
    if [[ $1 == - ]]; then echo "**missed**"; else benchstat verdict "$1"; fi
}

# until_answers URL WANT LIMIT: curl URL until its body starts with WANT.
until_answers() {
    local deadline=$(($(date +%s) + $3)) body
    while (($(date +%s) < deadline)); do
        body=$(curl -s -m 5 -d bench "$1" || true)
        [[ $body == "$2"* ]] && return 0
        sleep 0.02
    done
    return 1
}

# up_trial KIND NAME BASE_URL FAAS...: times `faas up` of NAME from its
# start to the first call that answers, cold then warm; appends to
# $OUT/KIND-cold.txt and $OUT/KIND-warm.txt.
up_trial() {
    local kind=$1 name=$2 base=$3 start t which
    shift 3
    "$@" new "$name" --lang python -f "$OUT/work/$kind.yml" >/dev/null
    # A source of its own: nothing of it is in any cache.
    printf '# %s %s\n' "$name" "$(now)" >>"$OUT/work/$name/handler.py"
    for which in cold warm; do
        start=$(now)
        "$@" up -f "$OUT/work/$kind.yml" --filter "$name" --timeout 5m \
            >>"$OUT/raw/$kind-up.log" 2>&1 || die "$kind: faas up $name failed: $OUT/raw/$kind-up.log"
        until_answers "$base/function/$name" "Hello, bench!" 60 || die "$kind: $name never answered"
        t=$(since "$start")
        echo "$t" >>"$OUT/$kind-$which.txt"
        log "$kind: $which faas up of $name to its first answer: ${t}s"
    done
}

# ---- 1a. process provider ------------------------------------------------

GW_CMD=(env coap_port=off grpc_port=off RUST_LOG=info PATH="$BIN:$PATH" "$BIN/gateway" --provider process
    --port "$PORT" --bind-address 127.0.0.1 --queue-path "$OUT/queue.redb"
    --state-dir "$OUT/state" --auth none) # loopback only
echo "${GW_CMD[*]}" >"$OUT/commands.log"
"${GW_CMD[@]}" >"$OUT/gateway.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz" || true) == 200 ]] && break
    sleep 0.05
done
[[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz") == 200 ]] || die "the gateway did not come up: $OUT/gateway.log"
: >"$OUT/process-cold.txt"
: >"$OUT/process-warm.txt"
for trial in $(seq 1 "$TRIALS"); do
    up_trial process "hello$trial" "$URL" env FAAS_GATEWAY="$URL" HOME="$OUT/work" "$FAAS"
done
read -r PC50 _ PCMIN PCMAX _ < <(stats "$OUT/process-cold.txt")
read -r PW50 _ PWMIN PWMAX _ < <(stats "$OUT/process-warm.txt")
echo "faas new helloN --lang python && faas up --filter helloN  # then curl until it answers" >>"$OUT/commands.log"

# ---- 2. the warm runner vs Flask + waitress ------------------------------

mkdir -p "$OUT/runner/function" "$OUT/flask"
cp "$ROOT/templates/python/runner.py" "$OUT/runner/"
cat >"$OUT/runner/function/handler.py" <<'EOF'
def handle(event, context):
    return {"statusCode": 200, "body": "Hello, world!"}
EOF
cp "$OUT/runner/function/handler.py" "$OUT/flask/handler.py"
# The same handler served the way python3-http does it: Flask's request
# turned into an event, the handler's dict into a response, waitress as
# the server (its defaults, as there).
cat >"$OUT/flask/app.py" <<'EOF'
import os
from flask import Flask, request
from waitress import serve
import handler

app = Flask(__name__)

class Event:
    def __init__(self):
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path

class Context:
    hostname = os.getenv("HOSTNAME", "localhost")

@app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
@app.route("/<path:path>", methods=["GET", "POST"])
def call(path):
    result = handler.handle(Event(), Context())
    return (str(result.get("body", "")), result.get("statusCode", 200), result.get("headers", {}))

serve(app, host="127.0.0.1", port=int(os.environ["PORT"]))
EOF
VENV=$OUT/venv
log "python3 -m venv + pip install flask waitress (PyPI)"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet flask waitress >"$OUT/raw/pip.log" 2>&1 || die "pip install flask waitress failed: $OUT/raw/pip.log"
FLASK_VERSION=$("$VENV/bin/python" -c 'import importlib.metadata as m; print("Flask", m.version("flask"), "and waitress", m.version("waitress"))')
(cd "$OUT/runner" && exec env PORT="$P_RUNNER" python3 runner.py) >"$OUT/runner.log" 2>&1 &
PIDS+=($!)
(cd "$OUT/flask" && exec env PORT="$P_FLASK" "$VENV/bin/python" app.py) >"$OUT/flask.log" 2>&1 &
PIDS+=($!)
until_answers "http://127.0.0.1:$P_RUNNER/" "Hello, world!" 15 || die "the runner did not start: $OUT/runner.log"
until_answers "http://127.0.0.1:$P_FLASK/" "Hello, world!" 15 || die "flask did not start: $OUT/flask.log"
cat >"$OUT/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "hello"
EOF
TSV=$OUT/runner.tsv
: >"$TSV"
# run LABEL REP CONNS URL
run() {
    local file=$OUT/raw/$1.$2.txt row
    wrk -t1 -c"$3" -d"${DURATION}s" --latency -s "$OUT/post.lua" "$4" >"$file" 2>&1 || die "wrk failed: $file"
    row=$(benchstat wrk "$file")
    printf '%s\t%s\t%s\n' "$1" "$2" "${row// /$'\t'}" >>"$TSV"
    log "$(printf '%-12s rep %s: %s' "$1" "$2" "$row")"
}
for conns in 1 32; do
    wrk -t1 -c"$conns" -d2s -s "$OUT/post.lua" "http://127.0.0.1:$P_RUNNER/" >/dev/null
    wrk -t1 -c"$conns" -d2s -s "$OUT/post.lua" "http://127.0.0.1:$P_FLASK/" >/dev/null
    for rep in $(seq 1 "$RUNNER_REPEAT"); do
        run "runner-c$conns" "$rep" "$conns" "http://127.0.0.1:$P_RUNNER/"
        run "flask-c$conns" "$rep" "$conns" "http://127.0.0.1:$P_FLASK/"
    done
done
echo "wrk -t1 -c1|-c32 -d${DURATION}s --latency -s post.lua http://127.0.0.1:PORT/  # runner.py, flask app.py" >>"$OUT/commands.log"
R1=$(benchstat median "$TSV" runner-c1 3)
F1=$(benchstat median "$TSV" flask-c1 3)
R32=$(benchstat median "$TSV" runner-c32 6)
F32=$(benchstat median "$TSV" flask-c32 6)
RATE_RATIO=$(benchstat paired "$TSV" runner-c32 flask-c32 6 ratio)
P50_RATIO=$(benchstat paired "$TSV" runner-c1 flask-c1 3 ratio)
ERRORS=$(awk -F'\t' '{ s += $7 } END { print s + 0 }' "$TSV")
[[ $ERRORS == 0 ]] || die "wrk saw $ERRORS errors: $TSV"

# ---- 1b and 3. Swarm -----------------------------------------------------

SWARM=0
SWARM_NOTE=
if ! command -v docker >/dev/null; then
    SWARM_NOTE="no docker CLI"
elif [[ $(curl -s -o /dev/null -m 3 -w '%{http_code}' "$SWARM_URL/healthz" || true) != 200 ]]; then
    SWARM_NOTE="no stack gateway answers at $SWARM_URL (./build.sh up)"
elif [[ ! -f $ROOT/.secrets/basic-auth-password ]]; then
    SWARM_NOTE="no stack credentials in .secrets/"
else
    SWARM=1
fi
swarm_faas() {
    env FAAS_GATEWAY="$SWARM_URL" FAAS_CONFIG="$OUT/work/faas.json" HOME="$OUT/work" "$FAAS" "$@"
}
if ((SWARM)); then
    swarm_faas login --username "$(cat "$ROOT/.secrets/basic-auth-user" 2>/dev/null || echo admin)" \
        --password-stdin <"$ROOT/.secrets/basic-auth-password" >/dev/null
    : >"$OUT/swarm-cold.txt"
    : >"$OUT/swarm-warm.txt"
    STAMP=$(date +%s)
    for trial in $(seq 1 "$TRIALS"); do
        name="bench-src-$STAMP-$trial"
        SWARM_FUNCTIONS+=("$name")
        up_trial swarm "$name" "$SWARM_URL" swarm_faas
    done
    read -r SC50 _ SCMIN SCMAX _ < <(stats "$OUT/swarm-cold.txt")
    read -r SW50 _ SWMIN SWMAX _ < <(stats "$OUT/swarm-warm.txt")

    # Scale from zero: a python function labelled to go to zero after 1 s
    # idle; once its last container is gone, one call.
    zero="bench-zero-$STAMP"
    SWARM_FUNCTIONS+=("$zero")
    swarm_faas new "$zero" --lang python -f "$OUT/work/zero.yml" >/dev/null
    printf '    labels:\n      faas.scale.zero: "true"\n      faas.scale.zero-after: "1s"\n' >>"$OUT/work/zero.yml"
    swarm_faas up -f "$OUT/work/zero.yml" --timeout 5m >>"$OUT/raw/swarm-up.log" 2>&1 ||
        die "swarm: faas up $zero failed: $OUT/raw/swarm-up.log"
    : >"$OUT/swarm-zero.txt"
    for trial in $(seq 1 "$COLD_TRIALS"); do
        gone=0
        for _ in $(seq 1 600); do
            if [[ $(docker service inspect --format '{{.Spec.Mode.Replicated.Replicas}}' "$zero") == 0 &&
                -z $(docker ps -q --filter "label=com.docker.swarm.service.name=$zero") ]]; then
                gone=1
                break
            fi
            sleep 0.1
        done
        ((gone)) || die "swarm: $zero did not go to zero"
        t=$(curl -s -o "$OUT/raw/zero-body" -w '%{time_total}' -d zero "$SWARM_URL/function/$zero")
        [[ $(cat "$OUT/raw/zero-body") == "Hello, zero!"* ]] || die "swarm: wrong answer from zero: $(cat "$OUT/raw/zero-body")"
        echo "$t" >>"$OUT/swarm-zero.txt"
        log "swarm: call from zero ${t}s (trial $trial)"
    done
    read -r SZ50 SZ95 SZMIN SZMAX SZN < <(stats "$OUT/swarm-zero.txt")
fi

# ---- results -------------------------------------------------------------

if ((SWARM)); then
    SWARM_ROWS=$(
        cat <<EOF
| Swarm: source to first call, cold, ≤ $COLD_TARGET s | p50 $SC50 s ($SCMIN–$SCMAX) | $(verdict "$SC50 <= $COLD_TARGET") |
| Swarm: source to first call, unchanged, ≤ $WARM_TARGET s | p50 $SW50 s ($SWMIN–$SWMAX) | $(verdict "$SW50 <= $WARM_TARGET") |
| Swarm: the python function from zero, p50 ≤ $ZERO_TARGET s | p50 $SZ50 s, p95 $SZ95 s ($SZMIN–$SZMAX, $SZN trials) | $(verdict "$SZ50 <= $ZERO_TARGET") |
EOF
    )
else
    SWARM_ROWS="| Swarm (source to first call; from zero) | not measured: $SWARM_NOTE | – |"
fi

SECTION=$(
    cat <<EOF
## 7. Functions from source

Produced by \`bench/source.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'),
source $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown).
Source to first call: \`faas new helloN --lang python\`, then \`faas up\`
timed from its start until a curl of the function answers; cold is a
function never built (the base image and the template's shared build
steps cached, as after \`./build.sh\`), unchanged is \`faas up\` again; $TRIALS
trials each. The runner comparison calls the same trivial handler
(\`handle(event, context)\` returning a dict) directly, on 127.0.0.1:
\`templates/python/runner.py\` against a Flask app served by waitress
($FLASK_VERSION from PyPI, waitress's defaults), wrk
$DURATION s per run, $RUNNER_REPEAT repetitions alternating. From zero: the
python function labelled \`faas.scale.zero: true\`, \`faas.scale.zero-after: 1s\`
left to go to zero until its last container is gone, then one curl; $COLD_TRIALS trials.

| target | measured | result |
|---|---|---|
| process provider: source to first call, cold, ≤ $COLD_TARGET s | p50 $PC50 s ($PCMIN–$PCMAX) | $(verdict "$PC50 <= $COLD_TARGET") |
| process provider: source to first call, unchanged, ≤ $WARM_TARGET s | p50 $PW50 s ($PWMIN–$PWMAX) | $(verdict "$PW50 <= $WARM_TARGET") |
$SWARM_ROWS
| warm runner: throughput at 32 connections ≥ $RATE_TARGET× Flask + waitress | $(benchstat calc '%.0f' "$R32")/s against $(benchstat calc '%.0f' "$F32")/s: $(benchstat calc '%.2f' "$RATE_RATIO")× | $(verdict "$RATE_RATIO >= $RATE_TARGET") |
| warm runner: p50 at 1 connection no worse than Flask + waitress | $(benchstat calc '%.0f' "$R1") µs against $(benchstat calc '%.0f' "$F1") µs: $(benchstat calc '%.2f' "$P50_RATIO")× | $(verdict "$P50_RATIO <= 1") |

Commands: \`bench/out/source/commands.log\`; raw figures in \`bench/out/source/\`.
EOF
)

printf '%s\n' "$SECTION" >"$OUT/section.md"
touch "$RESULTS"
benchstat splice "$RESULTS" "## 7. Functions from source" "$OUT/section.md"
log "source section written to $RESULTS"
