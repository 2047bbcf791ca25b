#!/usr/bin/env bash
# Runs every fuzz target (cargo-fuzz, libFuzzer, AddressSanitizer) for a
# bounded time each and writes fuzz/REPORT.md: executions, coverage and
# crashes per target. Not part of CI (./build.sh test); run it by hand:
#
#   fuzz/run.sh [SECONDS_PER_TARGET]   (default 60)
#
# Each target starts from seeds written here (valid inputs of its kind) and
# keeps its corpus in fuzz/corpus/<target> between runs; a crash leaves its
# input in fuzz/artifacts/<target> and makes this script exit 1.
set -euo pipefail
cd "$(dirname "$0")"

PER_TARGET=${1:-60}
# cargo-fuzz passes -Z flags (sanitizers): this machine's one toolchain is
# stable, which accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
log() { printf '==> %s\n' "$*"; }

if ! command -v cargo-fuzz >/dev/null; then
    log "cargo install cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

seed() {
    local target=$1 name=$2
    mkdir -p "corpus/$target"
    printf '%s' "$3" >"corpus/$target/seed-$name"
}
seed routing path '/function/echo/some/rest?a=1&b=two'
seed routing alexa '{"session":{"sessionId":"s","application":{"applicationId":"a"}},"request":{"intent":{"name":"HostnameIntent"}}}'
seed routing header 'catservice'
seed deployment full '{"service":"catservice","image":"faas/catservice:latest","envProcess":"cat","envVars":{"a":"b"},"labels":{"faas.scale.min":"2","faas.scale.max":"5"},"annotations":{"topic":"demo"},"constraints":["node.role == manager"],"secrets":["api-key"],"limits":{"memory":"128m","cpu":"0.5"},"requests":{"memory":"64m","cpu":"100m"},"readOnlyRootFilesystem":true}'
seed deployment reserved '{"service":"x","envProcess":"sh","labels":{"faas.role":"gateway"}}'
seed stack_file sample "$(cat ../sample-functions/stack.yml)"
seed values duration '1h30m'
seed values size '512k'
seed values cpu '500m'
seed watchdog_config http $'fprocess=/markdown\nmode=http\nupstream_url=http://127.0.0.1:8082\nexec_timeout=2s\nmax_inflight=8\nmax_body_bytes=1m'
seed callback_url allow $'10.0.0.0/8,hooks.internal,*.corp\nhttp://127.0.0.1:9/done'
seed callback_url v6 $'::1\nhttp://[::ffff:127.0.0.1]:80/'
seed bulk_array mixed '[1, "two", {"three": 3}, [4], null, true]'

targets=$(cargo fuzz list)
log "cargo fuzz build (release, AddressSanitizer): ${targets//$'\n'/ }"
cargo fuzz build --release

mkdir -p logs
rows=()
failed=0
for target in $targets; do
    log "$target: ${PER_TARGET}s"
    status=0
    cargo fuzz run --release "$target" -- -max_total_time="$PER_TARGET" -print_final_stats=1 \
        >"logs/$target.log" 2>&1 || status=$?
    execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "logs/$target.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "logs/$target.log" | tail -1 | awk '{ print $2 }')
    crashes=$(find "artifacts/$target" -type f 2>/dev/null | wc -l)
    if ((status != 0 || crashes > 0)); then
        failed=1
        log "$target: FAILED (exit $status, $crashes inputs in artifacts/$target; see logs/$target.log)"
    fi
    rows+=("| \`$target\` | ${PER_TARGET} s | ${execs:-?} | ${cov:-?} | $crashes |")
done

{
    echo "# Fuzzing report"
    echo
    echo "Run by \`fuzz/run.sh $PER_TARGET\` on $(date -u +%Y-%m-%d) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "($(rustc --version), cargo-fuzz $(cargo fuzz --version 2>/dev/null | awk '{print $2}'),"
    echo "libFuzzer with AddressSanitizer, release build, one job per target)."
    echo
    echo "| target | time | executions | coverage (edges) | crashes |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "What each target feeds, and what it checks besides \"no panic, no"
    echo "memory error\":"
    echo
    echo "- \`routing\`: paths and queries (rule 1), \`X-Function\` values (rule 2),"
    echo "  bodies (the Alexa detection, rule 3); a routed name is always valid"
    echo "  and the forwarded path starts with \`/\`."
    echo "- \`deployment\`: \`POST /system/functions\` JSON through the checks every"
    echo "  provider relies on; an accepted one has a valid name and no reserved label."
    echo "- \`stack_file\`: faas-cli stack files (YAML)."
    echo "- \`values\`: durations, sizes, CPUs, booleans (every flag, variable, label)."
    echo "- \`watchdog_config\`: the watchdog's whole environment (\`NAME=value\` lines)."
    echo "- \`callback_url\`: \`--callback-allow\` lists and \`X-Callback-Url\` values;"
    echo "  an accepted literal address is always one the policy allows."
    echo "- \`bulk_array\`: \`/bulk-function\` bodies; never more than the item cap."
} >REPORT.md
log "wrote fuzz/REPORT.md"
exit "$failed"
