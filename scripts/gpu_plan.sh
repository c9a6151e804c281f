#!/usr/bin/env bash
# The memory model and planner on the H200 (issue 15, docs/memory-planning.md): for ViT-S/4 (32 px,
# batch 64 and 128) and ViT-B/16 (224 px, batch 64), bf16, a set of per-block plans, each run as
# `train_vit --plan-only` (the prediction) and as a few real eager steps (the measured peak after
# steps 1-2, which train_vit prints beside its own prediction, and the step time of the last
# step); then --memory-budget at 1/1.5, 1/2, 1/3 and 1/4 of PyTorch's eager bf16 peak (5.88 GB)
# on ViT-B/16 batch 64, with and without sampling: the chosen plan, predicted and measured peak,
# step time (predicted in ms with --calibrate: per-technique costs timed on the device first). One
# table line per run in OUT/plan.txt; every run's full output in OUT/logs/.
#
# Usage on the GPU machine: bash scripts/gpu_plan.sh BIN_DIR OUT
#   BIN_DIR  folder with train_vit (CUDA build; e.g. the carried build/apps)
# Environment: MODELS (default "small64 small128 base64"), PARTS (default "plans budgets"),
#   STEPS (real steps per run, default 6), PLAN_ONLY (1: also run --plan-only per plan; default 1),
#   CALIBRATE (1: the --plan-only and budget runs take --calibrate, predicting ms per step; default 1),
#   PLANS (;-separated flag lists replacing the default plans), BUDGET_BASE (bytes, default 5880000000),
#   COMMON (the flags every run gets; default: synthetic data on cuda, bf16, eager, 4096 images),
#   DIVISORS (the budgets' fractions, default "1.5 2 3 4"), SAMPLINGS (default "allowed none":
#   --memory-budget with sampling allowed, then with --no-sampling).
# A whole run takes longer than one 10-minute device call: split it, e.g.
#   MODELS="small64 small128" PARTS=plans ...;  MODELS=base64 PARTS=plans ...;  PARTS=budgets ...
# Measured with --cuda-graphs off: the model predicts eager steps (a captured graph's pool is not
# modelled). A run that fails prints FAILED with its log's last line and the script goes on.
set -u
[ $# -eq 2 ] || { sed -n '2,21p' "$0" >&2; exit 2; }
bin=$1 out=$2
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
mkdir -p "$out/logs"
table=$out/plan.txt
: > "$table"
steps=${STEPS:-6}
status=0

model_flags() {
  case "$1" in
    small64) echo "--model vit-small --patch 4 --img 32 --batch-size 64" ;;
    small128) echo "--model vit-small --patch 4 --img 32 --batch-size 128" ;;
    base64) echo "--model vit-base --patch 16 --img 224 --batch-size 64" ;;
  esac
}
batch_of() { model_flags "$1" | sed 's/.*--batch-size \([0-9]*\).*/\1/'; }

common=${COMMON:-"--dataset synthetic --device cuda --precision bf16 --cuda-graphs off --train-subset 4096 --test-subset 256 --epochs 1 --log-every 1"}

default_plans="exact;--recompute-norms;--recompute-gelu;--recompute-norms --recompute-gelu;--checkpoint-blocks 0-5;\
--checkpoint-blocks all;--checkpoint-blocks 0-3 --recompute-norms --recompute-gelu;\
--checkpoint-blocks all --recompute-norms --recompute-gelu;--backward wta-crs --ratio 0.3;\
--backward wta-crs --ratio 0.3 --wta-targets fc2 --recompute-norms --recompute-gelu"

say() { echo "$*" | tee -a "$table"; }
calibrate=""
[ "${CALIBRATE:-1}" = 1 ] && calibrate="--calibrate"
# The calibrated step time in "predicted step time (calibrated): X ms, ...", or "-".
predicted_ms() {
  local v
  v=$(grep -m1 "predicted step time (calibrated)" "$1" 2>/dev/null | sed -n 's/.*calibrated): \([0-9.]*\) ms.*/\1/p')
  echo "${v:--}"
}

# The bytes in "(N bytes)" on the first line of FILE that matches PATTERN, or "-".
bytes_after() {
  local v
  v=$(grep -m1 -- "$2" "$1" 2>/dev/null | sed -n 's/.*(\([0-9]*\) bytes).*/\1/p' | head -n 1)
  echo "${v:--}"
}
# For "memory: measured peak ... (M bytes); predicted ... (P bytes)": the measured M.
measured_bytes() {
  local v
  v=$(grep -m1 -- "measured peak allocated after steps 1-2" "$1" 2>/dev/null | sed -n 's/.*after steps 1-2 [^(]*(\([0-9]*\) bytes).*/\1/p')
  echo "${v:--}"
}
# Mean ms per step over the progress lines after the first two (each line's img/s covers the one
# step since the line before; the first two steps pay for warm-up and the optimizer state): one
# logged eager step of a launch-bound model is too noisy to compare with a prediction (device
# call 13 of 2026-12-02, docs/results.md).
step_ms() {
  grep -E '^epoch .* img/s' "$1" 2>/dev/null | sed -n 's/.*  \([0-9.]*\) img\/s.*/\1/p' | tail -n +3 |
    awk -v b="$2" '$1 > 0 { ms += b / $1 * 1000; n++ } END { if (n) printf "%.2f", ms / n; else printf "-" }'
}
ratio() { if [ "$1" != "-" ] && [ "$2" != "-" ]; then awk -v m="$1" -v p="$2" 'BEGIN { printf "%.4f", m / p }'; else echo "-"; fi; }

