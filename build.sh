#!/usr/bin/env bash
# build.sh: builds faas from source: static binaries, images FROM scratch,
# tests and benchmarks. Nothing is pulled from a registry: every image is
# assembled from our own static binaries plus Debian's busybox-static.
# `./build.sh help` lists the subcommands.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"

MUSL_TARGET=x86_64-unknown-linux-musl
# Fallback when the musl target cannot be installed: glibc, linked statically.
GNU_TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
FUNCTIONS_DIR=sample-functions
IMAGE_PREFIX=faas
BUSYBOX=/bin/busybox
# The seed's echo function must stay a tiny image: watchdog plus busybox.
CATSERVICE_MAX_BYTES=5000000

usage() {
    cat <<EOF
Usage: ./build.sh [COMMAND]

Commands:
  all            deps, binaries and images (the default)
  deps           install the Rust musl target and Debian's busybox-static if missing
  binaries       build the static release binaries (fwatchdog, Rust functions)
  images         build an image faas/<name>:latest for every $FUNCTIONS_DIR/*/Dockerfile
  image NAME     build only $FUNCTIONS_DIR/NAME
  test           all, then cargo test --workspace
  bench          run bench/run.sh (arguments are passed on)
  up, down       deploy / remove the Swarm stack (not available yet)
  help           this message

Images are named after their folder, lowercased: HostnameIntent -> faas/hostnameintent.
EOF
}

log() { printf '==> %s\n' "$*"; }
die() {
    printf 'build.sh: %s\n' "$*" >&2
    exit 1
}

# --- deps ------------------------------------------------------------------

# Sets BUILD_TARGET: musl when rustup has or can add it, else glibc with a
# static C runtime (RUSTFLAGS, exported for cargo).
BUILD_TARGET=
choose_target() {
    [[ -n $BUILD_TARGET ]] && return 0
    if rustup target list --installed 2>/dev/null | grep -qx "$MUSL_TARGET"; then
        BUILD_TARGET=$MUSL_TARGET
    elif log "adding the Rust target $MUSL_TARGET" && rustup target add "$MUSL_TARGET"; then
        BUILD_TARGET=$MUSL_TARGET
    else
        log "cannot add $MUSL_TARGET: falling back to $GNU_TARGET with -C target-feature=+crt-static"
        BUILD_TARGET=$GNU_TARGET
        export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static"
    fi
}

release_dir() { echo "$TARGET_DIR/$BUILD_TARGET/release"; }

# A binary with no dynamic loader: it can run in a FROM scratch image.
is_static() {
    if command -v file >/dev/null; then
        file -L "$1" | grep -Eq 'statically linked|static-pie linked'
    else
        ldd "$1" 2>&1 | grep -Eq 'not a dynamic executable|statically linked'
    fi
}

ensure_busybox() {
    if [[ -x $BUSYBOX ]] && is_static "$BUSYBOX"; then
        return 0
    fi
    log "installing Debian's busybox-static (the shell functions' sh and coreutils)"
    local sudo=
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
    is_static "$BUSYBOX" || die "$BUSYBOX is still not a static binary after installing busybox-static"
}

cmd_deps() {
    command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs"
    choose_target
    ensure_busybox
}

# --- binaries --------------------------------------------------------------

# Sample functions written in Rust: folders with a Cargo.toml, whose package
# and binary are named after the folder (markdown).
rust_functions() {
    local dir
    for dir in "$FUNCTIONS_DIR"/*/; do
        if [[ -f $dir/Cargo.toml ]]; then
            basename "$dir"
        fi
    done
}

mib() { awk -v bytes="$1" 'BEGIN { printf "%.2f", bytes / 1048576 }'; }

cmd_binaries() {
    choose_target
    local packages=(-p watchdog) name
    for name in $(rust_functions); do
        packages+=(-p "$name")
    done
    log "cargo build --release --target $BUILD_TARGET ${packages[*]}"
    cargo build --release --locked --target "$BUILD_TARGET" "${packages[@]}"

    local release binary size
    release=$(release_dir)
    for binary in fwatchdog $(rust_functions); do
        is_static "$release/$binary" ||
            die "$release/$binary is dynamically linked: it cannot run in a FROM scratch image"
    done
    size=$(stat -c %s "$release/fwatchdog")
    log "fwatchdog: static, $size bytes ($(mib "$size") MiB)"
}

# --- images ----------------------------------------------------------------

image_tag() { echo "$IMAGE_PREFIX/${1,,}:latest"; }

