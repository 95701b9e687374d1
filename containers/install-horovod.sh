#!/usr/bin/env bash
# The one way lenshpc installs Horovod: CI (tests/setup.sh), the Apptainer images (containers/*.def) and a user's
# virtualenv all call this script.
#
# Why a script: Horovod 0.28.1 is the last release, PyPI ships only its source archive, and it does not build
# against TensorFlow >= 2.16 as published (horovod/tensorflow/xla_mpi_ops.cc includes XLA headers that moved).
# We drop that one source file from the CMake list (it only provides the optional XLA-compiled MPI ops that lenshpc
# never uses), build a wheel with TensorFlow + MPI + Gloo (+ NCCL when CUDA is present), cache the wheel keyed by
# Horovod, TensorFlow and Python version, and verify with `horovodrun --check-build`.
#
# Usage:   bash containers/install-horovod.sh [--force]
# Env:     PYTHON            interpreter to install into (default: python3)
#          LENSHPC_CACHE     cache root (default: $HOME/.cache/lenshpc); wheels go to $LENSHPC_CACHE/wheels/
#          HOROVOD_VERSION   default 0.28.1 (the patch is only known to be needed/valid for 0.28.x)
#          MAKEFLAGS / HOROVOD_BUILD_PARALLEL   build parallelism (default: number of CPUs)
#          LENSHPC_HOROVOD_GPU=0|1  force the NCCL build off/on (default: on when nvcc is found AND TensorFlow is a
#                            CUDA build); HOROVOD_NCCL_HOME  where NCCL lives (default: searched)
# Needs:   cmake, a C++17 compiler, OpenMPI headers (Debian: libopenmpi-dev), TensorFlow already installed.
set -euo pipefail

PYTHON=${PYTHON:-python3}
HOROVOD_VERSION=${HOROVOD_VERSION:-0.28.1}
CACHE_ROOT=${LENSHPC_CACHE:-${HOME:-/root}/.cache/lenshpc}
WHEEL_DIR="$CACHE_ROOT/wheels"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { printf '[install-horovod] %s\n' "$*" >&2; }
die() { printf '[install-horovod] ERROR: %s\n' "$*" >&2; exit 1; }

# `horovodrun --check-build` prints "[X] TensorFlow" etc.; all three must be ticked.
check_build() {
    local out
    out=$("$PYTHON" -m horovod.runner.launch --check-build 2>/dev/null) || return 1
    grep -q '\[X\] TensorFlow' <<<"$out" && grep -q '\[X\] MPI' <<<"$out" && grep -q '\[X\] Gloo' <<<"$out"
}

installed_version() {
    "$PYTHON" - <<'EOF' 2>/dev/null || true
import importlib.metadata as m
try:
    print(m.version("horovod"))
except m.PackageNotFoundError:
    pass
EOF
}

