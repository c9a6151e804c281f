#!/usr/bin/env bash
# The whole study in one command (issue 16): the grid regime × dataset × ratio × targets × seed,
# run with train_vit one process per device slot (every GPU of the machine, or the CPU), resumable
# (a job whose log ends in rc=0 is skipped; any other job is rerun from its start), then the
# report: REPORT_DIR/README.md (study_report's tables) and its plots (study_report --plots).
#
# Usage: bash scripts/study.sh        (everything from the environment below)
# Environment (defaults in brackets):
#   REGIMES [scratch fine-tune]   DATASETS [cifar10 cifar100 cifar100-coarse]   RATIOS [1.0 0.5 0.3]
#   SEEDS [0 1 2]   TARGETS [qkv,proj,fc1,fc2] (the sampled runs' targets; the scratch regime also
#     runs ALL_TARGETS [all] — every sampled matmul — beside them)
#   ALLOCATIONS [uniform] (the sampled runs' --wta-allocation: "uniform variance" also runs the
#     per-layer ratios chosen by predicted variance at the memory of each uniform ratio; the four
#     linears only)
#   SCRATCH_FLAGS [the 8-epoch study recipe: vit-small/4, batch 64, Adam 3e-4, crop+flip]
#   FINETUNE_FLAGS [3 epochs at Adam 1e-4, --reset-head]
#   INIT_CIFAR10 / INIT_CIFAR100: the pretrained checkpoints the fine-tunes start from (CIFAR-10
#     fine-tunes start from the CIFAR-100 one, CIFAR-100 fine and coarse from the CIFAR-10 one:
#     never from the same images); required only when the grid has fine-tune jobs
#   DEVICE [cuda] (cpu: one job at a time on the CPU)   STUDY_GPUS [every GPU nvidia-smi lists]
#   BIN [build/apps] (train_vit, study_report)   DATA [/tmp/study-data] (CIFAR as converted by
#     shared/tools from CARRY's archives, CARRY [.carry])
#   RUNS [$OUT/study-runs or study-runs] (each job's JOB.log and JOB.jsonl)
#   REPORT_DIR [docs/study]   EXTRA (flags for every job, e.g. "--precision bf16")
set -uo pipefail
bin=${BIN:-build/apps}
runs=${RUNS:-${OUT:-.}/study-runs}
report=${REPORT_DIR:-docs/study}
data=${DATA:-/tmp/study-data}
carry=${CARRY:-.carry}
device=${DEVICE:-cuda}
scratch_flags=${SCRATCH_FLAGS:-"--model vit-small --patch 4 --img 32 --batch-size 64 --optimizer adam --lr 3e-4 --weight-decay 0 --augment crop-flip --epochs 8 --log-every 200"}
finetune_flags=${FINETUNE_FLAGS:-"--model vit-small --patch 4 --img 32 --batch-size 64 --optimizer adam --lr 1e-4 --weight-decay 0 --augment crop-flip --epochs 3 --log-every 200 --reset-head"}
mkdir -p "$runs" "$report"
[ -x "$bin/train_vit" ] && [ -x "$bin/study_report" ] || { echo "study.sh: no train_vit and study_report in $bin (set BIN)" >&2; exit 2; }

# The grid, one line per job: NAME|FLAGS.
jobs=() missing_init=()
for regime in ${REGIMES:-scratch fine-tune}; do
  for dataset in ${DATASETS:-cifar10 cifar100 cifar100-coarse}; do
    init=""
    if [ "$regime" = fine-tune ]; then
      case "$dataset" in
        cifar10) init=${INIT_CIFAR100:-} ;;
        *) init=${INIT_CIFAR10:-} ;;
      esac
      # Checked below, for the jobs that still have to run.
      [ -n "$init" ] && [ -f "$init" ] || missing_init+=("$dataset|$init")
    fi
    recipe=$scratch_flags
    [ "$regime" = fine-tune ] && recipe="$finetune_flags --init-from $init"
    for ratio in ${RATIOS:-1.0 0.5 0.3}; do
      target_sets=${TARGETS:-qkv,proj,fc1,fc2}
      [ "$regime" = scratch ] && target_sets="$target_sets ${ALL_TARGETS:-all}"
      [ "$ratio" = 1.0 ] && target_sets=exact
      for targets in $target_sets; do
        allocations=${ALLOCATIONS:-uniform}
        [ "$targets" = exact ] || [ "$targets" = all ] && allocations=uniform
        for allocation in $allocations; do
          for seed in ${SEEDS:-0 1 2}; do
            backward="--backward exact"
            [ "$targets" != exact ] && backward="--backward wta-crs --ratio $ratio --wta-targets $targets --wta-allocation $allocation"
            suffix=""
            [ "$allocation" = uniform ] || suffix="-$allocation"
            name="$regime-$dataset-$ratio-${targets//,/_}$suffix-seed$seed"
            jobs+=("$name|--dataset $dataset $recipe $backward --seed $seed ${EXTRA:-}")
          done
        done
      done
    done
  done
