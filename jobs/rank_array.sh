#!/usr/bin/env bash
# Catalogue ranking with plain sbatch: an array over shards, then one merge job (afterok).
#
#   bash jobs/rank_array.sh MODEL CATALOGUE.h5 [lenshpc rank args...]       # on a login node: submits both
#   RANK_SHARDS=32 RANK_SBATCH="--partition=gpu --gres=gpu:1" bash jobs/rank_array.sh runs/x/seed0 kids.h5 --tracers is_lens
#
# Array task i runs `lenshpc rank MODEL CAT --shards K --shard-index i --executor inline` (one score file,
# OUT/shards/scores-iiii-of-KKKK.h5, written atomically); the merge job runs `--merge-only` and writes ranked.csv,
# top.png and, with tracers, tracer_rank_curve.png + rank_metrics.json.  Finished shards are skipped, so
# re-submitting after a failure only recomputes what is missing.  The rank arguments (--out, --batch-size, --tracers,
# --top …) go to every step.  Environment: RANK_SHARDS (K, default 8), RANK_SBATCH (extra sbatch options,
# word-split), and the LENSHPC_* variables of jobs/_lib.sh (LENSHPC_IMAGE: inside Apptainer; LENSHPC_DRY_RUN=1 prints).
#SBATCH --job-name=lenshpc-rank
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

# SLURM runs a COPY of this script: find jobs/_lib.sh through the submit directory (or LENSHPC_JOBS_DIR)
JOBS=${LENSHPC_JOBS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
[[ -z "${LENSHPC_JOBS_DIR:-}" && -n "${SLURM_JOB_ID:-}" && -f "${SLURM_SUBMIT_DIR:-$PWD}/jobs/_lib.sh" ]] \
    && JOBS=${SLURM_SUBMIT_DIR:-$PWD}/jobs
# shellcheck source=jobs/_lib.sh
source "$JOBS/_lib.sh"

usage_or_continue 2 "$@"
need_path -d "$1" model "a run or ensemble run directory"
need_path -f "$2" catalogue
WORDS=(rank "$1" "$2") SHARD_WORDS=()
shard_array_job rank RANK 2 "$@"
