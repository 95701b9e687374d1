# Shared by the lenshpc job templates (sourced, not submitted).  Pure functions that print commands, so tests can
# check the exact launch line without SLURM or Apptainer (LENSHPC_DRY_RUN=1 in the job scripts).
#
# Environment (all optional):
#   LENSHPC_IMAGE        Apptainer image (.sif); set → every rank runs inside it, unset → bare `lenshpc`
#   LENSHPC_BIND         extra bind mounts for apptainer, comma separated (src[:dst[:opts]]); $PWD is always bound
#   LENSHPC_APPTAINER    the apptainer executable (default: apptainer; `singularity` also works)
#   LENSHPC_NV           1/0: pass --nv to apptainer (default 1: harmless on CPU nodes, required on GPU nodes)
#   LENSHPC_SRUN_MPI     srun --mpi plugin (default pmix; "none" omits the flag, e.g. for sites whose default works)
#   LENSHPC_SRUN_WAIT    seconds srun waits for the other ranks after one exits before killing them (default 120)
#   LENSHPC_SRUN_ARGS    extra srun arguments (word-split), e.g. "--cpu-bind=cores"
#   LENSHPC_LAUNCHER     "srun" (default) or "none" (run the command directly, e.g. outside SLURM)
#   LENSHPC_CMD          how to call lenshpc (default: lenshpc if on PATH, else "python3 -m lenshpc")

# lenshpc_cmd — the lenshpc entry point as words (inside the image it is always `lenshpc`).
lenshpc_cmd() {
    if [[ -n "${LENSHPC_CMD:-}" ]]; then
        printf '%s\n' "$LENSHPC_CMD"
    elif [[ -n "${LENSHPC_IMAGE:-}" ]] || command -v lenshpc >/dev/null 2>&1; then
        printf 'lenshpc\n'
    else
        printf 'python3 -m lenshpc\n'
    fi
}

# launch_cmd ARGS... — print (NUL-free, one word per line) the full command that runs `lenshpc ARGS...` on every
# task of the current allocation: srun [--mpi=pmix] [apptainer exec --nv --bind … IMAGE] lenshpc ARGS...
# The hybrid MPI model: the HOST's srun starts the ranks and wires them up through PMIx; the container's own OpenMPI
# (which Horovod links) connects to that PMIx server, so no mpirun runs inside the image.
launch_cmd() {
    local -a cmd=()
    if [[ "${LENSHPC_LAUNCHER:-srun}" == srun ]]; then
        cmd+=(srun)
        local mpi=${LENSHPC_SRUN_MPI:-pmix}
        [[ "$mpi" == none ]] || cmd+=("--mpi=$mpi")
        # A crashed rank must not leave the others blocked in an allreduce until the time limit: end the step
        # LENSHPC_SRUN_WAIT s after the first task exits.  (Not --kill-on-bad-exit: ranks leaving with the
        # "preempted" code 3 a few ms apart would kill each other and hide the code the requeue logic needs.)
        cmd+=("--wait=${LENSHPC_SRUN_WAIT:-120}")
        if [[ -n "${LENSHPC_SRUN_ARGS:-}" ]]; then
            local -a extra; read -r -a extra <<<"$LENSHPC_SRUN_ARGS"; cmd+=("${extra[@]}")
        fi
    fi
    if [[ -n "${LENSHPC_IMAGE:-}" ]]; then
        cmd+=("${LENSHPC_APPTAINER:-apptainer}" exec)
        [[ "${LENSHPC_NV:-1}" == 1 ]] && cmd+=(--nv)
        local binds="$PWD"
        [[ -n "${LENSHPC_BIND:-}" ]] && binds="$binds,$LENSHPC_BIND"
        cmd+=(--bind "$binds" --pwd "$PWD" "$LENSHPC_IMAGE")
    fi
    local -a entry; read -r -a entry <<<"$(lenshpc_cmd)"
    cmd+=("${entry[@]}" "$@")
    printf '%s\n' "${cmd[@]}"
}