done

finished() { [ -f "$runs/$1.log" ] && [ "$(tail -n 1 "$runs/$1.log")" = "rc=0" ]; }
for missing in "${missing_init[@]}"; do
  dataset=${missing%%|*}
  for job in "${jobs[@]}"; do
    name=${job%%|*}
    [[ "$name" == fine-tune-$dataset-* ]] && ! finished "$name" && {
      echo "study.sh: fine-tuning $dataset needs its pretrained checkpoint (INIT_CIFAR100 for cifar10, INIT_CIFAR10 for the others), got '${missing#*|}'" >&2
      exit 2
    }
  done
done

# CIFAR from the carried archives, converted once per machine (not at all when every job has run:
# the report alone is regenerated).
convert() {  # NAME SCRIPT
  [ -f "$data/$1/.converted" ] && return 0
  mkdir -p "$data/$1"
  python3 "$carry/$2" --archive "$carry/$1-jpeg.tar.gz" "$data/$1" > "$runs/convert-$1.txt" 2>&1 &&
    touch "$data/$1/.converted"
}
needs() {
  for job in "${jobs[@]}"; do
    finished "${job%%|*}" || { grep -q -- "--dataset $1 " <<< "$job" && return 0; }
  done
  return 1
}
needs cifar10 && { convert cifar10 cifar10_jpeg_to_bin.py || exit 1; }
{ needs cifar100 || needs cifar100-coarse; } && { convert cifar100 cifar100_to_bin.py || exit 1; }
data_dir() {
  case "$1" in
    cifar10) echo "--data-dir $data/cifar10" ;;
    cifar100|cifar100-coarse) echo "--data-dir $data/cifar100" ;;
  esac
}

run_job() {  # NAME|FLAGS SLOT
  local name=${1%%|*} flags=${1#*|} slot=$2
  if finished "$name"; then return 0; fi
  rm -f "$runs/$name.log" "$runs/$name.jsonl"
  local dataset
  dataset=$(sed -n 's/.*--dataset \([^ ]*\).*/\1/p' <<< "$flags")
  local gpu_env=()
  [ "$device" = cuda ] && gpu_env=(env "CUDA_VISIBLE_DEVICES=$slot")
  # shellcheck disable=SC2046,SC2086
  "${gpu_env[@]}" "$bin/train_vit" --device "$device" $flags $(data_dir "$dataset") --metrics-out "$runs/$name.jsonl" \
    > "$runs/$name.log" 2>&1
  echo "rc=$?" >> "$runs/$name.log"
}

slots=(0)
if [ "$device" = cuda ]; then
  if [ -n "${STUDY_GPUS:-}" ]; then IFS=, read -r -a slots <<< "$STUDY_GPUS"
  else mapfile -t slots < <(nvidia-smi -L | awk '{print NR - 1}'); fi
  [ "${#slots[@]}" -ge 1 ] || { echo "study.sh: no GPU found (set DEVICE=cpu to run on the CPU)" >&2; exit 1; }
fi
echo "study.sh: ${#jobs[@]} jobs on ${#slots[@]} slot(s) ($device); runs in $runs"
for ((s = 0; s < ${#slots[@]}; ++s)); do
  (
    for ((j = s; j < ${#jobs[@]}; j += ${#slots[@]})); do run_job "${jobs[j]}" "${slots[s]}"; done
  ) &
done
wait

failed=0 files=()
for job in "${jobs[@]}"; do
  name=${job%%|*}
  if [ "$(tail -n 1 "$runs/$name.log")" = "rc=0" ]; then files+=("$runs/$name.jsonl")
  else
    echo "study.sh: $name failed: $(grep -m1 'error' "$runs/$name.log" || tail -n 2 "$runs/$name.log" | head -n 1)" >&2
    failed=$((failed + 1))
  fi
done
[ "$failed" -eq 0 ] || { echo "study.sh: $failed of ${#jobs[@]} jobs failed; rerun to retry them (finished ones are kept)" >&2; exit 1; }

{
  echo "# The study: WTA-CRS against exact training, by regime, dataset and ratio"
  echo
  echo "Generated by \`scripts/study.sh\` on $(date -u +%Y-%m-%d) from ${#jobs[@]} runs ($device; commit" \
       "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)). Every row: mean ± std over its seeds."
  echo
  "$bin/study_report" "${files[@]}" || exit 1
  echo
  for png in $("$bin/study_report" --plots "$report" "${files[@]}" 2>&1 > /dev/null | sed -n 's/^study_report: wrote //p'); do
    echo "![$(basename "$png" .png)]($(basename "$png"))"
  done
} > "$report/README.md.tmp" && mv "$report/README.md.tmp" "$report/README.md"
echo "study.sh: wrote $report/README.md and its plots"
