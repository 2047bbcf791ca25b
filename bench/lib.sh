# shellcheck shell=bash
# bench/lib.sh: what the bench scripts share. Sourced by bench/run.sh,
# bench/async.sh and bench/scaling.sh (each sets SCRIPT first):
#
#   - build.sh's own choice of target (musl when rustup has it, else glibc
#     linked statically) and release directory, so the benchmark measures
#     the binaries `./build.sh` ships;
#   - ROOT, BENCH, RESULTS, DURATION and log/die;
#   - benchstat (bench/benchstat), the analysis: wrk reports, medians,
#     paired ratios, verdicts and RESULTS.md sections, with unit tests,
#     instead of awk in strings.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=build.sh
source "$ROOT/build.sh"
BENCH=$ROOT/bench
# Used by the scripts that source this file.
# shellcheck disable=SC2034
RESULTS=${BENCH_RESULTS:-$BENCH/RESULTS.md}
# shellcheck disable=SC2034
DURATION=${BENCH_DURATION:-6}
choose_target
TARGET=$BUILD_TARGET
BIN=$(release_dir)
BENCHSTAT=$BIN/benchstat

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf '%s: %s\n' "$SCRIPT" "$*" >&2
    exit 1
}

# release_build PACKAGE...: the static release build of these packages.
release_build() {
    local args=()
    local p
    for p in "$@"; do args+=(-p "$p"); done
    log "cargo build --release --locked --target $TARGET ${args[*]}"
    cargo build --release --locked --target "$TARGET" "${args[@]}"
}

# benchstat ARGS...: see bench/benchstat/src/main.rs.
benchstat() {
    [[ -x $BENCHSTAT ]] || release_build benchstat
    "$BENCHSTAT" "$@"
}
