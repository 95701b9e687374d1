#!/usr/bin/env bash
# The project's one test command (README "Run the tests"; .ci/run calls exactly this).
# 1. installs lenshpc with its Python dependencies (TensorFlow CPU build etc.),
# 2. installs the system side the suite needs (tests/setup.sh: OpenMPI, PMIx, SLURM + slurmdbd + MariaDB + munge,
#    mpi4py, Horovod built by containers/install-horovod.sh) — idempotent, seconds on a second run,
# 3. runs the whole suite, cluster tests included (they start a real local SLURM as root).
# Extra arguments go to pytest, e.g. `bash tests/run.sh -m "not slurm"` or `bash tests/run.sh tests/test_config.py`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install -q -e '.[test]'
bash tests/setup.sh
exec python3 -m pytest "$@"
