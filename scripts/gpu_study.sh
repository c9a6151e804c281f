#!/usr/bin/env bash
# The study of issue 6 on the GPU machine: vit-small/4 at 32 px, batch 64, Adam 3e-4, crop+flip,
# one run per DATASET:RATIO[:TARGETS] job (ratio 1.0 = exact; others = the sampled strategy,
# WTA-CRS unless STUDY_BACKWARD says otherwise, on TARGETS, default all six). Jobs are spread over the GPUs (all, or those listed in
# STUDY_GPUS, e.g. STUDY_GPUS=0,1,2), one process per GPU at a time (so img/s is that of a GPU
# of its own); each GPU works through its share of the jobs in order.
#
# Usage: bash scripts/gpu_study.sh EPOCHS JOB... [-- extra train_vit flags]
# STUDY_RECOMPUTE_GELU=1 adds --recompute-gelu to the sampled jobs (their TARGETS must leave out fc1).
# STUDY_BACKWARD (default wta-crs) names the sampled strategy of the jobs whose ratio is not 1.0.
#   JOB: DATASET:RATIO[:TARGETS], DATASET one of cifar10 | cifar100 | cifar100-coarse | fashion-mnist
#   e.g. bash scripts/gpu_study.sh 8 fashion-mnist:1.0 cifar10:0.3 cifar10:0.5:qkv,proj,fc1,fc2 -- --precision tf32
# Carried (the carried data must stay under 64 MiB per call): train_vit at .carry/bin/train_vit,
# .carry/cifar10-jpeg.tar.gz and/or .carry/cifar100-jpeg.tar.gz with the converters from
# shared/tools (.carry/cifar10_jpeg_to_bin.py, .carry/cifar100_to_bin.py) for the CIFAR jobs,
# .carry/fashion-mnist/*.gz for Fashion-MNIST.
# Writes to $STUDY_DIR (default $OUT/study, or gpu-logs/study): JOB.log (the whole output of the run) and JOB.jsonl
# (its metrics), JOB with ':' -> '-' and ',' -> '_'; and appends the final summary of each run to
# $OUT/study-summary.txt.
set -uo pipefail
epochs=$1
shift
jobs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do jobs+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
export LD_LIBRARY_PATH=$tg_libs
out=${OUT:-gpu-logs}
# Two invocations at once (e.g. two seeds) need two folders: STUDY_DIR names this one's.
logs=${STUDY_DIR:-$out/study}
mkdir -p "$logs" /tmp/study-data/cifar10 /tmp/study-data/cifar100
train_vit=${TRAIN_VIT:-.carry/bin/train_vit}

label() { local l=${1//:/-}; echo "${l//,/_}"; }

# A job whose log exists would interleave its lines with another run's: refuse before any work.
for job in "${jobs[@]}"; do
  if [ -e "$logs/$(label "$job").log" ]; then
    echo "gpu_study.sh: $logs/$(label "$job").log exists; give each invocation its own STUDY_DIR" >&2
    exit 1
  fi
done

# Convert each carried archive the jobs need (once per machine), in parallel.
needs() { printf '%s\n' "${jobs[@]}" | grep -q "^$1"; }
convert() {  # NAME SCRIPT; a lock makes a concurrent invocation wait for the first conversion
  (
    flock 9
    [ -f "/tmp/study-data/$1/.converted" ] && exit 0
    python3 ".carry/$2" --archive ".carry/$1-jpeg.tar.gz" "/tmp/study-data/$1" > "$logs/convert-$1.txt" 2>&1 &&
      touch "/tmp/study-data/$1/.converted"
  ) 9> "/tmp/study-data/$1.lock"
}
needs cifar10: && convert cifar10 cifar10_jpeg_to_bin.py &
needs cifar100 && convert cifar100 cifar100_to_bin.py &
wait

run_job() {  # JOB GPU [flags]
  local job=$1 gpu=$2
  shift 2
  local dataset ratio targets data_dir backward
  IFS=: read -r dataset ratio targets <<< "$job"
  case "$dataset" in
    cifar10) data_dir=/tmp/study-data/cifar10 ;;
    cifar100|cifar100-coarse) data_dir=/tmp/study-data/cifar100 ;;
    *) data_dir=.carry/fashion-mnist ;;
  esac
  if [ "$ratio" = "1.0" ]; then backward=(--backward exact)
  else
    backward=(--backward "${STUDY_BACKWARD:-wta-crs}" --ratio "$ratio" --wta-targets "${targets:-all}")
    # --recompute-gelu needs fc1 out of the targets (train_vit refuses a sampled fc1 with it).
    if [ "${STUDY_RECOMPUTE_GELU:-0}" = 1 ]; then backward+=(--recompute-gelu); fi
  fi
  local name
  name=$(label "$job")
  CUDA_VISIBLE_DEVICES=$gpu "$train_vit" --dataset "$dataset" --data-dir "$data_dir" --model vit-small --patch 4 --img 32 \
    --batch-size 64 --optimizer adam --lr 3e-4 --weight-decay 0 --augment crop-flip --epochs "$epochs" "${backward[@]}" \
    --metrics-out "$logs/$name.jsonl" --log-every 200 "$@" > "$logs/$name.log" 2>&1
  echo "rc=$? (GPU $gpu)" >> "$logs/$name.log"
}

if [ -n "${STUDY_GPUS:-}" ]; then IFS=, read -r -a gpu_ids <<< "$STUDY_GPUS"
else mapfile -t gpu_ids < <(nvidia-smi -L | awk '{print NR - 1}'); fi
[ "${#gpu_ids[@]}" -ge 1 ] || { echo "gpu_study.sh: no GPU found" >&2; exit 1; }
for ((g = 0; g < ${#gpu_ids[@]}; ++g)); do
  (
    for ((j = g; j < ${#jobs[@]}; j += ${#gpu_ids[@]})); do
      run_job "${jobs[j]}" "${gpu_ids[g]}" "$@"
    done
  ) &
done
wait

for job in "${jobs[@]}"; do
  log="$logs/$(label "$job").log"
  echo "===== $job"
  grep -E "test acc|^summary|best|peak|img/s|rc=|error" "$log" | grep -v "^epoch .* step .* loss" | tail -n 16
done | tee -a "$out/study-summary.txt"
