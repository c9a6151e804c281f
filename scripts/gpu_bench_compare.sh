#!/usr/bin/env bash
# Step time and peak memory of two bench_vit binaries (e.g. before and after a change) in one
# GPU call: every configuration is run ROUNDS times, alternating the binaries, and the median of
# each binary's runs is compared. Writes $OUT/bench_compare.jsonl (every run, with "binary") and
# prints a table with the after/before ratio of the step time.
#
# Usage, from the repository root on the GPU machine:
#   bash scripts/gpu_bench_compare.sh BEFORE_BENCH_VIT AFTER_BENCH_VIT
# Environment: ROUNDS (default 3), CONFIGS (a file of bench_vit flag lines; default: ViT-S/4
#   and ViT-B/16 at batch 64, TF32, exact and WTA-CRS 0.5).
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
before=$1 after=$2 rounds=${ROUNDS:-3}
out=${OUT:-gpu-logs}
mkdir -p "$out"
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
export LD_LIBRARY_PATH=$tg_libs
small="--preset vit-small --patch 4 --img 32 --classes 10 --batch 64 --precision tf32"
base="--preset vit-base --patch 16 --img 224 --classes 1000 --batch 64 --precision tf32 --steps 20"
default_configs="$small --backward exact
$small --backward wta-crs --ratio 0.5
$base --backward exact
$base --backward wta-crs --ratio 0.5"
configs=$(if [ -n "${CONFIGS:-}" ]; then cat "$CONFIGS"; else echo "$default_configs"; fi)
jsonl=$out/bench_compare.jsonl
: > "$jsonl"
while IFS= read -r flags; do
  [ -n "$flags" ] || continue
  for ((r = 0; r < rounds; ++r)); do
    for which in before after; do
      exe=$before
      [ "$which" = after ] && exe=$after
      # shellcheck disable=SC2086
      line=$("$exe" $flags)
      python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["binary"]=sys.argv[2]; d["flags"]=sys.argv[3]; print(json.dumps(d))' \
        "$line" "$which" "$flags" >> "$jsonl"
    done
  done
done <<< "$configs"
python3 - "$jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'configuration':96} {'before ms':>9} {'after ms':>9} {'ratio':>6} {'peak GB b/a':>12}")
for flags in dict.fromkeys(r["flags"] for r in runs):
    by = {w: [r for r in runs if r["flags"] == flags and r["binary"] == w] for w in ("before", "after")}
    ms = {w: statistics.median(r["ms_per_step"] for r in by[w]) for w in by}
    spread = {w: (min(r["ms_per_step"] for r in by[w]), max(r["ms_per_step"] for r in by[w])) for w in by}
    peak = {w: by[w][0]["peak_alloc_GB"] for w in by}
    print(f"{flags:96} {ms['before']:9.2f} {ms['after']:9.2f} {ms['after'] / ms['before']:6.3f} "
          f"{peak['before']:5.3f}/{peak['after']:5.3f}  (before {spread['before'][0]:.2f}-{spread['before'][1]:.2f}, "
          f"after {spread['after'][0]:.2f}-{spread['after'][1]:.2f})")
PY
