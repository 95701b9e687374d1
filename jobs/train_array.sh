#!/usr/bin/env bash
# Train one config for many seeds: array task i trains seed i, data-parallel over every task of its allocation
# (one Horovod rank per GPU, started by srun), inside the Apptainer image when LENSHPC_IMAGE is set.
#
#   mkdir -p logs && sbatch jobs/train_array.sh CONFIG [lenshpc train args...]
#   sbatch --array=0-2 --time=00:20:00 jobs/train_array.sh configs/tiny.yaml --set train.chunks=10
#   sbatch --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 jobs/train_array.sh configs/thesis/bce.yaml
#
# Every #SBATCH line below is a default: a flag given to sbatch overrides it.  Run dirs:
# $LENSHPC_RESULTS/<name>/seed<i> (default LENSHPC_RESULTS=runs), <name> as lenshpc resolves it (`--set name=…` wins).
# lenshpc skips a seed whose run dir is DONE with the same config, so re-submitting a study trains what is missing.
#
# Preemption / time limit: SLURM sends SIGUSR1 120 s before the end (--signal) to every rank; lenshpc finishes the
# chunk, checkpoints and exits 3; this script then requeues the task (`scontrol requeue`), and the requeued task
# resumes from the checkpoint (the result equals an uninterrupted run).  See jobs/README.md for all env variables.
#SBATCH --job-name=lenshpc-train
#SBATCH --array=0-9
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=4
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%A_%a.out
#SBATCH --open-mode=append
#SBATCH --signal=USR1@120
#SBATCH --requeue
set -euo pipefail

# SLURM runs a COPY of this script from its spool directory: find jobs/_lib.sh through the submitted path.
_jobs_dir() {
    local cmd d
    if [[ -n "${LENSHPC_JOBS_DIR:-}" ]]; then printf '%s\n' "$LENSHPC_JOBS_DIR"; return; fi
    if [[ -n "${SLURM_JOB_ID:-}" ]] && command -v scontrol >/dev/null; then
        cmd=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -1)
        d=$(dirname "${cmd:-.}")
        [[ "$d" = /* ]] || d="${SLURM_SUBMIT_DIR:-$PWD}/$d"
        [[ -f "$d/_lib.sh" ]] && { printf '%s\n' "$d"; return; }
        [[ -f "${SLURM_SUBMIT_DIR:-$PWD}/jobs/_lib.sh" ]] && { printf '%s\n' "${SLURM_SUBMIT_DIR:-$PWD}/jobs"; return; }
    fi
    cd "$(dirname "${BASH_SOURCE[0]}")" && pwd
}
# shellcheck source=jobs/_lib.sh
source "$(_jobs_dir)/_lib.sh"

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi
CONFIG=$1; shift
if [[ ! -f "$CONFIG" ]]; then
    echo "train_array.sh: config file not found: $CONFIG (relative paths are taken from the submit directory" \
         "$(pwd); give an existing YAML, e.g. configs/tiny.yaml)" >&2
    exit 2
fi

SEED=${SLURM_ARRAY_TASK_ID:-${LENSHPC_SEED:-0}}
# The run dir is the one lenshpc itself resolves (the config's name, a later `--set name=…` winning, the seed, a
# --run-dir among the arguments): asked once, here, never re-parsed from the YAML.
RUN_DIR=$(resolve_run_dir "${LENSHPC_RESULTS:-runs}" "$CONFIG" --seed "$SEED" "$@") || {
    rc=$?
    echo "train_array.sh: lenshpc rejected the arguments above (exit $rc): $CONFIG $*" >&2
    exit "$rc"
}
echo "lenshpc job ${SLURM_JOB_ID:-local} (array ${SLURM_ARRAY_JOB_ID:-}-${SLURM_ARRAY_TASK_ID:-}," \
     "restart ${SLURM_RESTART_COUNT:-0}) on $(hostname): seed $SEED → $RUN_DIR" \
     "(${SLURM_NNODES:-1} node(s), ${SLURM_NTASKS:-1} task(s))" >&2

# No DONE shortcut here: lenshpc compares a finished run's config with this one and decides (skip, refuse, --force).
check_gpu_layout

rc=0
run_or_print train "$CONFIG" --seed "$SEED" --run-dir "$RUN_DIR" --distributed "${LENSHPC_DISTRIBUTED:-auto}" "$@" \
    || rc=$?

if [[ $rc == 3 ]]; then  # lenshpc.errors.EXIT_PREEMPTED: a checkpoint was written on SIGUSR1/SIGTERM
    if [[ -n "${SLURM_JOB_ID:-}" && "${LENSHPC_REQUEUE:-1}" == 1 ]]; then
        echo "preempted after a checkpoint: requeueing job $SLURM_JOB_ID (it resumes from $RUN_DIR/checkpoint)" >&2
        scontrol requeue "$SLURM_JOB_ID"
        exit 0
    fi
    echo "preempted after a checkpoint; re-submit (or re-run) the same command to resume" >&2
fi
exit "$rc"
