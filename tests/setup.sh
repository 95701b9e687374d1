#!/usr/bin/env bash
# The SYSTEM side of the test suite (tests/run.sh calls it after `pip install -e .[test]`):
#   1. Debian packages: SLURM (slurm-wlm, slurmdbd, MariaDB, munge), OpenMPI + PMIx (srun --mpi=pmix), cmake/g++
#      (to build Horovod) — via tests/cluster/slurm-local.sh install, which also restarts slurmd when PMIx arrives
#      after it started; chromium + chromium-driver (the inspection page's browser test, tests/test_inspect.py);
#   2. mpi4py (built against that OpenMPI);
#   3. Horovod with TensorFlow + MPI + Gloo, built by containers/install-horovod.sh (cached wheel);
#   4. 21cmFAST (the extra .[cosmo21cm], with Debian libfftw3-dev libgsl-dev), by containers/install-21cmfast.sh.
# Idempotent: a second run checks and returns in about a second.  Works as root on a fresh Debian 12 machine; as a
# normal user it says what it cannot do and goes on (the tests that need those parts then skip, outside CI).
# The Apptainer images run the same pieces (containers/*.def).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
say() { printf '[setup] %s\n' "$*" >&2; }

# --- 1. apt packages -------------------------------------------------------------------------------------------
# Python headers are needed to compile Horovod and mpi4py; a pyenv/conda Python ships its own, Debian's needs -dev.
PY_H=$("$PYTHON" -c 'import sysconfig, os; print(os.path.join(sysconfig.get_paths()["include"], "Python.h"))')
EXTRA="cmake g++ make procps chromium chromium-driver"
[ -f "$PY_H" ] || EXTRA="$EXTRA python3-dev"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    LENSHPC_EXTRA_APT="$EXTRA" bash tests/cluster/slurm-local.sh install
elif command -v dpkg-query >/dev/null; then
    missing=$(for p in slurm-wlm slurmdbd mariadb-server munge openmpi-bin libopenmpi-dev libpmix-dev $EXTRA; do
                  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || printf '%s ' "$p"; done)
    [ -z "$missing" ] || say "not root: cannot apt-get install: $missing (SLURM/MPI tests will skip); as root run: bash tests/setup.sh"
else
    say "no apt-get here: install SLURM, OpenMPI (with PMIx), cmake and g++ yourself (see docs/cluster.md)"
fi

# --- 2. mpi4py --------------------------------------------------------------------------------------------------
if "$PYTHON" -c 'import mpi4py' 2>/dev/null; then
    :
elif command -v mpicc >/dev/null; then
    say "pip install mpi4py (compiles against $(command -v mpicc))"
    "$PYTHON" -m pip install -q 'mpi4py>=3.1' || say "mpi4py failed to install; the MPI tests will skip"
else
    say "mpicc not found: skipping mpi4py (needs libopenmpi-dev)"
fi

# --- 3. Horovod -------------------------------------------------------------------------------------------------
if command -v cmake >/dev/null && command -v mpicxx >/dev/null; then
    bash containers/install-horovod.sh || say "Horovod build failed (see above); the Horovod tests will skip outside CI"
else
    say "cmake or mpicxx missing: cannot build Horovod (install cmake g++ libopenmpi-dev as root, then re-run)"
fi

# --- 4. 21cmFAST (the 21-cm tests; they fail in CI without it) --------------------------------------------------
bash containers/install-21cmfast.sh || say "21cmFAST install failed (see above); the 21-cm tests will skip outside CI"
