#!/usr/bin/env bash
# Build the lenshpc Apptainer images from the repository root.
#
#   bash containers/build.sh [gpu|cpu|all] [OUTPUT_DIR]      (default: gpu, current directory)
#   LENSHPC_APPTAINER_ARGS="--fakeroot" bash containers/build.sh cpu
#
# Without root, Apptainer needs --fakeroot (subuid/subgid mappings) — added automatically when not root.
# Needs apptainer ≥ 1.1 (https://apptainer.org/docs/admin/main/installation.html); not available as a Debian 12 or
# PyPI package, so CI checks the recipes' structure and runs their %post scripts directly instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-gpu}; OUT=${2:-.}
APPTAINER=${LENSHPC_APPTAINER:-apptainer}
command -v "$APPTAINER" >/dev/null || { echo "build.sh: '$APPTAINER' not found; install Apptainer (see containers/README.md)" >&2; exit 2; }
args=()
[[ -n "${LENSHPC_APPTAINER_ARGS:-}" ]] && read -r -a args <<<"$LENSHPC_APPTAINER_ARGS"
[[ "$(id -u)" != 0 && " ${args[*]:-} " != *" --fakeroot "* ]] && args+=(--fakeroot)
mkdir -p "$OUT"
build() {  # build DEF SIF — into a temp name first so an interrupted build never leaves a broken image
    local tmp="$2.partial"
    echo "apptainer build ${args[*]:-} $2 $1" >&2
    "$APPTAINER" build --force "${args[@]}" "$tmp" "$1"
    mv -f "$tmp" "$2"
}
case "$WHICH" in
    gpu) build containers/lenshpc.def "$OUT/lenshpc.sif" ;;
    cpu) build containers/lenshpc-cpu.def "$OUT/lenshpc-cpu.sif" ;;
    all) build containers/lenshpc.def "$OUT/lenshpc.sif"; build containers/lenshpc-cpu.def "$OUT/lenshpc-cpu.sif" ;;
    *) echo "usage: $0 [gpu|cpu|all] [OUTPUT_DIR]" >&2; exit 2 ;;
esac
