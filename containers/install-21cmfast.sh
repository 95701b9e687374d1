#!/usr/bin/env bash
# The one way lenshpc installs 21cmFAST (the optional extra `.[cosmo21cm]`): CI (tests/setup.sh), the Apptainer
# images (containers/*.def) and a user's virtualenv all call this script.
#
# Why a script: PyPI's 21cmfast 4.1.1 (the newest for Python 3.11) is a source archive with a CFFI C extension that
# needs FFTW3 and GSL headers and a C compiler, and its dependency `classy` (CLASS) is a source archive too: ~3 min
# of compiling on one core.  The built wheels (and the ones downloaded with them) are cached, keyed by the 21cmFAST
# version, the Python tag and the machine, so a second install (another venv, a re-run of CI) takes seconds and
# needs no network.
#
# Usage:   bash containers/install-21cmfast.sh [--force]
# Env:     PYTHON              interpreter to install into (default: python3)
#          LENSHPC_CACHE       cache root (default: $HOME/.cache/lenshpc); wheels go to $LENSHPC_CACHE/wheels/
#          C21_VERSION         default 4.1.1 (the version lenshpc's 21-cm code and docs were measured with)
# Needs:   Debian libfftw3-dev libgsl-dev gcc (installed here when run as root with apt-get).
set -euo pipefail

PYTHON=${PYTHON:-python3}
C21_VERSION=${C21_VERSION:-4.1.1}
CACHE_ROOT=${LENSHPC_CACHE:-${HOME:-/root}/.cache/lenshpc}
WHEEL_DIR="$CACHE_ROOT/wheels"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { printf '[install-21cmfast] %s\n' "$*" >&2; }
die() { printf '[install-21cmfast] ERROR: %s\n' "$*" >&2; exit 1; }

PY_TAG=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
KEY="21cmfast-${C21_VERSION}-${PY_TAG}-$(uname -m)"
CACHED="$WHEEL_DIR/$KEY"

# ---- fast path: this version installed and verified (a stamp written after the check below passed) -------------
PKG_DIR=$("$PYTHON" -c 'import importlib.util as u; s = u.find_spec("py21cmfast"); print(s.submodule_search_locations[0] if s else "")' 2>/dev/null || true)
INSTALLED=$("$PYTHON" -c 'import importlib.metadata as m
try:
    print(m.version("21cmFAST"))
except m.PackageNotFoundError:
    pass' 2>/dev/null || true)
if [[ $FORCE == 0 && -n "$PKG_DIR" && "$INSTALLED" == "$C21_VERSION" ]] && grep -qx "$KEY" "$PKG_DIR/.lenshpc-verified" 2>/dev/null; then
    log "21cmFAST $C21_VERSION already installed and verified for $PY_TAG — nothing to do."
    exit 0
fi

# ---- system libraries: FFTW3 + GSL headers and a C compiler (to build; the libraries also at run time) -----------
missing_debs() {
    for p in libfftw3-dev libgsl-dev gcc; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || printf '%s ' "$p"
    done
}
if command -v dpkg-query >/dev/null; then
    MISSING=$(missing_debs)
    if [[ -n "$MISSING" ]]; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
            log "apt-get install $MISSING"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            # shellcheck disable=SC2086 # word splitting of the package list is intended
            apt-get install -y -qq --no-install-recommends $MISSING
        else
            die "missing Debian packages: $MISSING; as root: apt-get install -y $MISSING"
        fi
    fi
fi

# ---- build (or reuse) the wheels -----------------------------------------------------------------------------------
if [[ $FORCE == 1 ]] || ! compgen -G "$CACHED/21cmfast-${C21_VERSION}-*.whl" >/dev/null \
        || ! compgen -G "$CACHED/classy-*.whl" >/dev/null; then
    command -v gcc >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || die "no C compiler; apt-get install -y gcc"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/lenshpc-21cmfast.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    # Pin what is already installed (numpy, scipy, h5py, ...) so the wheels fit this environment, never replace it.
    "$PYTHON" -m pip freeze 2>/dev/null | grep -E '^[A-Za-z0-9_.-]+==' >"$WORK/constraints.txt" || true
    log "building 21cmfast==$C21_VERSION and its dependencies' wheels (~3 min on one core: classy is most of it)"
    "$PYTHON" -m pip wheel -q -c "$WORK/constraints.txt" -w "$WORK/wheels" "21cmfast==$C21_VERSION"
    # Atomic cache publish: a half-written directory never looks like a cached build.
    mkdir -p "$WHEEL_DIR"
    rm -rf "$CACHED.tmp.$$"
    mv "$WORK/wheels" "$CACHED.tmp.$$"
    rm -rf "$CACHED"
    mv "$CACHED.tmp.$$" "$CACHED"
    log "cached $(ls "$CACHED" | wc -l) wheel(s) in $CACHED"
else
    log "using cached wheels $CACHED"
fi

# --no-index: every wheel it needs is in the cache (offline); already-installed requirements are left as they are.
"$PYTHON" -m pip install -q --no-index --find-links "$CACHED" "21cmfast==$C21_VERSION"

# ---- verify: the C extension loads and a tiny box runs (0.2 s) ----------------------------------------------------
"$PYTHON" - <<'EOF' || die "21cmFAST installed but a test box failed (see above)"
import warnings

import numpy as np
import py21cmfast as p21c

warnings.simplefilter("ignore")  # its resolution advice for this deliberately tiny box

inputs = p21c.InputParameters.from_template("simple", random_seed=1, HII_DIM=8, BOX_LEN=48.0, N_THREADS=1)
ic = p21c.compute_initial_conditions(inputs=inputs)
box = p21c.run_coeval(inputs=inputs, out_redshifts=[8.0], write=False, initial_conditions=ic)[0].brightness_temp
assert box.shape == (8, 8, 8) and np.isfinite(box).all(), box
EOF
PKG_DIR=$("$PYTHON" -c 'import importlib.util as u; print(u.find_spec("py21cmfast").submodule_search_locations[0])')
echo "$KEY" >"$PKG_DIR/.lenshpc-verified"
log "OK: 21cmFAST $C21_VERSION (wheels cached in $CACHED)"
