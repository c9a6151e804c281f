#!/usr/bin/env bash
# scripts/study.sh end to end on the CPU, on a grid small enough for CI: the jobs run, the report
# has one row per configuration over its two seeds, the plots are PNG files, and a second
# invocation reruns nothing (resumable) but a job whose log does not end in rc=0; the per-layer
# ratios (ALLOCATIONS) are jobs of their own.
# Usage (CTest): test_study.sh SOURCE_DIR BUILD_APPS_DIR SCRATCH_DIR
set -euo pipefail
source_dir=$1 apps=$2 scratch=$3
rm -rf "$scratch" && mkdir -p "$scratch"
study() {
  DEVICE=cpu REGIMES=scratch DATASETS=synthetic RATIOS="1.0 0.5" SEEDS="0 1" ALLOCATIONS="uniform variance" BIN=$apps RUNS=$scratch/runs \
    REPORT_DIR=$scratch/report SCRATCH_FLAGS="--model vit-tiny --depth 1 --img 28 --patch 7 --train-subset 128 \
    --test-subset 32 --batch-size 32 --epochs 2 --log-every 2" bash "$source_dir/scripts/study.sh"
}
fail() { echo "test_study.sh: $*" >&2; exit 1; }

study > "$scratch/first.txt"
grep -qx "study.sh: 8 jobs on 1 slot(s) (cpu); runs in $scratch/runs" "$scratch/first.txt" || fail "job count: $(cat "$scratch/first.txt")"
readme=$scratch/report/README.md
rows=$(grep -c '^| scratch | synthetic | ' "$readme") || true
[ "$rows" = 4 ] || fail "expected 4 report rows (exact, the linears at 0.5 uniform and by variance, all at 0.5), got $rows: $(cat "$readme")"
for row in "| exact | 1.00 | - | 2 |" "| wta-crs | 0.50 | qkv,proj,fc1,fc2 | 2 |" "| wta-crs | 0.50 | all | 2 |" \
           "| wta-crs (variance allocation) | 0.50 | qkv,proj,fc1,fc2 | 2 |"; do
  grep -qF "$row" "$readme" || fail "no row with '$row' in $readme"
done
for plot in accuracy_scratch_synthetic memory_scratch_synthetic accuracy_memory_scratch_synthetic; do
  grep -qF "![$plot]($plot.png)" "$readme" || fail "$readme does not show $plot.png"
  [ "$(head -c 4 "$scratch/report/$plot.png" | od -An -tx1 | tr -d ' ')" = 89504e47 ] || fail "$plot.png is not a PNG"
done

# Resumable: finished jobs are skipped; a job whose log does not end in rc=0 runs again.
exact=$scratch/runs/scratch-synthetic-1.0-exact-seed0.log
sampled=$scratch/runs/scratch-synthetic-0.5-all-seed1.log
echo "rc=1" >> "$sampled"
before=$(stat -c %Y.%N "$exact" 2>/dev/null || stat -c %Y "$exact")
sleep 1
study > "$scratch/second.txt"
[ "$(stat -c %Y.%N "$exact" 2>/dev/null || stat -c %Y "$exact")" = "$before" ] || fail "a finished job ran again"
[ "$(tail -n 1 "$sampled")" = "rc=0" ] || fail "the failed job was not rerun: $(tail -n 2 "$sampled")"
[ "$(grep -c '^rc=' "$sampled")" = 1 ] || fail "the rerun job's log was not started afresh"
echo "test_study.sh: passed"