# run_or_print ARGS... — run `launch_cmd ARGS...`, or print it shell-quoted when LENSHPC_DRY_RUN=1.
run_or_print() {
    local -a cmd; mapfile -t cmd < <(launch_cmd "$@")
    if [[ "${LENSHPC_DRY_RUN:-0}" == 1 ]]; then
        printf '%q ' "${cmd[@]}"; printf '\n'
        return 0
    fi
    "${cmd[@]}"
}

# check_gpu_layout — one task per GPU: warn loudly when the allocation asks for GPUs but not as many tasks per node.
check_gpu_layout() {
    local gpn=${SLURM_GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-}} tpn=${SLURM_NTASKS_PER_NODE:-1}
    gpn=${gpn##*:}   # "a100:4" → "4"
    if [[ "$gpn" =~ ^[0-9]+$ ]] && ((gpn > 0)) && [[ "$tpn" =~ ^[0-9]+$ ]] && ((gpn != tpn)); then
        echo "lenshpc job: WARNING: $gpn GPUs per node but $tpn tasks per node; Horovod runs one rank per GPU —" \
             "submit with --ntasks-per-node=$gpn --gpus-per-node=$gpn" >&2
    fi
}

# resolve_run_dir ROOT CONFIG [lenshpc train args...] — print the run dir `lenshpc train` would write under ROOT
# (`lenshpc train … --print-run-dir`: one process, no srun; inside LENSHPC_IMAGE when set, except in a dry run,
# which resolves with the host's lenshpc so the launch line can be checked where there is no Apptainer).
resolve_run_dir() {
    local root=$1; shift
    local -a cmd
    if [[ "${LENSHPC_DRY_RUN:-0}" == 1 ]]; then
        mapfile -t cmd < <(LENSHPC_LAUNCHER=none LENSHPC_IMAGE='' launch_cmd train "$@" --runs-root "$root" --print-run-dir)
    else
        mapfile -t cmd < <(LENSHPC_LAUNCHER=none launch_cmd train "$@" --runs-root "$root" --print-run-dir)
    fi
    "${cmd[@]}"
}


# shard_count ENV_NAME VALUE — validate a shard count (positive integer) or exit 2 naming the variable.
shard_count() {
    if ! [[ "$2" =~ ^[0-9]+$ ]] || (($2 < 1)); then
        echo "$(basename "$0"): $1 must be a positive integer, got '$2'" >&2; exit 2
    fi
    printf '%s\n' "$2"
}

# submit_shard_array NAME SCRIPT K PREFIX NPOS POS... ARGS... — on a login node: submit SCRIPT as an array of K
# shard tasks, then one merge job (afterok, PREFIX_STEP=merge) with the same arguments; print
# "NAME shards <id>" and "NAME merge <id>" (or, with LENSHPC_DRY_RUN=1, the two sbatch lines).  The first NPOS
# arguments are the script's positionals, the rest its pass-through arguments.  Extra sbatch options come from the
# variable PREFIX_SBATCH (word-split); the jobs get PREFIX_SHARDS=K and LENSHPC_JOBS_DIR.  Shared by the
# "array over shards + merge" templates (maxtree_array.sh, rank_array.sh).
submit_shard_array() {
    local name=$1 script=$2 k=$3 prefix=$4 npos=$5; shift 5
    local pos=("${@:1:npos}"); shift "$npos"
    local sbatch_var="${prefix}_SBATCH" extra=() quoted
    read -r -a extra <<<"${!sbatch_var:-}"
    quoted=$(printf '%q ' "$script" "${pos[@]}")
    if [[ "${LENSHPC_DRY_RUN:-0}" == 1 ]]; then
        printf 'sbatch --parsable --array=0-%d %s%s%s\n' $((k - 1)) "${extra[*]:+${extra[*]} }" "$quoted" "$*"
        printf 'sbatch --parsable --dependency=afterok:<array> --export=ALL,%s_STEP=merge %s%s%s\n' "$prefix" \
            "${extra[*]:+${extra[*]} }" "$quoted" "$*"
        return 0
    fi
    command -v sbatch >/dev/null || { echo "$(basename "$script"): sbatch not found: run this on a SLURM login node" \
        "(or use the command's --executor local)" >&2; return 2; }
    mkdir -p logs
    export LENSHPC_JOBS_DIR=$JOBS "${prefix}_SHARDS=$k"
    local aid mid
    aid=$(sbatch --parsable --array=0-$((k - 1)) "${extra[@]}" "$script" "${pos[@]}" "$@"); aid=${aid%%;*}
    mid=$(sbatch --parsable --dependency=afterok:"$aid" --export=ALL,"${prefix}"_STEP=merge --cpus-per-task=1 \
          "${extra[@]}" "$script" "${pos[@]}" "$@"); mid=${mid%%;*}
    echo "$name shards $aid (array 0-$((k - 1)))"
    echo "$name merge $mid"
}