run() {  # LOG FLAGS...: train_vit with the common flags; never aborts the script
  local log=$1
  shift
  # shellcheck disable=SC2086,SC2068
  LD_LIBRARY_PATH=$tg_libs timeout 300 "$bin/train_vit" $common $@ > "$log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || status=1
  return $rc
}

if [[ " ${PARTS:-plans budgets} " == *" plans "* ]]; then
  say "# per-plan prediction vs measurement (bf16, eager, $steps steps; measured: peak allocated after steps 1-2)"
  say "$(printf '%-9s %-70s %14s %14s %14s %8s %9s %9s' model plan plan-only train-predicted measured ratio pred-ms ms/step)"
  IFS=';' read -ra plans <<< "${PLANS:-$default_plans}"
  for model in ${MODELS:-small64 small128 base64}; do
    i=0
    for plan in "${plans[@]}"; do
      i=$((i + 1))
      flags=$plan
      [ "$plan" = "exact" ] && flags=""
      log=$out/logs/$model.plan$i
      only="-" pred_ms="-"
      if [ "${PLAN_ONLY:-1}" = 1 ]; then
        # shellcheck disable=SC2046,SC2086
        if run "$log.plan-only.log" $(model_flags "$model") $flags --plan-only $calibrate; then
          only=$(bytes_after "$log.plan-only.log" "predicted peak allocated")
          pred_ms=$(predicted_ms "$log.plan-only.log")
        else
          only="FAILED"
        fi
      fi
      # shellcheck disable=SC2046,SC2086
      if run "$log.log" $(model_flags "$model") $flags --max-steps "$steps"; then
        predicted=$(bytes_after "$log.log" "predicted peak allocated")
        measured=$(measured_bytes "$log.log")
        say "$(printf '%-9s %-70s %14s %14s %14s %8s %9s %9s' "$model" "$plan" "$only" "$predicted" "$measured" \
          "$(ratio "$measured" "$predicted")" "$pred_ms" "$(step_ms "$log.log" "$(batch_of "$model")")")"
      else
        say "$(printf '%-9s %-70s FAILED: %s' "$model" "$plan" "$(tail -n 1 "$log.log" 2>/dev/null)")"
      fi
    done
  done
fi

if [[ " ${PARTS:-plans budgets} " == *" budgets "* ]]; then
  base=${BUDGET_BASE:-5880000000}
  say ""
  say "# --memory-budget on ViT-B/16 224 px batch 64 bf16 (fractions of $base bytes)"
  for allowed in ${SAMPLINGS:-allowed none}; do
    sampling=""
    [ "$allowed" = none ] && sampling="--no-sampling"
    for divisor in ${DIVISORS:-1.5 2 3 4}; do
      budget=$(awk -v b="$base" -v d="$divisor" 'BEGIN { printf "%d", b / d }')
      log=$out/logs/budget.$divisor${sampling:+.nosampling}.log
      # shellcheck disable=SC2046,SC2086
      if run "$log" $(model_flags base64) --memory-budget "${budget}B" $sampling $calibrate --max-steps "$steps"; then
        plan=$(sed -n '/^memory plan (chosen/,/^predicted peak/p' "$log" | grep '^  block' | sed 's/^  //' | paste -sd ';' -)
        predicted=$(bytes_after "$log" "predicted peak allocated")
        measured=$(measured_bytes "$log")
        say "$(printf 'budget 1/%-4s %12s %-13s predicted %12s measured %12s (%s of the budget) %s ms/step (predicted %s)  plan: %s' \
          "$divisor" "$budget" "${sampling:-sampling-ok}" "$predicted" "$measured" "$(ratio "$measured" "$budget")" \
          "$(step_ms "$log" 64)" "$(predicted_ms "$log")" "$plan")"
        grep -E -m2 "^calibration|predicted step time:" "$log" | sed 's/^/    /' | tee -a "$table"
      else
        say "$(printf 'budget 1/%-4s %12s %-13s FAILED: %s' "$divisor" "$budget" "${sampling:-sampling-ok}" \
          "$(grep -m1 'error' "$log" 2>/dev/null || tail -n 1 "$log")")"
      fi
    done
  done
fi
echo "(logs: $out/logs; table: $table)"
exit $status
