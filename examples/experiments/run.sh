#!/usr/bin/env bash
# examples/experiments/run.sh: FaaSET's three notebook experiments, redone
# on a faas gateway: each example's function/ is built from source and
# deployed (`faas up -f <example>/stack.yml`, the python template), its
# experiment.yml run, and its results and plots written to
# <example>/results/; the function is removed after.
#
# Needs a gateway (FAAS_GATEWAY, default http://127.0.0.1:8080; `faas
# login` first when it asks for credentials) and the faas CLI (FAAS, default
# `faas` on PATH). Usage: examples/experiments/run.sh [EXAMPLE…]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
FAAS=${FAAS:-faas}
examples=("$@")
[[ ${#examples[@]} -gt 0 ]] || examples=(hello-world page-rank sleeper)
for example in "${examples[@]}"; do
    [[ -f $example/experiment.yml ]] || {
        echo "run.sh: no example $example" >&2
        exit 2
    }
    name=$(sed -n 's/^function: *//p' "$example/experiment.yml")
    echo "== $example: deploying $name"
    "$FAAS" up -f "$example/stack.yml" --timeout 5m
    rm -rf "$example/results"
    echo "== $example: running"
    "$FAAS" experiment run "$example/experiment.yml" --out "$example/results" --timeout 5m
    "$FAAS" experiment report "$example/results"
    "$FAAS" remove "$name"
done