# usage_or_continue MIN ARGS... — print the calling script's header comment and exit: 0 for -h/--help, 2 with fewer
# than MIN arguments.
usage_or_continue() {
    local min=$1; shift
    if [[ $# -lt $min || "${1:-}" == -h || "${1:-}" == --help ]]; then
        sed -n '2,/^#SBATCH/{/^#SBATCH/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[-1]}"
        [[ "${1:-}" == -h || "${1:-}" == --help ]] && exit 0 || exit 2
    fi
}

# need_path -f|-d PATH WHAT [HINT] — exit 2 with "SCRIPT: WHAT not found: PATH (HINT; …)" unless PATH is a file (-f) or
# a directory (-d).
need_path() {
    test "$1" "$2" || { echo "$(basename "$0"): $3 not found: $2 (${4:+$4; }relative paths are taken from $(pwd))" >&2
        exit 2; }
}

# shard_array_job NAME PREFIX NPOS POS... ARGS... — the whole of an "array over shards + merge" template, called with
# the script's arguments: on a login node submit_shard_array; in the merge job (PREFIX_STEP=merge)
# `lenshpc WORDS... --shards K --executor inline --merge-only ARGS...`; in array task i the same with
# `--shard-index i` and SHARD_WORDS... instead of --merge-only.  The script sets the arrays WORDS (the lenshpc words
# before the shard options, e.g. (rank "$MODEL" "$CAT")) and SHARD_WORDS (extra words of the shard tasks, may be
# empty).  K comes from PREFIX_SHARDS (default 8).
shard_array_job() {
    local name=$1 prefix=$2 npos=$3; shift 3
    local shards_var="${prefix}_SHARDS" step_var="${prefix}_STEP" k
    k=$(shard_count "$shards_var" "${!shards_var:-8}")
    export LENSHPC_SRUN_MPI=${LENSHPC_SRUN_MPI:-none}   # one plain task per shard: no MPI wiring needed
    if [[ -z "${SLURM_JOB_ID:-}" ]]; then  # login node: submit the array and the merge job that waits for it
        submit_shard_array "$name" "$0" "$k" "$prefix" "$npos" "$@"
        return
    fi
    shift "$npos"
    if [[ "${!step_var:-}" == merge ]]; then
        echo "lenshpc $name merge (job ${SLURM_JOB_ID}) on $(hostname): $k shards (lenshpc ${WORDS[*]})" >&2
        run_or_print "${WORDS[@]}" --shards "$k" --executor inline --merge-only "$@"
        return
    fi
    local i=${SLURM_ARRAY_TASK_ID:?"$(basename "$0"): not an array task; submit it with bash $0 (see --help)"}
    echo "lenshpc $name shard $i/$k (job ${SLURM_ARRAY_JOB_ID:-}_$i) on $(hostname)" >&2
    run_or_print "${WORDS[@]}" --shards "$k" --shard-index "$i" --executor inline "${SHARD_WORDS[@]}" "$@"
}