# Stages target/images/NAME (the function's folder, fwatchdog, busybox when
# the Dockerfile uses it, the function's own binary when it is Rust) and
# builds it. Docker's layer cache makes an unchanged image almost free.
build_image() {
    local name=$1
    local src=$FUNCTIONS_DIR/$name context=$TARGET_DIR/images/$name release
    [[ -f $src/Dockerfile ]] || die "no such function: $src/Dockerfile"
    release=$(release_dir)
    [[ -x $release/fwatchdog ]] || die "$release/fwatchdog is missing: run ./build.sh binaries first"

    rm -rf "$context"
    mkdir -p "$context"
    cp -a "$src/." "$context/"
    cp "$release/fwatchdog" "$context/fwatchdog"
    if grep -q busybox "$src/Dockerfile"; then
        [[ -x $BUSYBOX ]] || die "$BUSYBOX is missing: run ./build.sh deps first"
        cp "$BUSYBOX" "$context/busybox"
    fi
    if [[ -f $src/Cargo.toml ]]; then
        [[ -x $release/$name ]] || die "$release/$name is missing: run ./build.sh binaries first"
        cp "$release/$name" "$context/$name"
    fi

    # Quiet on success: the legacy builder's deprecation notice is noise here
    # (there is no buildx to switch to). On failure, everything is shown.
    local output
    if ! output=$(docker build -q -t "$(image_tag "$name")" "$context" 2>&1); then
        printf '%s\n' "$output" >&2
        die "docker build failed for $src"
    fi
}

print_sizes() {
    local name tag size
    printf '%-32s %12s %8s\n' IMAGE BYTES MiB
    for name in "$@"; do
        tag=$(image_tag "$name")
        size=$(docker image inspect -f '{{.Size}}' "$tag")
        printf '%-32s %12s %8s\n' "$tag" "$size" "$(mib "$size")"
    done
}

check_catservice_size() {
    local tag size
    tag=$(image_tag catservice)
    size=$(docker image inspect -f '{{.Size}}' "$tag")
    ((size < CATSERVICE_MAX_BYTES)) ||
        die "$tag is $size bytes: it must stay under $CATSERVICE_MAX_BYTES (fwatchdog + busybox)"
}

require_docker() {
    command -v docker >/dev/null || die "docker not found"
    docker info >/dev/null 2>&1 || die "cannot reach the Docker daemon (is it running, may you use it?)"
}

cmd_images() {
    require_docker
    choose_target
    local names=() dir name
    for dir in "$FUNCTIONS_DIR"/*/; do
        if [[ -f $dir/Dockerfile ]]; then
            names+=("$(basename "$dir")")
        fi
    done
    ((${#names[@]} > 0)) || die "no $FUNCTIONS_DIR/*/Dockerfile found"
    for name in "${names[@]}"; do
        log "image $(image_tag "$name")"
        build_image "$name"
    done
    print_sizes "${names[@]}"
    if [[ -f $FUNCTIONS_DIR/catservice/Dockerfile ]]; then
        check_catservice_size
    fi
}

cmd_image() {
    local name=${1:-}
    [[ -n $name ]] || die "usage: ./build.sh image NAME (a folder under $FUNCTIONS_DIR/)"
    [[ -f $FUNCTIONS_DIR/$name/Dockerfile ]] || die "no such function: $FUNCTIONS_DIR/$name/Dockerfile"
    require_docker
    choose_target
    log "image $(image_tag "$name")"
    build_image "$name"
    print_sizes "$name"
    if [[ $name == catservice ]]; then
        check_catservice_size
    fi
}

# --- the rest --------------------------------------------------------------

cmd_all() {
    cmd_deps
    cmd_binaries
    cmd_images
}

cmd_test() {
    cmd_all
    # The Docker test builds catservice around this binary.
    export FAAS_STATIC_FWATCHDOG
    FAAS_STATIC_FWATCHDOG=$(release_dir)/fwatchdog
    log "cargo test --workspace"
    cargo test --workspace --locked
}

cmd_bench() {
    if [[ ! -f bench/run.sh ]]; then
        echo "build.sh bench: not available yet (bench/run.sh does not exist)" >&2
        exit 2
    fi
    exec bash bench/run.sh "$@"
}

main() {
    local command=${1:-all}
    [[ $# -gt 0 ]] && shift
    case $command in
        all) cmd_all ;;
        deps) cmd_deps ;;
        binaries) cmd_binaries ;;
        images) cmd_images ;;
        image) cmd_image "$@" ;;
        test) cmd_test ;;
        bench) cmd_bench "$@" ;;
        up | down)
            # Arrives with the gateway: `up` builds its image and runs
            # `docker stack deploy -c docker-compose.yml faas`, `down` removes
            # the stack.
            echo "build.sh $command: not available yet (arrives with the gateway)" >&2
            exit 2
            ;;
        help | -h | --help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
