#!/usr/bin/env bash
# GPU soak (issue 14): trains ViT-S/4 with WTA-CRS for a fixed wall time (default 300 s) and
# records, per epoch, the caching allocator's allocated, reserved and inactive-split bytes and
# its allocation-retry and OOM counts (train_vit's eval records), then checks that allocated
# bytes are the same after every epoch and that reserved bytes and retries stop growing after
# the first epochs. Writes $OUT/soak.jsonl (or ./gpu-logs/) and prints the table and a verdict.
# Usage on the GPU machine: bash scripts/gpu_soak.sh [SECONDS] [-- more train_vit flags]
#   (default data: --dataset synthetic; e.g. -- --dataset cifar10 --data-dir /tmp/cifar10)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
export LD_LIBRARY_PATH=$tg_libs
seconds=${1:-300}
shift || true
[ "${1:-}" = "--" ] && shift
out=${OUT:-gpu-logs}
mkdir -p "$out"
exe=${TRAIN_VIT:-build/apps/train_vit}
data=(--dataset synthetic)
for a in "$@"; do [ "$a" = "--dataset" ] && data=(); done
rm -f "$out/soak.jsonl"
timeout --signal=INT "$seconds" "$exe" --device cuda --model vit-small --patch 4 --img 32 --batch-size 128 \
  --backward wta-crs --ratio 0.3 --epochs 100000 --log-every 200 --metrics-out "$out/soak.jsonl" \
  "${data[@]}" "$@" > "$out/soak.log" 2>&1
rc=$?
# 124: stopped by the time limit, as intended.
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 130 ]; then
  tail -20 "$out/soak.log"
  echo "gpu_soak: train_vit failed with exit code $rc"
  exit 1
fi
python3 - "$out/soak.jsonl" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip().endswith("}")]
evals = [r for r in records if r["type"] == "eval"]
print(f"{'epoch':>5} {'step':>7} {'allocated':>12} {'reserved':>12} {'inactive_split':>14} "
      f"{'inact_bytes':>12} {'retries':>7} {'ooms':>4} {'acc':>6}")
for r in evals:
    print(f"{r['epoch']:>5} {r['step']:>7} {r['allocated_bytes']:>12} {r['reserved_bytes']:>12} "
          f"{r['inactive_split']:>14} {r['inactive_split_bytes']:>12} {r['num_alloc_retries']:>7} "
          f"{r['num_ooms']:>4} {r['test_acc']:>6.2f}")
if len(evals) < 4:
    sys.exit(f"gpu_soak: only {len(evals)} epochs recorded; give it more time")
warm = evals[2:]  # the first epochs may still grow the cache
problems = []
# Between epochs only the running-loss scalar (one 512-byte block) may or may not be alive.
allocated = [r["allocated_bytes"] for r in evals[1:]]
if max(allocated) - min(allocated) > 512:
    problems.append(f"allocated bytes vary by {max(allocated) - min(allocated)} between epochs (a leak?)")
if any(b["reserved_bytes"] > a["reserved_bytes"] for a, b in zip(warm, warm[1:])):
    problems.append("reserved bytes still grow after epoch 3 (creeping fragmentation?)")
if any(b["num_alloc_retries"] > a["num_alloc_retries"] for a, b in zip(warm, warm[1:])):
    problems.append("allocation retries after epoch 3")
if evals[-1]["num_ooms"]:
    problems.append("OOMs")
print("gpu_soak: " + ("; ".join(problems) if problems else
      f"OK: allocated {evals[-1]['allocated_bytes']} bytes after each of {len(evals)} epochs, "
      f"reserved flat at {warm[-1]['reserved_bytes']} bytes from epoch 3"))
sys.exit(1 if problems else 0)
PY