# ---- prerequisites: fail with what to install, not with a compiler error 3 minutes in ---------------------------
TF_VERSION=$("$PYTHON" -c 'import importlib.metadata as m
for name in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
    try:
        print(m.version(name)); break
    except m.PackageNotFoundError:
        pass' 2>/dev/null) || true
[[ -n "$TF_VERSION" ]] || die "TensorFlow is not installed for $PYTHON; install lenshpc first (pip install -e .)."
PY_TAG=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
# ---- fast path: already installed, built for this TF/Python and verified ------------------------------------------
# A stamp written after `--check-build` passed; checking it costs no TensorFlow import (check-build costs ~10 s).
STAMP_ID="horovod-${HOROVOD_VERSION}+tf${TF_VERSION}-${PY_TAG}"
HVD_DIR=$("$PYTHON" -c 'import importlib.util as u; s = u.find_spec("horovod"); print(s.submodule_search_locations[0] if s else "")' 2>/dev/null || true)
if [[ $FORCE == 0 && -n "$HVD_DIR" && "$(installed_version)" == "$HOROVOD_VERSION" ]] \
        && grep -qx "$STAMP_ID" "$HVD_DIR/.lenshpc-verified" 2>/dev/null; then
    log "Horovod $HOROVOD_VERSION already installed and verified for TF $TF_VERSION / $PY_TAG — nothing to do."
    exit 0
fi

# NCCL build only when it can work: a CUDA compiler AND a CUDA build of TensorFlow (tensorflow-cpu next to a stray
# CUDA toolkit must still give a CPU build) AND NCCL headers (system or the nvidia-nccl-cu12 wheel that
# tensorflow[and-cuda] pulls in).
find_nccl_home() {
    [[ -n "${HOROVOD_NCCL_HOME:-}" ]] && { echo "$HOROVOD_NCCL_HOME"; return 0; }
    local d
    d=$("$PYTHON" -c 'import os, nvidia.nccl as n; print(os.path.dirname(n.__file__) if n.__file__ else list(n.__path__)[0])' 2>/dev/null) \
        && [[ -f "$d/include/nccl.h" ]] && { echo "$d"; return 0; }
    for d in /usr /usr/local /usr/local/cuda; do [[ -f "$d/include/nccl.h" ]] && { echo "$d"; return 0; }; done
    return 1
}
GPU=0
if [[ "${LENSHPC_HOROVOD_GPU:-}" == 1 ]]; then
    GPU=1
elif [[ -z "${LENSHPC_HOROVOD_GPU:-}" ]] && command -v nvcc >/dev/null 2>&1 \
        && "$PYTHON" -c 'import tensorflow as tf, sys; sys.exit(0 if tf.test.is_built_with_cuda() else 1)' 2>/dev/null; then
    GPU=1
fi
if [[ $GPU == 1 ]]; then
    NCCL_HOME=$(find_nccl_home) || die "CUDA build requested but NCCL not found: set HOROVOD_NCCL_HOME, pip install nvidia-nccl-cu12, or LENSHPC_HOROVOD_GPU=0"
fi
VARIANT=$([[ $GPU == 1 ]] && echo nccl || echo cpu)
# Cache key: a wheel compiled against one TF/Python ABI must not be reused with another.
KEY="horovod-${HOROVOD_VERSION}+tf${TF_VERSION}-${PY_TAG}-${VARIANT}"
CACHED="$WHEEL_DIR/$KEY"

if [[ $FORCE == 1 || ! -d "$CACHED" ]] || ! compgen -G "$CACHED/horovod-*.whl" >/dev/null; then
    for tool in cmake mpicxx; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found. On Debian/Ubuntu: apt-get install -y cmake g++ libopenmpi-dev openmpi-bin"
    done
    command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || die "no C++ compiler; apt-get install -y g++"

    WORK=$(mktemp -d "${TMPDIR:-/tmp}/lenshpc-horovod.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    log "downloading horovod==$HOROVOD_VERSION source from PyPI"
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: -d "$WORK" "horovod==$HOROVOD_VERSION"
    tar -xzf "$WORK"/horovod-"$HOROVOD_VERSION".tar.gz -C "$WORK"
    SRC="$WORK/horovod-$HOROVOD_VERSION"

    # The one-line patch. Fail loudly if upstream moved it: silently building without it would fail much later.
    CML="$SRC/horovod/tensorflow/CMakeLists.txt"
    grep -q 'xla_mpi_ops.cc' "$CML" || die "patch target 'xla_mpi_ops.cc' not found in $CML (Horovod $HOROVOD_VERSION changed?)"
    sed -i '/xla_mpi_ops\.cc/d' "$CML"
    ! grep -q 'xla_mpi_ops.cc' "$CML" || die "failed to remove xla_mpi_ops.cc from $CML"
    log "patched $CML (dropped xla_mpi_ops.cc: XLA headers moved in TF >= 2.16)"

    export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1
    export HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1
    if [[ $GPU == 1 ]]; then
        export HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_NCCL_HOME="$NCCL_HOME"
        # pip's nvidia-nccl-cu12 ships only libnccl.so.2; Horovod's CMake looks for libnccl.so.
        if [[ ! -e "$NCCL_HOME/lib/libnccl.so" && -e "$NCCL_HOME/lib/libnccl.so.2" ]]; then
            ln -s libnccl.so.2 "$NCCL_HOME/lib/libnccl.so"
        fi
        log "CUDA TensorFlow + nvcc found: building with NCCL GPU operations (NCCL in $NCCL_HOME)"
    fi
    NPROC=$(nproc 2>/dev/null || echo 2)
    export MAKEFLAGS=${MAKEFLAGS:--j$NPROC} HOROVOD_BUILD_PARALLEL=${HOROVOD_BUILD_PARALLEL:-$NPROC}

    log "building wheel $KEY (a few minutes on 2 cores)"
    mkdir -p "$WORK/wheel"
    "$PYTHON" -m pip wheel -q --no-build-isolation --no-deps -w "$WORK/wheel" "$SRC"
    # Atomic cache publish: a half-written directory never looks like a cached wheel.
    mkdir -p "$WHEEL_DIR"
    rm -rf "$CACHED.tmp.$$"
    mkdir "$CACHED.tmp.$$"
    cp "$WORK"/wheel/horovod-*.whl "$CACHED.tmp.$$/"
    rm -rf "$CACHED"
    mv "$CACHED.tmp.$$" "$CACHED"
    log "cached wheel in $CACHED"
else
    log "using cached wheel $CACHED"
fi

"$PYTHON" -m pip install -q --no-deps --force-reinstall "$CACHED"/horovod-*.whl
# Horovod's runtime Python deps (kept out of the --no-deps build so pip never touches TensorFlow).
"$PYTHON" -m pip install -q cloudpickle psutil pyyaml packaging cffi

check_build || { "$PYTHON" -m horovod.runner.launch --check-build >&2 || true
                 die "horovodrun --check-build does not list TensorFlow, MPI and Gloo"; }
HVD_DIR=$("$PYTHON" -c 'import importlib.util as u; print(u.find_spec("horovod").submodule_search_locations[0])')
echo "$STAMP_ID" >"$HVD_DIR/.lenshpc-verified"
log "OK: Horovod $HOROVOD_VERSION with TensorFlow, MPI and Gloo (wheel cached in $CACHED)"
