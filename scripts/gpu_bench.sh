#!/usr/bin/env bash
# GPU-machine runs that compare tapegrad with PyTorch: the timm cross-check of issue 5
# (tests/pytorch/crosscheck_timm.py driving the vit_crosscheck executable) and the PyTorch
# reference timings of the study's configurations (torch_vit_bench.py from shared/bench, which the
# lead copies to .carry/torch_vit_bench.py). Writes to $OUT (or ./gpu-logs): gpu_bench.log (all
# output), crosscheck.log, torch_bench.jsonl (one JSON line per PyTorch configuration).
#
# Usage, from the repository root on the GPU machine:
#   bash scripts/gpu_bench.sh [BUILD_DIR]     (default: .carry/build; needs BUILD_DIR/apps/vit_crosscheck)
# Preparing it on the CPU machine (the carried folder must stay under 64 MiB):
#   mkdir -p .carry/build/apps && cp build/apps/vit_crosscheck .carry/build/apps/
#   cp /work/shared/bench/torch_vit_bench.py .carry/
# and run `bash scripts/gpu_bench.sh` with carry [".carry"].
#
# torch_vit_bench.py for the study (fp32 = TF32 off, explicit = tapegrad's attention formulation,
# fused = timm's default scaled_dot_product_attention):
#   --preset vit-small --patch 4 --img 32 --classes 10 --batch 64 --precision fp32 --attention explicit|fused
#   --preset vit-base --patch 16 --img 224 --classes 1000 --batch 64 --precision fp32 --attention explicit|fused
# Compare ratios measured in the same device call, never absolute times across calls.
set -uo pipefail
build=${1:-.carry/build}
bench=.carry/torch_vit_bench.py
out=${OUT:-gpu-logs}
mkdir -p "$out"
log="$out/gpu_bench.log"
status=0
: > "$out/torch_bench.jsonl"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$log"
git log -1 --format='commit %H %s' 2>/dev/null | tee -a "$log"

# vit_crosscheck needs the system CUDA libraries (cuBLAS); PyTorch must keep loading its own, so
# the library path is set for our executable only, through a wrapper.
if [ -x "$build/apps/vit_crosscheck" ]; then
  exe=$(realpath "$build/apps/vit_crosscheck")
  wrapper=$(mktemp -d)/vit_crosscheck
  source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
  # shellcheck disable=SC2016  # $@ expands when the wrapper runs
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec "%s" "$@"\n' "$tg_libs" "$exe" > "$wrapper"
  chmod +x "$wrapper"
  echo "===== crosscheck_timm.py ($exe)" | tee -a "$log"
  python3 tests/pytorch/crosscheck_timm.py --exe "$wrapper" 2>&1 | tee "$out/crosscheck.log" >> "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  tail -1 "$out/crosscheck.log"
else
  echo "FAIL: no $build/apps/vit_crosscheck (see the top of scripts/gpu_bench.sh)" | tee -a "$log"
  status=1
fi

[ -f "$bench" ] || { echo "FAIL: no $bench (see the top of scripts/gpu_bench.sh)" | tee -a "$log"; exit 1; }
for config in "--preset vit-small --patch 4 --img 32 --classes 10 --batch 64 --precision fp32" \
              "--preset vit-base --patch 16 --img 224 --classes 1000 --batch 64 --precision fp32"; do
  for attention in explicit fused; do
    echo "===== torch_vit_bench.py $config --attention $attention" >> "$log"
    # shellcheck disable=SC2086  # $config is a list of flags
    python3 "$bench" $config --attention "$attention" 2>>"$log" | tee -a "$out/torch_bench.jsonl" >> "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  done
done
cat "$out/torch_bench.jsonl"
exit $status
