#!/usr/bin/env bash
# Training parity of tapegrad against PyTorch + timm on one GPU (issue 11): both frameworks, 3
# seeds each, for (a) the issue's recipe and (b) train_vit's default GPU recipe, 3 epochs each,
# CIFAR-10, vit-small/4 at 32 px. The seeds of a recipe run as concurrent processes on the one
# GPU (the small model is launch-bound, so they overlap nearly for free). PyTorch runs
# tests/pytorch/train_timm.py, which feeds it tapegrad's own batches (same order, crops, flips).
#
# Usage: bash scripts/gpu_parity.sh BIN_DIR DATA OUT_DIR
#   BIN_DIR  folder holding train_vit (built with CUDA)
#   DATA     CIFAR-10 binary folder (data_batch_1..5.bin, test_batch.bin, or its parent), or the
#            JPEG archive cifar10-jpeg.tar.gz, converted into OUT_DIR/data with $CONVERTER
#            (default .carry/shared/tools/cifar10_jpeg_to_bin.py; needs numpy and Pillow)
#   OUT_DIR  logs, JSONL metrics and the table (OUT_DIR/parity.txt)
# Environment: RECIPES (default "a b"), SEEDS (default "0 1 2"), EPOCHS (default 3),
#   CONCURRENT=recipe (default: both frameworks' seeds of a recipe at once, 6 processes) or
#   framework (3 at once), PRECISION_B (default tf32; fp32 is train_vit's own default),
#   PYTHON (default python3, with torch, timm, safetensors, numpy).
set -euo pipefail

[ $# -eq 3 ] || { sed -n '2,19p' "$0" >&2; exit 2; }
bin_dir=$1 data=$2 out=$3
recipes=${RECIPES:-a b} seeds=${SEEDS:-0 1 2} epochs=${EPOCHS:-3}
concurrent=${CONCURRENT:-recipe} python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/.." && pwd)
train_timm=$here/tests/pytorch/train_timm.py
# train_vit needs the system CUDA libraries; PyTorch must keep loading its own wheels', so the
# library path is set for train_vit's processes only.
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
cuda_libs=$tg_libs

[ -x "$bin_dir/train_vit" ] || { echo "gpu_parity.sh: no executable $bin_dir/train_vit" >&2; exit 1; }
"$python" -c "import torch, timm, safetensors, numpy" ||
  { echo "gpu_parity.sh: $python lacks torch, timm, safetensors or numpy" >&2; exit 1; }
mkdir -p "$out"
if [ -f "$data" ]; then
  converter=${CONVERTER:-.carry/shared/tools/cifar10_jpeg_to_bin.py}
  if [ ! -f "$out/data/.converted" ]; then
    "$python" "$converter" --archive "$data" "$out/data" > "$out/convert.log" 2>&1
    touch "$out/data/.converted"
  fi
  data=$out/data
fi

common=(--dataset cifar10 --data-dir "$data" --model vit-small --patch 4 --img 32 --epochs "$epochs" --log-every 100)
recipe_flags() {
  case "$1" in
    a) echo "--batch-size 64 --optimizer adam --lr 3e-4 --weight-decay 0 --warmup-epochs 0 --label-smoothing 0" \
            "--clip-grad 0 --augment crop-flip --precision tf32" ;;
    # train_vit's GPU defaults, spelled out: batch 128, AdamW 1e-3, decay 0.05, 1 warm-up epoch,
    # label smoothing 0.1, clipping at 1.0 (crop-flip is auto's choice for CIFAR).
    b) echo "--batch-size 128 --optimizer adamw --lr 1e-3 --weight-decay 0.05 --warmup-epochs 1" \
            "--label-smoothing 0.1 --clip-grad 1.0 --augment crop-flip --precision ${PRECISION_B:-tf32}" ;;
    *) echo "gpu_parity.sh: unknown recipe '$1' (a or b)" >&2; return 1 ;;
  esac
}

run() {  # FRAMEWORK RECIPE SEED: one training run, its output in OUT/NAME.log, metrics in NAME.jsonl
  local name=$2-$1-s$3 flags
  flags=$(recipe_flags "$2")
  # shellcheck disable=SC2086
  if [ "$1" = tapegrad ]; then
    LD_LIBRARY_PATH=$cuda_libs "$bin_dir/train_vit" "${common[@]}" $flags --device cuda --seed "$3" --metrics-out "$out/$name.jsonl" > "$out/$name.log" 2>&1
  else
    "$python" "$train_timm" "${common[@]}" $flags --seed "$3" --metrics-out "$out/$name.jsonl" > "$out/$name.log" 2>&1
  fi
}

launch() {  # RECIPE FRAMEWORK...: every seed of every framework given, at once; fails if one run did
  local recipe=$1 pids=() names=() failed=0 fw seed i
  shift
  for fw in "$@"; do
    for seed in $seeds; do
      run "$fw" "$recipe" "$seed" &
      pids+=($!) names+=("$recipe-$fw-s$seed")
    done
  done
  for i in "${!pids[@]}"; do
    if ! wait "${pids[i]}"; then
      echo "gpu_parity.sh: ${names[i]} failed; the end of $out/${names[i]}.log:" >&2
      tail -n 5 "$out/${names[i]}.log" >&2
      failed=1
    fi
  done
  return $failed
}

status=0
for recipe in $recipes; do
  recipe_flags "$recipe" > /dev/null
  start=$SECONDS
  if [ "$concurrent" = recipe ]; then launch "$recipe" tapegrad pytorch || status=1
  else
    launch "$recipe" tapegrad || status=1
    launch "$recipe" pytorch || status=1
  fi
  echo "recipe $recipe: $((SECONDS - start)) s" | tee -a "$out/timing.txt"
done

# The table: final (last eval record's) test accuracy per run, mean ± std per framework and
# recipe, and the issue's criteria (means within 0.5 points; no seed 2 points below its mean).
"$python" - "$out" "$recipes" "$seeds" <<'EOF' | tee "$out/parity.txt"
import json, os, statistics, sys
out, recipes, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
print(f"{'recipe':6} {'framework':9} {'final test acc per seed (%)':34} {'mean':>6} {'std':>5}  epochs 1..n (seed by seed)")
for r in recipes:
    means = {}
    for fw in ("tapegrad", "pytorch"):
        finals, curves = [], []
        for s in seeds:
            path = os.path.join(out, f"{r}-{fw}-s{s}.jsonl")
            evals = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
            evals = [e for e in evals if e.get("type") == "eval"]
            finals.append(evals[-1]["test_acc"] if evals else float("nan"))
            curves.append("/".join(f"{e['test_acc']:.1f}" for e in evals) or "-")
        ok = [f for f in finals if f == f]
        m = statistics.mean(ok) if ok else float("nan")
        sd = statistics.stdev(ok) if len(ok) > 1 else float("nan")
        means[fw] = (m, min(ok) if ok else float("nan"))
        print(f"{r:6} {fw:9} {' '.join(f'{f:6.2f}' for f in finals):34} {m:6.2f} {sd:5.2f}  {'  '.join(curves)}")
    (mt, lo_t), (mp, lo_p) = means["tapegrad"], means["pytorch"]
    verdict = abs(mt - mp) <= 0.5 and mt - lo_t <= 2 and mp - lo_p <= 2
    print(f"{r:6} tapegrad - pytorch = {mt - mp:+.2f} points; worst seed below its mean: tapegrad {mt - lo_t:.2f}, "
          f"pytorch {mp - lo_p:.2f} -> {'PASS' if verdict else 'FAIL'}")
EOF
exit $status
