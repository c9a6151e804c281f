#!/usr/bin/env bash
# The study of issue 6 on the GPU machine, one dataset per call (the carried data must stay under
# 64 MiB): converts the carried JPEG archive to the standard binary layout, then trains
# vit-small/4 at 32 px (batch 64, Adam 3e-4, crop+flip) once per ratio: 1.0 = exact, others =
# WTA-CRS on all six targets with GELU recompute. Metrics (JSON Lines) and the full log go to $OUT.
#
# Usage: bash scripts/gpu_study.sh DATASET EPOCHS "RATIOS" [extra train_vit flags...]
#   DATASET: cifar10 | cifar100 | cifar100-coarse | fashion-mnist
# Carried: .carry/train_vit, .carry/cifar10-jpeg.tar.gz or .carry/cifar100-jpeg.tar.gz, and the
# converters .carry/cifar10_jpeg_to_bin.py / .carry/cifar100_to_bin.py (from shared/tools).
set -uo pipefail
dataset=$1 epochs=$2 ratios=$3
shift 3
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
out=${OUT:-gpu-logs}
mkdir -p "$out" /tmp/study-data
log="$out/study-$dataset.log"
case "$dataset" in
  cifar10) python3 .carry/cifar10_jpeg_to_bin.py --archive .carry/cifar10-jpeg.tar.gz /tmp/study-data | tee -a "$log"
           data=(--data-dir /tmp/study-data) ;;
  cifar100|cifar100-coarse) python3 .carry/cifar100_to_bin.py --archive .carry/cifar100-jpeg.tar.gz /tmp/study-data | tee -a "$log"
           data=(--data-dir /tmp/study-data) ;;
  *) data=(--data-dir .carry/fashion-mnist) ;;
esac
for ratio in $ratios; do
  if [ "$ratio" = "1.0" ]; then backward=(--backward exact); else backward=(--backward wta-crs --ratio "$ratio" --recompute-gelu); fi
  echo "===== $dataset ratio $ratio" | tee -a "$log"
  ./.carry/train_vit --dataset "$dataset" "${data[@]}" --model vit-small --patch 4 --img 32 --batch-size 64 \
    --optimizer adam --lr 3e-4 --weight-decay 0 --augment crop-flip --epochs "$epochs" "${backward[@]}" \
    --metrics-out "$out/$dataset-$ratio.jsonl" --log-every 200 "$@" 2>&1 | tail -n 40 | tee -a "$log"
done
