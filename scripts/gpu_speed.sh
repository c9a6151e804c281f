#!/usr/bin/env bash
# Side-by-side training-step speed and peak memory of tapegrad (bench_vit) and PyTorch + timm
# (torch_vit_bench.py) in one device call, for the issue-13 table: ViT-B/16 at 224 px (batch 64)
# and ViT-S/4 at 32 px (batch 128), TF32 and bf16, tapegrad with fused attention (with and
# without CUDA graphs) and explicit attention,
# PyTorch eager with fused attention and, with COMPILE=1, torch.compile (default and
# reduce-overhead). Every configuration runs alone on the GPU, one after the other. Writes one
# JSON line per run to OUT/speed.jsonl and the table of ratios to OUT/speed.txt.
#
# Usage on the GPU machine: bash scripts/gpu_speed.sh BIN_DIR BENCH_PY OUT
#   BIN_DIR   folder with bench_vit (CUDA build)
#   BENCH_PY  torch_vit_bench.py (shared/bench)
# Environment: MODELS (default "base small"), PRECISIONS (default "tf32 bf16"), COMPILE (0/1),
#   COMPILE_PRECISIONS (the precisions that get the compiled runs; default: all of PRECISIONS),
#   COMPILE_MODES (default "default reduce-overhead"),
#   STEPS (default 30), TAPEGRAD_RUNS (the bench_vit configurations, ';'-separated flag lists, run
#   for every model and precision; default: fused attention with and without CUDA graphs, and the
#   explicit attention), EXTRA_TAPEGRAD (more of them, e.g. "--backward wta-crs --ratio 0.3").
set -uo pipefail
[ $# -eq 3 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
bin=$1 bench=$2 out=$3
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
mkdir -p "$out"
jsonl=$out/speed.jsonl
: > "$jsonl"
steps=${STEPS:-30}
status=0

model_flags() {
  case "$1" in
    base) echo "--preset vit-base --patch 16 --img 224 --classes 1000 --batch 64" ;;
    small) echo "--preset vit-small --patch 4 --img 32 --classes 10 --batch 128" ;;
  esac
}

tapegrad() {  # MODEL PRECISION FLAGS...
  local model=$1 precision=$2
  shift 2
  # shellcheck disable=SC2046
  LD_LIBRARY_PATH=$tg_libs "$bin/bench_vit" $(model_flags "$model") --precision "$precision" \
    --steps "$steps" "$@" 2>> "$out/speed.log" | sed "s/^{/{\"model\":\"$model\",\"label\":\"tapegrad $*\",/" >> "$jsonl" ||
    status=1
}

pytorch() {  # MODEL PRECISION FLAGS...
  local model=$1 precision=$2
  shift 2
  # shellcheck disable=SC2046
  python3 "$bench" $(model_flags "$model") --precision "$precision" --steps "$steps" "$@" 2>> "$out/speed.log" |
    tail -n 1 | sed "s/^{/{\"model\":\"$model\",\"label\":\"pytorch $*\",/" >> "$jsonl" || status=1
}

for model in ${MODELS:-base small}; do
  for precision in ${PRECISIONS:-tf32 bf16}; do
    echo "===== $model $precision" >> "$out/speed.log"
    runs="${TAPEGRAD_RUNS:---attention fused --cuda-graphs on;--attention fused;--attention explicit}"
    IFS=';' read -ra extra <<< "$runs${EXTRA_TAPEGRAD:+;$EXTRA_TAPEGRAD}"
    for flags in "${extra[@]}"; do
      # shellcheck disable=SC2086
      [ -n "$flags" ] && tapegrad "$model" "$precision" $flags
    done
    pytorch "$model" "$precision" --attention fused
    if [ "${COMPILE:-0}" = 1 ] && [[ " ${COMPILE_PRECISIONS:-$precision} " == *" $precision "* ]]; then
      for mode in ${COMPILE_MODES:-default reduce-overhead}; do
        pytorch "$model" "$precision" --attention fused --compile --compile-mode "$mode"
      done
    fi
  done
done

# The table: per model and precision, every run's ms/step and peak allocated, and its ratio to
# PyTorch eager (fused attention) of the same model and precision.
python3 - "$jsonl" <<'EOF' | tee "$out/speed.txt"
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
groups = {}
for r in runs:
    groups.setdefault((r["model"], r.get("precision")), []).append(r)
for (model, precision), rs in groups.items():
    base = next((r for r in rs if r["label"].strip() == "pytorch --attention fused"), None)
    print(f"== {model} {precision}")
    print(f"{'run':70} {'ms/step':>8} {'peak GB':>8} {'time vs torch':>13} {'mem vs torch':>12}")
    for r in rs:
        ms, peak = r["ms_per_step"], r["peak_alloc_GB"]
        t = f"{ms / base['ms_per_step']:.3f}" if base else "-"
        m = f"{peak / base['peak_alloc_GB']:.3f}" if base else "-"
        print(f"{r['label'][:70]:70} {ms:8.2f} {peak:8.3f} {t:>13} {m:>12}")
EOF
exit $status
