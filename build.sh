#!/usr/bin/env bash
# build.sh: builds faas from source: static binaries, images FROM scratch,
# the Swarm stack, tests and benchmarks. Nothing is pulled from a registry: every image is
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
GATEWAY_DIR=gateway
IMAGE_PREFIX=faas
BUSYBOX=/bin/busybox
# The seed's echo function must stay a tiny image: watchdog plus busybox.
CATSERVICE_MAX_BYTES=5000000

# The Swarm stack (`up`, `down`).
STACK_NAME=faas
STACK_FILE=docker-compose.yml
FUNCTIONS_NETWORK=functions
GATEWAY_PORT=8080
GATEWAY_URL=http://127.0.0.1:$GATEWAY_PORT
# Where `up` keeps the gateway's credentials (see ensure_credentials).
SECRETS_DIR=$ROOT/.secrets
# How long `up` waits for the gateway and every function, `down` for the
# stack's services and containers to be gone.
UP_TIMEOUT=${FAAS_UP_TIMEOUT:-90}
DOWN_TIMEOUT=${FAAS_DOWN_TIMEOUT:-90}

usage() {
    cat <<EOF
Usage: ./build.sh [COMMAND]

Commands:
  all            deps, binaries and images (the default)
  deps           install the Rust musl target, Debian's busybox-static, python3 (with
                 pip) and nodejs if missing
  binaries       build the static release binaries (fwatchdog, gateway, Rust functions)
  images         build faas/gateway:latest and an image faas/<name>:latest for
                 every $FUNCTIONS_DIR/*/Dockerfile
  image NAME     build only $FUNCTIONS_DIR/NAME (or the gateway: image gateway)
  base-images    build the templates' runtime bases faas/python-base and faas/node-base
                 from Debian's packages (mmdebstrap + docker import; cached)
  test           up (everything built, the stack deployed), then cargo test --workspace
  bench          run bench/run.sh (arguments are passed on)
  up             all, then deploy the Swarm stack $STACK_NAME ($STACK_FILE): swarm init
                 and the network $FUNCTIONS_NETWORK if missing; waits until the gateway
                 and every function answer at $GATEWAY_URL
  down           remove the stack (docker stack rm $STACK_NAME); keeps the network
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
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq busybox-static >/dev/null
    is_static "$BUSYBOX" || die "$BUSYBOX is still not a static binary after installing busybox-static"
}

# The python and node templates' warm runners, run by the process provider
# with the host's interpreters (and pip for requirements.txt); a font for
# `faas experiment report`'s labels.
ensure_runtimes() {
    local missing=()
    python3 -c 'import pip' 2>/dev/null || missing+=(python3 python3-pip)
    # The Python client's tests run in a venv (Debian splits ensurepip out).
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    command -v node >/dev/null || missing+=(nodejs)
    [[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || missing+=(fonts-dejavu-core)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing Debian's ${missing[*]} (the templates' runtimes, the plots' font)"
    local sudo=
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
}

cmd_deps() {
    command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs"
    choose_target
    ensure_busybox
    ensure_runtimes
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
    # The gateway on its own: built together, its dependencies' features
    # (tokio's process and fs, …) would be unified into fwatchdog's.
    log "cargo build --release --target $BUILD_TARGET -p gateway -p faas-cli"
    cargo build --release --locked --target "$BUILD_TARGET" -p gateway -p faas-cli

    local release binary size
    release=$(release_dir)
    for binary in fwatchdog gateway faas $(rust_functions); do
        is_static "$release/$binary" ||
            die "$release/$binary is dynamically linked: it cannot run in a FROM scratch image"
    done
    for binary in fwatchdog gateway faas; do
        size=$(stat -c %s "$release/$binary")
        log "$binary: static, $size bytes ($(mib "$size") MiB)"
    done
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

# Stages target/images/gateway (gateway/Dockerfile, the static gateway
# binary, and what it puts into the images it builds from source: the
# static fwatchdog and busybox) and builds faas/gateway:latest.
build_gateway_image() {
    local context=$TARGET_DIR/images/$GATEWAY_DIR release output
    release=$(release_dir)
    [[ -x $release/gateway ]] || die "$release/gateway is missing: run ./build.sh binaries first"
    [[ -x $release/fwatchdog ]] || die "$release/fwatchdog is missing: run ./build.sh binaries first"
    [[ -x $BUSYBOX ]] || die "$BUSYBOX is missing: run ./build.sh deps first"
    rm -rf "$context"
    mkdir -p "$context"
    cp "$GATEWAY_DIR/Dockerfile" "$context/Dockerfile"
    cp "$release/gateway" "$context/gateway"
    cp "$release/fwatchdog" "$context/fwatchdog"
    cp "$BUSYBOX" "$context/busybox"
    if ! output=$(docker build -q -t "$(image_tag gateway)" "$context" 2>&1); then
        printf '%s\n' "$output" >&2
        die "docker build failed for $GATEWAY_DIR/Dockerfile"
    fi
}

# The templates' runtime base images, made from Debian's own packages (no
# registry): faas/python-base (python3, pip) and faas/node-base (nodejs).
# mmdebstrap assembles a minimal root filesystem, `docker import` makes it
# an image. The host's CA bundle replaces Debian's, so builds inside trust
# what the host trusts (a TLS-inspecting proxy in front of PyPI, say).
# Cached: rebuilt only when its recipe (suite, packages, CA bundle) changes.
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=http://deb.debian.org/debian
BASE_IMAGES=("python:python3,python3-pip,ca-certificates" "node:nodejs,ca-certificates")

ensure_mmdebstrap() {
    command -v mmdebstrap >/dev/null && return 0
    log "installing Debian's mmdebstrap (builds the runtime base images)"
    local sudo=
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq mmdebstrap >/dev/null
}

cmd_base_images() {
    require_docker
    local entry lang packages tag recipe have tarball started ca=/etc/ssl/certs/ca-certificates.crt
    local hooks=() ca_sum=none
    if [[ -f $ca ]]; then
        hooks=(--customize-hook="upload $ca $ca")
        ca_sum=$(sha256sum "$ca" | cut -c1-12)
    fi
    for entry in "${BASE_IMAGES[@]}"; do
        lang=${entry%%:*}
        packages=${entry#*:}
        tag=$IMAGE_PREFIX/$lang-base:latest
        recipe="$DEBIAN_SUITE $packages ca=$ca_sum"
        have=$(docker image inspect -f '{{index .Config.Labels "faas.base.recipe"}}' "$tag" 2>/dev/null || true)
        if [[ $have == "$recipe" ]]; then
            continue
        fi
        ensure_mmdebstrap
        log "base image $tag from Debian $DEBIAN_SUITE: $packages"
        started=$SECONDS
        tarball=$TARGET_DIR/images/$lang-base.tar
        mkdir -p "$TARGET_DIR/images"
        # Documentation, manuals and translations are left out.
        mmdebstrap --quiet --mode=root --variant=essential --include="$packages" \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
            "${hooks[@]}" --format=tar "$DEBIAN_SUITE" "$tarball" "$DEBIAN_MIRROR" ||
            die "mmdebstrap could not build $tag (is $DEBIAN_MIRROR reachable?)"
        docker import --change "LABEL faas.base.recipe=\"$recipe\"" \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            "$tarball" "$tag" >/dev/null
        rm -f "$tarball"
        log "$tag: $(mib "$(docker image inspect -f '{{.Size}}' "$tag")") MiB in $((SECONDS - started)) s"
    done
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
    log "image $(image_tag gateway)"
    build_gateway_image
    cmd_base_images
    for name in "${names[@]}"; do
        log "image $(image_tag "$name")"
        build_image "$name"
    done
    print_sizes gateway "${names[@]}"
    if [[ -f $FUNCTIONS_DIR/catservice/Dockerfile ]]; then
        check_catservice_size
    fi
}

cmd_image() {
    local name=${1:-}
    [[ -n $name ]] || die "usage: ./build.sh image NAME (a folder under $FUNCTIONS_DIR/, or gateway)"
    if [[ $name == gateway ]]; then
        require_docker
        choose_target
        log "image $(image_tag gateway)"
        build_gateway_image
        print_sizes gateway
        return 0
    fi
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

# --- the Swarm stack ---------------------------------------------------------

# Makes this engine a Swarm manager: `docker swarm init` unless it already is
# in a swarm. With several addresses Docker cannot pick one to advertise:
# then the address of the default route's interface is used.
ensure_swarm() {
    local state output addr
    state=$(docker info --format '{{.Swarm.LocalNodeState}}')
    if [[ $state == inactive ]]; then
        log "docker swarm init"
        if ! output=$(docker swarm init 2>&1); then
            if [[ $output == *"already part of a swarm"* ]]; then
                :
            elif [[ $output == *"advertise"* ]] &&
                addr=$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1)}') &&
                [[ -n $addr ]]; then
                log "docker swarm init --advertise-addr $addr"
                output=$(docker swarm init --advertise-addr "$addr" 2>&1) ||
                    [[ $output == *"already part of a swarm"* ]] ||
                    die "docker swarm init --advertise-addr $addr failed: $output"
            else
                die "docker swarm init failed: $output"
            fi
        fi
        state=$(docker info --format '{{.Swarm.LocalNodeState}}')
    fi
    [[ $state == active ]] ||
        die "this Docker engine's Swarm state is '$state', not 'active' (docker info; docker swarm init/join)"
    [[ $(docker info --format '{{.Swarm.ControlAvailable}}') == true ]] ||
        die "this node is a Swarm worker: run ./build.sh up on a manager"
}

# The attachable overlay network functions join. It belongs to no stack, so
# `down` keeps it and services created by hand on it survive.
ensure_network() {
    local driver attachable scope
    if ! docker network inspect "$FUNCTIONS_NETWORK" >/dev/null 2>&1; then
        log "docker network create --driver overlay --attachable $FUNCTIONS_NETWORK"
        docker network create --driver overlay --attachable "$FUNCTIONS_NETWORK" >/dev/null ||
            docker network inspect "$FUNCTIONS_NETWORK" >/dev/null 2>&1 ||
            die "cannot create the network $FUNCTIONS_NETWORK"
    fi
    read -r driver attachable scope < <(docker network inspect -f '{{.Driver}} {{.Attachable}} {{.Scope}}' "$FUNCTIONS_NETWORK")
    [[ $driver == overlay && $attachable == true && $scope == swarm ]] ||
        die "the network $FUNCTIONS_NETWORK is not an attachable Swarm overlay (driver $driver, attachable $attachable, scope $scope): remove it (docker network rm $FUNCTIONS_NETWORK) and run ./build.sh up again"
}

# The function names the stack file deploys (their faas.function labels).
stack_functions() {
    sed -n 's/^[[:space:]]*faas\.function:[[:space:]]*\([A-Za-z0-9_.-]*\).*/\1/p' "$STACK_FILE"
}

