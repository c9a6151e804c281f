#!/usr/bin/env bash
# The study of issue 6 on the GPU machine: vit-small/4 at 32 px, batch 64, Adam 3e-4, crop+flip,
# one run per DATASET:RATIO job (ratio 1.0 = exact; others = WTA-CRS on all six targets with GELU
# recompute). Jobs are spread over the machine's GPUs, one process per GPU at a time (so img/s is
# that of a GPU of its own); each GPU works through its share of the jobs in order.
#
# Usage: bash scripts/gpu_study.sh EPOCHS JOB... [-- extra train_vit flags]
#   JOB: DATASET:RATIO, DATASET one of cifar10 | cifar100 | cifar100-coarse | fashion-mnist
#   e.g. bash scripts/gpu_study.sh 8 fashion-mnist:1.0 fashion-mnist:0.5 cifar10:0.3 -- --precision tf32
# Carried (the carried data must stay under 64 MiB per call): train_vit at .carry/bin/train_vit,
# .carry/cifar10-jpeg.tar.gz and/or .carry/cifar100-jpeg.tar.gz with the converters from
# shared/tools (.carry/cifar10_jpeg_to_bin.py, .carry/cifar100_to_bin.py) for the CIFAR jobs,
# .carry/fashion-mnist/*.gz for Fashion-MNIST.
# Writes to $OUT/study (or gpu-logs/study): DATASET-RATIO.log (the whole output of the run),
# DATASET-RATIO.jsonl (its metrics); and $OUT/study-summary.txt (the final summary of each run).
set -uo pipefail
epochs=$1
shift
jobs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do jobs+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
out=${OUT:-gpu-logs}
logs="$out/study"
mkdir -p "$logs" /tmp/study-data/cifar10 /tmp/study-data/cifar100
train_vit=${TRAIN_VIT:-.carry/bin/train_vit}

# Convert each carried archive the jobs need, in parallel.
needs() { printf '%s\n' "${jobs[@]}" | grep -q "^$1"; }
needs cifar10: && python3 .carry/cifar10_jpeg_to_bin.py --archive .carry/cifar10-jpeg.tar.gz /tmp/study-data/cifar10 > "$logs/convert-cifar10.txt" 2>&1 &
needs cifar100 && python3 .carry/cifar100_to_bin.py --archive .carry/cifar100-jpeg.tar.gz /tmp/study-data/cifar100 > "$logs/convert-cifar100.txt" 2>&1 &
wait

run_job() {  # DATASET RATIO GPU [flags]
  local dataset=$1 ratio=$2 gpu=$3
  shift 3
  local data_dir backward
  case "$dataset" in
    cifar10) data_dir=/tmp/study-data/cifar10 ;;
    cifar100|cifar100-coarse) data_dir=/tmp/study-data/cifar100 ;;
    *) data_dir=.carry/fashion-mnist ;;
  esac
  if [ "$ratio" = "1.0" ]; then backward=(--backward exact); else backward=(--backward wta-crs --ratio "$ratio" --recompute-gelu); fi
  CUDA_VISIBLE_DEVICES=$gpu "$train_vit" --dataset "$dataset" --data-dir "$data_dir" --model vit-small --patch 4 --img 32 \
    --batch-size 64 --optimizer adam --lr 3e-4 --weight-decay 0 --augment crop-flip --epochs "$epochs" "${backward[@]}" \
    --metrics-out "$logs/$dataset-$ratio.jsonl" --log-every 200 "$@" > "$logs/$dataset-$ratio.log" 2>&1
  echo "rc=$? (GPU $gpu)" >> "$logs/$dataset-$ratio.log"
}

gpus=$(nvidia-smi -L | wc -l)
[ "$gpus" -ge 1 ] || { echo "gpu_study.sh: no GPU found" >&2; exit 1; }
for ((g = 0; g < gpus; ++g)); do
  (
    for ((j = g; j < ${#jobs[@]}; j += gpus)); do
      run_job "${jobs[j]%%:*}" "${jobs[j]##*:}" "$g" "$@"
    done
  ) &
done
wait

for job in "${jobs[@]}"; do
  log="$logs/${job%%:*}-${job##*:}.log"
  echo "===== $job"
  grep -E "test acc|^summary|best|peak|img/s|rc=|error" "$log" | grep -v "^epoch .* step .* loss" | tail -n 16
done | tee "$out/study-summary.txt"