# `docker stack deploy` leaves a service alone when its spec is unchanged,
# and the spec names the image by tag: a service whose tasks run an older
# build of faas/<name>:latest than the local one is restarted onto it here
# (a rolling update, start-first for functions).
refresh_outdated_services() {
    local service image want containers running outdated=() pids=() pid failed=0
    while read -r service image; do
        want=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) || continue
        containers=$(docker ps -q --filter "label=com.docker.swarm.service.name=$service")
        [[ -n $containers ]] || continue
        # shellcheck disable=SC2086
        running=$(docker inspect -f '{{.Image}}' $containers | sort -u)
        if [[ $running != "$want" ]]; then
            outdated+=("$service=$image")
        fi
    done < <(docker stack services "$STACK_NAME" --format '{{.Name}} {{.Image}}')
    ((${#outdated[@]} > 0)) || return 0
    log "restarting onto the new images: ${outdated[*]%%=*}"
    for service in "${outdated[@]}"; do
        docker service update --quiet --force --no-resolve-image --image "${service#*=}" "${service%%=*}" >/dev/null &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
    ((failed == 0)) || die "docker service update failed for one of: ${outdated[*]%%=*} (docker service ps <name>)"
}

# Basic auth for the gateway's /system API. The password is random, made
# once and kept in $SECRETS_DIR (mode 0600, ignored by git) so that people
# and tests can log in; Docker secrets cannot be read back. Each secret's
# name carries a hash of its value: Swarm secrets are immutable, so a new
# password is a new secret, and the stack file is told which one to mount
# (FAAS_AUTH_USER_SECRET, FAAS_AUTH_PASSWORD_SECRET).
ensure_credentials() {
    local kind file value hash name
    mkdir -p "$SECRETS_DIR"
    chmod 700 "$SECRETS_DIR"
    [[ -s $SECRETS_DIR/basic-auth-user ]] || printf 'admin' >"$SECRETS_DIR/basic-auth-user"
    if [[ ! -s $SECRETS_DIR/basic-auth-password ]]; then
        log "creating a random gateway password in $SECRETS_DIR/basic-auth-password"
        (
            umask 077
            head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$SECRETS_DIR/basic-auth-password"
        )
    fi
    chmod 600 "$SECRETS_DIR"/basic-auth-*
    for kind in user password; do
        file=$SECRETS_DIR/basic-auth-$kind
        value=$(<"$file")
        hash=$(printf '%s' "$value" | sha256sum | cut -c1-12)
        name=basic-auth-$kind-$hash
        if ! docker secret inspect "$name" >/dev/null 2>&1; then
            log "docker secret create $name"
            docker secret create --label faas.auth=true "$name" "$file" >/dev/null ||
                docker secret inspect "$name" >/dev/null 2>&1 ||
                die "cannot create the Docker secret $name"
        fi
        if [[ $kind == user ]]; then
            export FAAS_AUTH_USER_SECRET=$name
        else
            export FAAS_AUTH_PASSWORD_SECRET=$name
        fi
    done
}

# Earlier credentials' secrets, once no service mounts them any more.
prune_old_credentials() {
    local name
    while read -r name; do
        [[ $name == "$FAAS_AUTH_USER_SECRET" || $name == "$FAAS_AUTH_PASSWORD_SECRET" ]] && continue
        docker secret rm "$name" >/dev/null 2>&1 || true
    done < <(docker secret ls --filter label=faas.auth=true --format '{{.Name}}')
}

http_code() { curl -s -o /dev/null -m 3 -w '%{http_code}' "$@" || true; }

stack_diagnostics() {
    printf '\n--- docker stack ps %s\n' "$STACK_NAME" >&2
    docker stack ps "$STACK_NAME" --no-trunc \
        --format 'table {{.Name}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}' >&2 || true
    printf '\n--- docker service logs --tail 20 %s_gateway\n' "$STACK_NAME" >&2
    docker service logs --tail 20 "${STACK_NAME}_gateway" >&2 || true
}

# Waits until the gateway's /healthz answers 200 and every function of the
# stack answers a call through it.
wait_for_stack() {
    local functions=() fn code pending=() started=$SECONDS next_report=0
    mapfile -t functions < <(stack_functions)
    while :; do
        pending=()
        code=$(http_code "$GATEWAY_URL/healthz")
        if [[ $code != 200 ]]; then
            pending=("gateway(/healthz: $code)")
        else
            for fn in "${functions[@]}"; do
                code=$(http_code -X POST --data-binary 0 "$GATEWAY_URL/function/$fn")
                [[ $code == 200 ]] || pending+=("$fn($code)")
            done
        fi
        if ((${#pending[@]} == 0)); then
            log "gateway and ${#functions[@]} functions answer ($((SECONDS - started))s)"
            return 0
        fi
        if ((SECONDS - started >= UP_TIMEOUT)); then
            stack_diagnostics
            die "the stack did not come up within ${UP_TIMEOUT}s (FAAS_UP_TIMEOUT); still waiting for: ${pending[*]}"
        fi
        if ((SECONDS - started >= next_report)); then
            log "waiting ($((SECONDS - started))s of ${UP_TIMEOUT}s) for: ${pending[*]}"
            next_report=$((SECONDS - started + 5))
        fi
        sleep 1
    done
}

cmd_up() {
    require_docker
    command -v curl >/dev/null || die "curl not found (up checks the stack through it)"
    ensure_swarm
    ensure_network
    cmd_all
    ensure_credentials
    log "docker stack deploy -c $STACK_FILE $STACK_NAME"
    # Images are local: no registry to resolve digests from. Shows what it
    # changed, not its notice about --detach.
    local output
    if ! output=$(docker stack deploy --prune --resolve-image never -c "$STACK_FILE" "$STACK_NAME" 2>&1); then
        printf '%s\n' "$output" >&2
        die "docker stack deploy failed"
    fi
    printf '%s\n' "$output" | sed -n 's/^\(Creating\|Updating\|Removing\) /    &/p'
    refresh_outdated_services
    wait_for_stack
    prune_old_credentials
    local FAAS_CLI
    FAAS_CLI=$(release_dir)/faas
    FAAS_CLI=${FAAS_CLI#"$ROOT"/}
    cat <<EOF

The stack is up: the gateway answers at $GATEWAY_URL. Try:

  curl -X POST --data-binary @/etc/hostname $GATEWAY_URL/function/catservice
  curl -X POST -H 'x-function: catservice' --data-binary @/etc/hostname $GATEWAY_URL/
  curl -d '# hello' $GATEWAY_URL/function/markdown
  curl $GATEWAY_URL/metrics

Any service on the network $FUNCTIONS_NETWORK is a function (the seed's way):

  docker service create --network=functions --name echo faas/catservice:latest
  curl -d hi $GATEWAY_URL/function/echo

The management API (/system/...) and the faas CLI need the gateway's
credentials (user $(<"$SECRETS_DIR/basic-auth-user"), password in $SECRETS_DIR/basic-auth-password):

  $FAAS_CLI login --username $(<"$SECRETS_DIR/basic-auth-user") --password-stdin < $SECRETS_DIR/basic-auth-password
  $FAAS_CLI list
  curl -u $(<"$SECRETS_DIR/basic-auth-user"):\$(cat $SECRETS_DIR/basic-auth-password) $GATEWAY_URL/system/functions

Remove the stack with ./build.sh down.
EOF
}

cmd_down() {
    require_docker
    local started=$SECONDS services containers next_report=0
    if [[ $(docker info --format '{{.Swarm.ControlAvailable}}') != true ]]; then
        log "not a Swarm manager: no stack to remove"
        return 0
    fi
    if docker stack ls --format '{{.Name}}' | grep -qx "$STACK_NAME"; then
        log "docker stack rm $STACK_NAME"
        docker stack rm "$STACK_NAME" >/dev/null
    elif [[ -z $(docker service ls -q --filter "label=com.docker.stack.namespace=$STACK_NAME") &&
        -z $(docker ps -q --filter "label=com.docker.stack.namespace=$STACK_NAME") ]]; then
        log "no stack $STACK_NAME is deployed"
        return 0
    fi
    # stack rm returns at once; the services' tasks then drain and stop.
    while :; do
        services=$(docker service ls -q --filter "label=com.docker.stack.namespace=$STACK_NAME" | wc -l)
        containers=$(docker ps -q --filter "label=com.docker.stack.namespace=$STACK_NAME" | wc -l)
        if ((services == 0 && containers == 0)); then
            log "stack $STACK_NAME removed ($((SECONDS - started))s); the network $FUNCTIONS_NETWORK is kept"
            return 0
        fi
        if ((SECONDS - started >= DOWN_TIMEOUT)); then
            die "the stack's $services services and $containers containers were still there after ${DOWN_TIMEOUT}s (FAAS_DOWN_TIMEOUT)"
        fi
        if ((SECONDS - started >= next_report)); then
            log "waiting for $services services and $containers containers to stop"
            next_report=$((SECONDS - started + 5))
        fi
        sleep 1
    done
}

# --- the rest --------------------------------------------------------------

cmd_all() {
    cmd_deps
    cmd_binaries
    cmd_images
}

# Debian's docker-registry: the registry the Swarm tests push to.
ensure_registry() {
    [[ -x /usr/bin/docker-registry ]] && return 0
    log "installing Debian's docker-registry (the registry the Swarm tests start)"
    local sudo=
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq docker-registry >/dev/null
    # Only the binary is wanted: the package's own service stays off.
    if command -v systemctl >/dev/null; then
        $sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
}

# The notebook client's tests (clients/python): installed with pip into a
# venv of its own (with pandas, so the DataFrame path runs too), run with
# pytest against the debug binaries `cargo test` has just built. The same
# venv holds the protocol clients other tests drive: aiocoap's
# aiocoap-client (FAAS_AIOCOAP_CLIENT), grpcio and grpcio-tools (FAAS_PYTHON).
python_client_tests() {
    local venv=$ROOT/target/python-client
    log "the Python client: pip install ./clients/python pandas pytest aiocoap grpcio grpcio-tools (venv), pytest"
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
        pytest pandas aiocoap grpcio grpcio-tools "$ROOT/clients/python"
    export FAAS_AIOCOAP_CLIENT=$venv/bin/aiocoap-client FAAS_PYTHON=$venv/bin/python
    (
        cd "$ROOT"
        FAAS_GATEWAY_BIN=$ROOT/target/debug/gateway FAAS_CLI=$ROOT/target/debug/faas \
            "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider clients/python/tests
    )
}

cmd_test() {
    # `up` builds everything and deploys the stack the Swarm tests drive.
    cmd_up
    ensure_registry
    # The Docker test builds catservice around this binary.
    export FAAS_STATIC_FWATCHDOG
    FAAS_STATIC_FWATCHDOG=$(release_dir)/fwatchdog
    log "cargo test --workspace (everything that needs no Docker)"
    cargo test --workspace --locked
    python_client_tests
    # Then, on purpose, the tests marked #[ignore = "needs Docker …"]: the
    # Swarm stack and the Docker image. Apart, so they never share the two
    # cores with the process tests (they time deploys and count lost calls).
    log "cargo test --workspace -- --ignored (Docker, Swarm and the Python protocol clients)"
    cargo test --workspace --locked -- --ignored
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
        base-images) cmd_base_images ;;
        test) cmd_test ;;
        bench) cmd_bench "$@" ;;
        up) cmd_up ;;
        down) cmd_down ;;
        help | -h | --help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

# Sourced (bench/lib.sh) for its target choice: define, do not run.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
